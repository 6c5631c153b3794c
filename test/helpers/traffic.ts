/**
 * Client traffic for the drain tests: one request through a keep-alive `http.Agent` or an undici Pool,
 * classified by where it failed (a reused socket, a fresh one, or no connection), and back-to-back
 * load loops tallied by outcome.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import http from 'node:http'
import type { Socket } from 'node:net'
import type { Pool } from 'undici'
import { connectionHeaders, fromHeaderObject, type ConnectionHeaders } from './wire.js'

/** What one request of a load run ended with. */
export type Outcome =
  | { kind: 'ok'; path: string; status: number; headers: ConnectionHeaders; reused: boolean }
  | { kind: 'failed'; path: string; on: FailedOn; code: string; localPort: number | null }

/**
 * Where a failed request was: written on a socket that had already carried a response (`reused`),
 * written on a socket opened for it (`fresh`), or never written because the connection failed (`connect`).
 */
export type FailedOn = 'reused' | 'fresh' | 'connect'

export type Failure = Extract<Outcome, { kind: 'failed' }>

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string') return code
  return error instanceof Error ? error.message : String(error)
}

/** Optional observers of an `agentRequest`. */
export interface RequestObserver {
  /** The request was written to a socket. */
  written?(path: string): void
  /** The request was given this socket. */
  socket?(socket: Socket): void
}

/** One GET through a keep-alive `http.Agent`, classified by whether its socket was reused, fresh or never connected. */
export function agentRequest(agent: http.Agent, port: number, path: string, observer: RequestObserver = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent })
    let connected = false
    let localPort: number | null = null
    // 'finish' fires once the request has been handed to its socket.
    if (observer.written !== undefined) req.once('finish', () => observer.written?.(path))
    req.on('socket', (socket: Socket) => {
      observer.socket?.(socket)
      if (!socket.connecting) {
        connected = true
        localPort = socket.localPort ?? null
        return
      }
      socket.once('connect', () => {
        connected = true
        localPort = socket.localPort ?? null
      })
    })
    req.on('response', (res) => {
      res.resume()
      res.on('end', () => {
        resolve({ kind: 'ok', path, status: res.statusCode ?? 0, headers: connectionHeaders(fromHeaderObject(res.headers)), reused: req.reusedSocket })
      })
      res.on('error', (error) => {
        resolve({ kind: 'failed', path, on: req.reusedSocket ? 'reused' : 'fresh', code: errorCode(error), localPort })
      })
    })
    req.on('error', (error) => {
      const on: FailedOn = !connected ? 'connect' : req.reusedSocket ? 'reused' : 'fresh'
      resolve({ kind: 'failed', path, on, code: errorCode(error), localPort })
    })
    req.end()
  })
}

/** Where undici wrote a request: the socket's local port and how many requests that socket had carried before it. */
interface Written {
  localPort: number | null
  before: number
}

/**
 * Watches undici's `sendHeaders` channel so requests of a Pool can be classified like `agentRequest`'s:
 * a request whose headers were never written failed to connect.
 */
export function watchUndiciWrites(): { written: Map<string, Written>; close(): void } {
  const perSocket = new WeakMap<object, number>()
  const written = new Map<string, Written>()
  function onSendHeaders(message: unknown): void {
    const { request, socket } = message as { request: { path: string }; socket: Socket }
    const before = perSocket.get(socket) ?? 0
    perSocket.set(socket, before + 1)
    written.set(request.path, { localPort: socket.localPort ?? null, before })
  }
  subscribe('undici:client:sendHeaders', onSendHeaders)
  return {
    written,
    close: () => unsubscribe('undici:client:sendHeaders', onSendHeaders),
  }
}

/** One GET through an undici Pool, classified with the writes `watch` saw. */
export async function poolRequest(pool: Pool, watch: { written: Map<string, Written> }, path: string): Promise<Outcome> {
  try {
    const res = await pool.request({ path, method: 'GET' })
    await res.body.dump()
    const before = watch.written.get(path)?.before ?? 0
    return { kind: 'ok', path, status: res.statusCode, headers: connectionHeaders(fromHeaderObject(res.headers)), reused: before > 0 }
  } catch (error) {
    const where = watch.written.get(path)
    if (where === undefined) return { kind: 'failed', path, on: 'connect', code: errorCode(error), localPort: null }
    return { kind: 'failed', path, on: where.before > 0 ? 'reused' : 'fresh', code: errorCode(error), localPort: where.localPort }
  }
}

/** What a load run saw, failures grouped by where they happened. */
export interface Tally {
  ok: number
  /** 200 responses that carried `Connection: close`. */
  closing: number
  /** Responses with any other status. */
  otherStatus: number
  failed: Record<FailedOn, Failure[]>
}

export function emptyTally(): Tally {
  return { ok: 0, closing: 0, otherStatus: 0, failed: { reused: [], fresh: [], connect: [] } }
}

export function count(tally: Tally, outcome: Outcome): void {
  if (outcome.kind === 'failed') {
    tally.failed[outcome.on].push(outcome)
    return
  }
  if (outcome.status !== 200) {
    tally.otherStatus++
    return
  }
  tally.ok++
  if (outcome.headers.connection === 'close') tally.closing++
}

/**
 * Back-to-back load: `workers` loops, each sending its next request as soon as the previous one ended.
 * A loop ends at its first connect error (the listener is closed) or when `stopped()` says so.
 */
export async function backToBack(workers: number, send: (path: string) => Promise<Outcome>, stopped: () => boolean): Promise<Tally> {
  const tally = emptyTally()
  let next = 0
  async function loop(worker: number): Promise<void> {
    while (!stopped()) {
      const outcome = await send(`/load/${worker}/${next++}`)
      count(tally, outcome)
      if (outcome.kind === 'failed' && outcome.on === 'connect') return
    }
  }
  await Promise.all(Array.from({ length: workers }, (_, worker) => loop(worker)))
  return tally
}
