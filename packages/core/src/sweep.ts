// The idle sweep: one unref'd timer per controller that closes expired connections from the check
// phase, the backstop that bounds every socket, the closing rule shared with the drain and eviction,
// and eviction itself (docs/architecture.md §6, §7).
import { now, type Connection } from './connection.js'
import { requestsBegun, responsePending } from './response.js'
import type { AttachableServer } from './types.js'

/** What the sweep works on: a tracker. */
export interface SweepTarget {
  readonly conns: ReadonlySet<Connection>
  readonly policy: { readonly draining: boolean; readonly overCap: boolean }
  readonly options: { readonly graceMs: number; readonly timeoutMs: number }
  /** The longest idle time any connection was promised, grace included. */
  readonly longestIdleMs: number
  makeRoom(): void
}

/**
 * Which sockets have a request begun on them, asked of Node once per server per pass (only when
 * a connection is due). `has()` is null where this Node keeps no connection list.
 */
export interface Begun {
  has(conn: Connection): boolean | null
}

/** A fresh, lazily filled view of Node's connection lists. */
export function createBegun(): Begun {
  let servers: Map<AttachableServer, Set<unknown> | null> | null = null
  return {
    has(conn) {
      servers ??= new Map()
      let sockets = servers.get(conn.server)
      if (sockets === undefined) servers.set(conn.server, (sockets = requestsBegun(conn.server)))
      return sockets === null ? null : sockets.has(conn.socket)
    },
  }
}

/**
 * True if a request is on its way on this waiting connection, so neither an idle timeout, the
 * drain nor eviction may close it: Node has begun to receive a request message on it (its
 * headersTimeout guards it from then on). Empty lines before a request line begin none (RFC 9112
 * §2.2): they neither reset nor suspend the idle time. Where Node keeps no connection list, any
 * byte since the idle period began counts.
 */
export function requestArriving(conn: Connection, begun: Begun): boolean {
  // Node lists a connection as receiving from the moment it is accepted (its headersTimeout runs
  // from then for the first request), so for a fresh one its parser says instead when a request
  // message begins; one that never sent a byte has nothing on its way either.
  if (conn.state === 'new') {
    if (conn.firstMessage !== null) return conn.firstMessage
    if (conn.socket.bytesRead === 0) return false
  }
  const known = begun.has(conn)
  return known === null ? conn.bytesArrived() : known
}

/**
 * The drain's and eviction's rule: an idle connection may be closed once it has been quiet for
 * `quietMs` (a back-to-back client's next request, sent as the last response arrived, is read by
 * then) and no request is arriving on it. Called from the check phase, after a poll.
 */
export function closable(conn: Connection, time: number, quietMs: number, begun: Begun): boolean {
  if (!conn.waiting || conn.session !== null || time - conn.idleSince < quietMs) return false
  // A response Node still owes (pipelined requests received before attach() counted none of them).
  if (conn.checkDetached() || responsePending(conn.socket)) return false
  return !requestArriving(conn, begun)
}

/**
 * How often idle connections are checked: a quarter of `grace` (the slack the client was promised
 * beyond the advertised timeout), kept between 50 and 500 ms.
 */
export function sweepInterval(options: { readonly graceMs: number; readonly timeoutMs: number }): number {
  const slack = options.graceMs > 0 ? options.graceMs : options.timeoutMs || 5000
  return Math.min(500, Math.max(50, Math.round(slack / 4)))
}

/** Idle past its promised time (grace included), with no request arriving. */
function expired(conn: Connection, time: number, begun: Begun | null): boolean {
  if (!conn.waiting || conn.http2) return false
  // The read mark serves Node versions without a connection list: take it early in the period.
  if (time - conn.idleSince < conn.idleMs) {
    conn.markRead()
    return false
  }
  if (begun === null) return true // a candidate: checked again from the check phase
  if (conn.checkDetached() || responsePending(conn.socket)) return false
  return !requestArriving(conn, begun)
}

/**
 * The backstop: whatever the bookkeeping says, an HTTP/1 socket on which Node has no response
 * pending and no request begun is closed once nothing has happened on it for longer than any
 * connection was ever promised, plus two sweep ticks. Upgraded sockets are not HTTP any more and
 * are excepted.
 */
function pastBackstop(conn: Connection, time: number, boundMs: number, begun: Begun | null): boolean {
  if (conn.http2 || conn.state === 'detached' || time - conn.touchedAt < boundMs) return false
  if (begun === null) return true
  if (conn.checkDetached() || responsePending(conn.socket)) return false
  if (conn.state === 'new' && (conn.firstMessage === false || (conn.firstMessage === null && conn.socket.bytesRead === 0))) return true
  const known = begun.has(conn)
  // Without Node's list, a begun request is bounded by Node's own headersTimeout instead.
  return known === null ? time - conn.touchedAt >= boundMs + headersTimeout(conn.server) : !known
}

function headersTimeout(server: AttachableServer): number {
  const ms = (server as { headersTimeout?: unknown }).headersTimeout
  return typeof ms === 'number' && ms > 0 ? ms : 60_000
}

/** What eviction works on: a tracker. */
export interface EvictionTarget {
  readonly conns: ReadonlySet<Connection>
  /** Connections waiting for a request, longest-waiting first. */
  readonly waiting: Iterable<Connection>
  readonly leavingCount: number
  readonly options: { readonly maxConnections: number; readonly drainQuietMs: number }
}

/**
 * Eviction over `maxConnections`, from the check phase: closes the longest-waiting idle connections
 * the closing rule allows, as many as are over the cap; newcomers accepted since `newcomersSince`
 * are served (§7).
 */
export function evictIdle(target: EvictionTarget, newcomersSince: number): void {
  let excess = target.conns.size - target.leavingCount - target.options.maxConnections
  if (excess <= 0) return
  const time = now()
  const begun = createBegun()
  for (const conn of target.waiting) {
    if (excess <= 0) break
    if (conn.state === 'new' && conn.createdAt >= newcomersSince) continue
    if (closable(conn, time, target.options.drainQuietMs, begun)) {
      conn.close('evicted')
      excess--
    }
  }
}

/** The sweep of one controller. */
export class Sweep {
  private timer: NodeJS.Timeout | null = null
  private queued = false
  readonly intervalMs: number

  constructor(
    private readonly target: SweepTarget,
    /** Closes a due connection (idle timeout, or the backstop). */
    private readonly onDue: (conn: Connection, backstop: boolean) => void,
  ) {
    this.intervalMs = sweepInterval(target.options)
  }

  /** The backstop's bound now. */
  get boundMs(): number {
    return this.target.longestIdleMs + 2 * this.intervalMs
  }

  start(): void {
    if (this.timer !== null) return
    this.timer = setInterval(this.tick, this.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /**
   * One pass: releases closed sockets, finds due connections (cheaply: time only), and queues
   * their closing for the check phase, after this loop iteration's poll phase: a request that
   * arrived while the timer was due is read first and makes its connection active.
   */
  private readonly tick = (): void => {
    const time = now()
    const bound = this.boundMs
    let due = false
    for (const conn of this.target.conns) {
      if (conn.socket.destroyed) conn.release()
      else if (expired(conn, time, null) || pastBackstop(conn, time, bound, null)) due = true
    }
    if (this.target.policy.overCap) this.target.makeRoom()
    if (due && !this.queued) {
      this.queued = true
      setImmediate(this.closeDue)
    }
  }

  private readonly closeDue = (): void => {
    this.queued = false
    const time = now()
    const bound = this.boundMs
    const begun = createBegun()
    for (const conn of this.target.conns) {
      if (expired(conn, time, begun)) this.onDue(conn, false)
      else if (pastBackstop(conn, time, bound, begun)) this.onDue(conn, true)
    }
  }
}
