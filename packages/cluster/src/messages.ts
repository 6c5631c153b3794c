// The IPC protocol between the primary and its workers, and the one way the primary asks a worker something.
import { randomUUID } from 'node:crypto'
import type { Worker } from 'node:cluster'
import type { KeepAliveStats, ShutdownReport } from '@keepalive/core'

/** Set in every worker startCluster forks: the worker then speaks this protocol, not PM2's. */
export const CLUSTER_ENV = 'KEEPALIVE_CLUSTER'

/** What the primary asks a worker; every message carries a `keepalive` key, so other users of the channel (prom-client, PM2) never mistake ours. */
export type Question = 'stats' | 'metrics'

/** Primary → worker. */
export type ToWorker = { keepalive: Question; id: string } | { keepalive: 'drain'; timeout: number }

/** Worker → primary. */
export type FromWorker =
  | { keepalive: 'listening' }
  | { keepalive: 'stats'; id: string; stats: KeepAliveStats }
  | { keepalive: 'metrics'; id: string; metrics?: unknown[]; error?: string }
  | { keepalive: 'drained'; report: ShutdownReport }

/** A message of this protocol, not one of prom-client's, PM2's or the application's. */
export function isOurs(message: unknown): message is { keepalive: string } & Record<string, unknown> {
  return typeof message === 'object' && message !== null && typeof (message as { keepalive?: unknown }).keepalive === 'string'
}

/**
 * Asks one worker a question and resolves with its answer, or rejects once `timeoutMs` passed, the
 * worker exited or its channel closed. The listener and timer are removed whatever happens.
 */
export function ask(worker: Worker, question: 'stats', timeoutMs: number): Promise<KeepAliveStats>
export function ask(worker: Worker, question: 'metrics', timeoutMs: number): Promise<unknown[]>
export function ask(worker: Worker, question: Question, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const id = randomUUID()
    const timer = setTimeout(() => settle(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs)
    timer.unref()
    function onMessage(message: unknown): void {
      if (!isOurs(message) || message.keepalive !== question || message.id !== id) return
      const answer = message as FromWorker & { id: string }
      if (answer.keepalive === 'stats') settle(null, answer.stats)
      else if (answer.keepalive === 'metrics') {
        if (answer.error !== undefined || !Array.isArray(answer.metrics)) settle(new Error(answer.error ?? 'no metrics'))
        else settle(null, answer.metrics)
      }
    }
    function onExit(): void {
      settle(new Error('exited before answering'))
    }
    function settle(error: Error | null, value?: unknown): void {
      clearTimeout(timer)
      worker.off('message', onMessage)
      worker.off('exit', onExit)
      if (error === null) resolve(value)
      else reject(error)
    }
    worker.on('message', onMessage)
    worker.once('exit', onExit)
    if (!worker.isConnected()) return settle(new Error('not connected'))
    try {
      worker.send({ keepalive: question, id } satisfies ToWorker, (error: Error | null) => {
        if (error) settle(error)
      })
    } catch (error) {
      settle(error instanceof Error ? error : new Error(String(error)))
    }
  })
}
