import { describe, expect, it } from 'vitest'
import { createKeepAlive, type KeepAliveStats } from '@keepalive/core'
import { joinCluster, startCluster, type ClusterOptions, type JoinOptions, type WorkerStats } from '@keepalive/cluster'
import { createClusterMetrics, type ClusterMetricsOptions } from '@keepalive/cluster/metrics'
import { resolveClusterOptions } from '../src/options.js'
import { sumStats } from '../src/stats.js'
import { FRESH_STATS } from '../../../test/helpers/contract.js'

type Thrown = Error & { code?: unknown; option?: unknown }

function thrownBy(run: () => unknown): Thrown {
  try {
    run()
  } catch (error) {
    return error as Thrown
  }
  throw new Error('did not throw')
}

// Bad input is the point of these tables, so it goes in untyped.
const start = (input: unknown) => () => startCluster(input as ClusterOptions)
const join = (input: unknown) => () => joinCluster(createKeepAlive(), input as JoinOptions)
const metrics = (input: unknown) => () => createClusterMetrics(input as ClusterMetricsOptions)

describe('options: startCluster, joinCluster and createClusterMetrics reject bad ones by name, before anything starts', () => {
  const cases: [string, () => unknown, TypeErrorConstructor | RangeErrorConstructor, string, string][] = [
    ['startCluster', start({ worker: 4 }), TypeError, 'keepalive: unknown option "worker"; did you mean "workers"?', 'worker'],
    ['startCluster', start({ listentimeout: 4 }), TypeError, 'keepalive: unknown option "listentimeout"; did you mean "listenTimeout"?', 'listentimeout'],
    ['startCluster', start({ workers: '4' }), TypeError, 'keepalive: "workers" must be a whole number, got "4" (string)', 'workers'],
    ['startCluster', start({ workers: 0 }), RangeError, 'keepalive: "workers" must be at least 1, got 0', 'workers'],
    ['startCluster', start({ workers: 2.5 }), RangeError, 'keepalive: "workers" must be a whole number, got 2.5', 'workers'],
    ['startCluster', start({ workers: Infinity }), RangeError, 'keepalive: "workers" must be finite, got Infinity', 'workers'],
    ['startCluster', start({ timeout: -1 }), RangeError, 'keepalive: "timeout" must be at least 0 and at most 2147482 seconds, got -1', 'timeout'],
    ['startCluster', start({ timeout: '10s' }), TypeError, 'keepalive: "timeout" must be a number of seconds, got "10s" (string)', 'timeout'],
    [
      'startCluster',
      start({ listenTimeout: 0 }),
      RangeError,
      'keepalive: "listenTimeout" must be greater than 0 and at most 2147482 seconds, got 0',
      'listenTimeout',
    ],
    ['startCluster', start({ exec: 42 }), TypeError, 'keepalive: "exec" must be the path of a script, got 42', 'exec'],
    ['startCluster', start({ args: '--x' }), TypeError, 'keepalive: "args" must be an array of strings, got "--x" (string)', 'args'],
    ['startCluster', start({ env: { A: 1 } }), TypeError, 'keepalive: "env.A" must be a string, got 1', 'env.A'],
    ['startCluster', start({ signals: 'yes' }), TypeError, 'keepalive: "signals" must be a boolean, got "yes" (string)', 'signals'],
    ['startCluster', start({ logger: 'console' }), TypeError, 'keepalive: "logger" must be a function, got "console" (string)', 'logger'],
    ['startCluster', start(4), TypeError, 'keepalive: startCluster options must be an object, got 4', 'options'],
    ['joinCluster', join({ sever: {} }), TypeError, 'keepalive: unknown option "sever"; did you mean "server"?', 'sever'],
    ['joinCluster', join({ server: 3000 }), TypeError, 'keepalive: "server" must be an http, https or http2 server, got 3000', 'server'],
    ['joinCluster', join({ timeout: -1 }), RangeError, 'keepalive: "timeout" must be at least 0 and at most 2147482 seconds, got -1', 'timeout'],
    ['joinCluster', join({ metrics: {} }), TypeError, 'keepalive: "metrics" must be a prom-client Registry, got an object', 'metrics'],
    ['joinCluster', join({ beforeExit: true }), TypeError, 'keepalive: "beforeExit" must be a function, got true (boolean)', 'beforeExit'],
    ['createClusterMetrics', metrics({ by: 'label' }), TypeError, 'keepalive: "by" must be "worker" or "sum", got "label" (string)', 'by'],
    ['createClusterMetrics', metrics({ timeout: 0 }), RangeError, 'keepalive: "timeout" must be greater than 0 and at most 2147482 seconds, got 0', 'timeout'],
  ]
  it.each(cases.map(([name, run, kind, message, option]) => ({ name, run, kind, message, option })))(
    '$name throws $message',
    ({ run, kind, message, option }) => {
      const thrown = thrownBy(run)
      expect(thrown.constructor).toBe(kind)
      expect(thrown.message).toBe(message)
      expect(thrown.option).toBe(option)
    },
  )

  it('joinCluster names what it needs when given no controller', () => {
    expect(() => joinCluster(undefined as never)).toThrow(
      new TypeError("keepalive: joinCluster() needs a keepalive controller (createKeepAlive(), an adapter's middleware or fastify.keepAlive)"),
    )
  })

  it('treats undefined as omitted and leaves the input untouched', () => {
    const input = Object.freeze({ workers: undefined, timeout: undefined, env: Object.freeze({ A: 'b' }) })
    const resolved = resolveClusterOptions(input)
    expect(resolved).toMatchObject({ timeout: 10, listenTimeoutMs: 30_000, signals: true, exit: true, env: { A: 'b' } })
    expect(resolved.workers).toBeGreaterThanOrEqual(1)
    expect(resolveClusterOptions({})).toEqual({ ...resolveClusterOptions(Object.create(null)), logger: expect.any(Function) })
  })

  it('joins as standalone, doing nothing, outside a cluster and PM2', async () => {
    const member = joinCluster(createKeepAlive())
    expect(member.mode).toBe('standalone')
    await member.listening
    member.leave()
  })
})

describe('sumStats', () => {
  const worker = (id: number, s: Partial<KeepAliveStats>): WorkerStats => ({ id, pid: 100 + id, ...FRESH_STATS, ...s })

  it('sums counts, weighs the reuse ratio by requests, takes the highest load and the lowest timeout and max', () => {
    const total = sumStats(
      [
        worker(1, {
          connections: { open: 3, active: 1, idle: 2 },
          requests: 10,
          reuseRatio: 0.5,
          load: 0.2,
          timeout: 5,
          max: 1000,
          closes: { ...FRESH_STATS.closes, drain: 2 },
        }),
        worker(2, {
          connections: { open: 1, active: 0, idle: 1 },
          requests: 30,
          reuseRatio: 0.9,
          load: 0.7,
          timeout: 3,
          max: null,
          closes: { ...FRESH_STATS.closes, drain: 1, client: 4 },
        }),
        { id: 3, pid: 103, error: 'no answer within 1 s' },
      ],
      false,
    )
    expect(total).toMatchObject({
      connections: { open: 4, active: 1, idle: 3 },
      requests: 40,
      reuseRatio: (5 + 27) / 40,
      load: 0.7,
      timeout: 3,
      max: 1000,
      draining: false,
      closes: { ...FRESH_STATS.closes, drain: 3, client: 4 },
    })
    expect(total.workers).toHaveLength(3)
  })

  it('is draining once every answering worker drains, and while stopping when none answers', () => {
    expect(sumStats([worker(1, { draining: true }), worker(2, { draining: false })], false).draining).toBe(false)
    expect(sumStats([worker(1, { draining: true }), worker(2, { draining: true })], false).draining).toBe(true)
    expect(sumStats([{ id: 1, pid: 1, error: 'x' }], true)).toMatchObject({ draining: true, max: null, requests: 0 })
  })
})
