// Defaults and checks of startCluster() and joinCluster() options; the one place that throws for bad ones.
import { availableParallelism } from 'node:os'
import { checkKeys, count, describe, fail, isPlainObject, seconds } from '@keepalive/core/check'
import type { JoinOptions } from './types.js'

/** startCluster() options with every field set; durations in milliseconds. */
export interface ResolvedClusterOptions {
  workers: number
  exec: string | undefined
  args: string[] | undefined
  env: Record<string, string>
  timeout: number
  listenTimeoutMs: number
  signals: boolean
  exit: boolean
  logger: (line: string) => void
}

const CLUSTER_KEYS = ['workers', 'exec', 'args', 'env', 'timeout', 'listenTimeout', 'signals', 'exit', 'logger'] as const
const JOIN_KEYS = ['server', 'timeout', 'metrics', 'beforeExit', 'exit'] as const

function boolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') fail(TypeError, name, `"${name}" must be a boolean, got ${describe(value)}`)
  return value
}

function fn<T>(name: string, value: unknown): T | undefined {
  if (value !== undefined && typeof value !== 'function') fail(TypeError, name, `"${name}" must be a function, got ${describe(value)}`)
  return value as T | undefined
}

/** Checks startCluster() options (unknown names, types, then ranges) and fills in the defaults. */
export function resolveClusterOptions(input: unknown): ResolvedClusterOptions {
  if (input === undefined) input = {}
  if (!isPlainObject(input)) fail(TypeError, 'options', `startCluster options must be an object, got ${describe(input)}`)
  checkKeys(input, CLUSTER_KEYS, '')
  const o = input
  if (o.exec !== undefined && (typeof o.exec !== 'string' || o.exec === ''))
    fail(TypeError, 'exec', `"exec" must be the path of a script, got ${describe(o.exec)}`)
  if (o.args !== undefined && (!Array.isArray(o.args) || !o.args.every((a) => typeof a === 'string'))) {
    fail(TypeError, 'args', `"args" must be an array of strings, got ${describe(o.args)}`)
  }
  const env: Record<string, string> = {}
  if (o.env !== undefined) {
    if (!isPlainObject(o.env)) fail(TypeError, 'env', `"env" must be an object of strings, got ${describe(o.env)}`)
    for (const [key, value] of Object.entries(o.env)) {
      if (typeof value !== 'string') fail(TypeError, `env.${key}`, `"env.${key}" must be a string, got ${describe(value)}`)
      env[key] = value
    }
  }
  return {
    workers: o.workers === undefined ? availableParallelism() : count('workers', o.workers, false),
    exec: o.exec as string | undefined,
    args: o.args === undefined ? undefined : [...(o.args as string[])],
    env,
    timeout: o.timeout === undefined ? 10 : seconds('timeout', o.timeout, { min: 0 }),
    listenTimeoutMs: (o.listenTimeout === undefined ? 30 : seconds('listenTimeout', o.listenTimeout, { min: 0, above: true })) * 1000,
    signals: boolean('signals', o.signals, true),
    exit: boolean('exit', o.exit, true),
    logger: fn<(line: string) => void>('logger', o.logger) ?? ((line: string) => console.log(line)),
  }
}

/** joinCluster() options, checked; `timeout` stays undefined when not given (the mode picks it). */
export function resolveJoinOptions(input: unknown): JoinOptions & { exit: boolean } {
  if (input === undefined) input = {}
  if (!isPlainObject(input)) fail(TypeError, 'options', `joinCluster options must be an object, got ${describe(input)}`)
  checkKeys(input, JOIN_KEYS, '')
  const o = input
  const server = o.server as { listening?: unknown; once?: unknown } | undefined
  if (server !== undefined && (typeof server !== 'object' || server === null || typeof server.once !== 'function' || typeof server.listening !== 'boolean')) {
    fail(TypeError, 'server', `"server" must be an http, https or http2 server, got ${describe(server)}`)
  }
  const metrics = o.metrics as { getMetricsAsJSON?: unknown } | undefined
  if (metrics !== undefined && (typeof metrics !== 'object' || metrics === null || typeof metrics.getMetricsAsJSON !== 'function')) {
    fail(TypeError, 'metrics', `"metrics" must be a prom-client Registry, got ${describe(metrics)}`)
  }
  return {
    server: server as JoinOptions['server'],
    timeout: o.timeout === undefined ? undefined : seconds('timeout', o.timeout, { min: 0 }),
    metrics: metrics as JoinOptions['metrics'],
    beforeExit: fn<JoinOptions['beforeExit']>('beforeExit', o.beforeExit),
    exit: boolean('exit', o.exit, true),
  }
}
