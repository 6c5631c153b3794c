// The connection registry of one controller: track and release, counters, caps and eviction, the
// per-response decision, events (docs/architecture.md §2-§4).
import { EventEmitter } from 'node:events'
import type { ServerResponse } from 'node:http'
import { Server as TlsServer, type TLSSocket } from 'node:tls'
import { Connection, now, type ConnectionOwner, type TrackedSocket } from './connection.js'
import { Decider } from './decision.js'
import type { ResolvedOptions } from './options.js'
import { applyLoad, initialPolicy, type PolicyState } from './policy.js'
import { forgetHooked, forgetHookedIf, hookHeaders, kConnection, watchFirstMessage } from './response.js'
import { evictIdle } from './sweep.js'
import { CLOSE_REASONS, type AttachableServer, type CloseReason, type KeepAliveEvents } from './types.js'

/** Ms the first request may take to start on a connection whose keep-alive is off. */
export const FIRST_REQUEST_MS = 5000

/** Hooks the drain installs while a shutdown runs. */
export interface DrainHooks {
  /** A connection went idle, or was accepted, during the drain. */
  idle(conn: Connection): void
  /** A connection closed. */
  released(): void
  /** A request finished during the drain. */
  finished(): void
  /** The drain closed an idle connection. */
  closedIdle(): void
}

const NO_DRAIN: DrainHooks = Object.freeze({ idle() {}, released() {}, finished() {}, closedIdle() {} })

/** The waiting list's operations: a `Set`, or one that holds nothing where no cap needs the list. */
interface ConnectionList extends Iterable<Connection> {
  add(conn: Connection): unknown
  delete(conn: Connection): unknown
}

/** Holds nothing: the waiting list when no `maxConnections` needs it (no branch per request). */
const NO_LIST: ConnectionList = Object.freeze({
  add() {},
  delete() {},
  *[Symbol.iterator](): Generator<Connection> {},
})

/** Removes an IPv4-mapped IPv6 prefix so `::ffff:1.2.3.4` and `1.2.3.4` count as one address. */
export function normaliseAddress(address: string | undefined): string | null {
  if (address === undefined) return null
  const lower = address.toLowerCase()
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower
}

function onSocketClose(this: TrackedSocket): void {
  this[kConnection]?.release()
}

/** Connection tracking, counters, caps and the per-response decision for one controller. */
export class Tracker implements ConnectionOwner {
  readonly conns = new Set<Connection>()
  /** Connections waiting for a request, longest-waiting first; kept only under `maxConnections`. */
  readonly waiting: ConnectionList
  readonly perAddress: Map<string, number> | null
  readonly events = new EventEmitter()
  readonly policy: PolicyState
  /** Closed connections by reason, in the order of `CLOSE_REASONS`. */
  readonly closes = Object.fromEntries(CLOSE_REASONS.map((reason) => [reason, 0])) as Record<CloseReason, number>
  /** Connections with a request in flight. */
  active = 0
  requests = 0
  reused = 0
  load = 0
  /** Connections known to close (a closing response decided, or closed by us), not yet closed. */
  leavingCount = 0
  drainHooks: DrainHooks = NO_DRAIN
  /**
   * Whether each socket has a 'close' listener (~200 B each): only where a close must be seen at once
   * (caps, drain); else the sweep releases closed sockets within one tick and `purge()` precedes
   * `stats()`. A connection known to close gets one in any case (`leaving`), so that its record and
   * socket are let go as the socket closes: held until the sweep, they outlive young-generation
   * collections and are promoted, and connections recycled at `max` then cost major collections.
   */
  private watching: boolean
  private evictQueued = false
  /** When the pending eviction pass was queued: connections accepted since are the newcomers it makes room for. */
  private evictQueuedAt = 0
  readonly decider: Decider

  constructor(readonly options: ResolvedOptions) {
    this.policy = initialPolicy(options)
    this.waiting = options.maxConnections === Infinity ? NO_LIST : new Set<Connection>()
    this.perAddress = options.maxConnectionsPerIp === Infinity ? null : new Map()
    this.watching = options.maxConnections !== Infinity || this.perAddress !== null
    this.decider = new Decider(options, this.policy, Math.max(options.timeoutMs, FIRST_REQUEST_MS) + options.graceMs)
    // An 'error' event without a listener would throw; errors are reported, never thrown at Node.
    this.events.on('error', () => {})
  }

  // ---- connections -----------------------------------------------------------------------

  /** Starts tracking a socket; returns null if it was refused over the per-address cap. */
  track(socket: TrackedSocket, server: AttachableServer): Connection | null {
    const existing = socket[kConnection]
    if (existing !== undefined) return existing.owner === this ? existing : null
    // Only the per-address cap needs the address: reading it costs a getpeername() call and its strings.
    const address = this.perAddress === null ? null : normaliseAddress(socket.remoteAddress)
    if (this.perAddress !== null && address !== null) {
      const count = this.perAddress.get(address) ?? 0
      if (count >= this.options.maxConnectionsPerIp) {
        this.closes.perIp++
        const localPort = this.events.listenerCount('close') > 0 ? socket.localPort : undefined
        socket.destroy()
        if (this.events.listenerCount('close') > 0) {
          this.emit('close', { reason: 'perIp', requests: 0, age: 0, remoteAddress: socket.remoteAddress, localPort, http2: undefined })
        }
        return null
      }
      this.perAddress.set(address, count + 1)
    }
    const http2 =
      typeof (server as { updateSettings?: unknown }).updateSettings === 'function' &&
      (!(server instanceof TlsServer) || (socket as TLSSocket).alpnProtocol === 'h2')
    // A connection that never sends a request is closed like an idle one.
    const idleMs = (this.policy.timeoutMs || FIRST_REQUEST_MS) + this.options.graceMs
    // After the close the socket can no longer tell its port: read it now if an exporter will want it
    // (a getsockname() call, so only then).
    const localPort = this.events.listenerCount('close') > 0 ? socket.localPort : undefined
    const conn = new Connection(this, socket, server, now(), address, http2, idleMs, localPort)
    socket[kConnection] = conn
    if (!http2 && watchFirstMessage(socket)) conn.awaitFirstMessage()
    this.conns.add(conn)
    this.waiting.add(conn)
    if (this.watching) this.watchClose(conn)
    // Accepted during a drain (the listener's last poll): closed by its rule like any idle one.
    this.drainHooks.idle(conn)
    if (this.events.listenerCount('connection') > 0) {
      this.emit('connection', { remoteAddress: socket.remoteAddress, open: this.conns.size })
    }
    this.makeRoom()
    return conn
  }

  /** The longest idle time any connection was promised (plus grace): the backstop's base. */
  get longestIdleMs(): number {
    return this.decider.longestIdleMs
  }

  /**
   * A request started on a tracked connection (numbered for `max=`, its headers hooked). No clock
   * read: the per-request path reads it once, as the response ends (docs/architecture.md §6, §9).
   */
  requestStarted(conn: Connection, res: ServerResponse): void {
    const pipelined = conn.started !== conn.finished
    conn.requestStarted()
    this.decider.requestStarted(conn, res, pipelined)
    hookHeaders(res, conn)
  }

  /** An HTTP/1 response ended on a tracked connection. */
  responseEnded(conn: Connection, res: ServerResponse): void {
    forgetHooked(res)
    conn.responseEnded(res, now())
  }

  /** The controller stopped: a response hooked for one of its connections is not held any more. */
  forgetHooked(): void {
    forgetHookedIf((listener) => (listener as Connection).owner === this)
  }

  /** Releases connections whose sockets have closed but were not released yet (see `watching`). */
  purge(): void {
    if (this.watching) return
    for (const conn of this.conns) if (conn.socket.destroyed) conn.release()
  }

  /** From now on every close is seen at once (the drain needs it): purges, then listens on every socket. */
  watchCloses(): void {
    if (this.watching) return
    this.purge()
    this.watching = true
    for (const conn of this.conns) this.watchClose(conn)
  }

  // ---- ConnectionOwner: aggregates follow the connections' transitions ---------------------

  unannounced(conn: Connection, res: object): void {
    // As `requestStarted`, without hooking: its hook is running now.
    const pipelined = conn.started !== conn.finished
    conn.requestStarted()
    this.decider.requestStarted(conn, res as ServerResponse, pipelined)
  }

  decide(conn: Connection, res: object, statusCode: number, inStore: boolean): void {
    this.decider.decide(conn, res, statusCode, inStore)
  }

  busy(_conn: Connection, busy: boolean): void {
    this.active += busy ? 1 : -1
  }

  idle(conn: Connection, waiting: boolean): void {
    if (waiting) {
      this.waiting.add(conn)
      this.drainHooks.idle(conn)
    } else {
      this.waiting.delete(conn)
    }
  }

  leaving(conn: Connection, leaving: boolean): void {
    this.leavingCount += leaving ? 1 : -1
    if (leaving) this.watchClose(conn)
    this.checkCap()
  }

  /** Releases the connection as its socket closes, rather than at the next sweep (once per socket). */
  private watchClose(conn: Connection): void {
    if (conn.watchClose()) conn.socket.on('close', onSocketClose)
  }

  served(_conn: Connection, reused: boolean): void {
    this.requests++
    if (reused) this.reused++
    this.drainHooks.finished()
  }

  released(conn: Connection): void {
    if (!this.conns.delete(conn)) return
    // A response that never went out (its client gone) is not held past its connection.
    forgetHookedIf((listener) => listener === conn)
    if (this.perAddress !== null && conn.address !== null) {
      const count = (this.perAddress.get(conn.address) ?? 1) - 1
      if (count <= 0) this.perAddress.delete(conn.address)
      else this.perAddress.set(conn.address, count)
    }
    this.checkCap()
    const reason = conn.reason ?? 'client'
    this.closes[reason]++
    if (conn.closeWatched) conn.socket.off('close', onSocketClose)
    if (this.events.listenerCount('close') > 0) {
      this.emit('close', {
        reason,
        requests: conn.finished,
        age: (now() - conn.createdAt) / 1000,
        remoteAddress: conn.socket.remoteAddress,
        localPort: conn.localPort,
        http2: conn.http2,
      })
    }
    this.drainHooks.released()
  }

  /** Whether more connections are open than `maxConnections` allows, counting those already leaving. */
  private checkCap(): void {
    if (this.options.maxConnections !== Infinity) this.policy.overCap = this.conns.size - this.leavingCount > this.options.maxConnections
  }

  // ---- eviction --------------------------------------------------------------------------

  /**
   * Over `maxConnections`: queue eviction (`evictIdle`) for the check phase. If nothing qualifies, the
   * newcomer is served and the next responses close (counted as evicted).
   */
  makeRoom(): void {
    this.checkCap()
    if (!this.policy.overCap || this.evictQueued) return
    this.evictQueued = true
    this.evictQueuedAt = now()
    setImmediate(this.evict)
  }

  private readonly evict = (): void => {
    this.evictQueued = false
    evictIdle(this, this.evictQueuedAt)
  }

  // ---- policy and events -----------------------------------------------------------------

  /**
   * Marks draining: every response carries `Connection: close` (in a gradual drain, from each
   * connection's turn in `windowMs`), from now on or, with `held`, from `closeFromNow()` on.
   */
  startDraining(windowMs = 0, held = false): void {
    if (this.policy.draining) return
    this.policy.drainStartMs = held ? Infinity : now()
    this.policy.drainWindowMs = windowMs
    this.policy.draining = true
    this.emit('draining')
  }

  /** A drain held by `startDraining(…, true)` closes from now on (the listeners are closed). */
  closeFromNow(): void {
    if (this.policy.drainStartMs === Infinity) this.policy.drainStartMs = now()
  }

  setLoad(load: number): void {
    const previous = this.load
    this.load = load
    const { timeoutMs, max } = this.policy
    if (applyLoad(this.policy, load, this.options)) this.decider.timeoutChanged()
    if (this.policy.timeoutMs !== timeoutMs || this.policy.max !== max) this.decider.policyMoved()
    if (load !== previous && this.events.listenerCount('load') > 0) this.emit('load', load)
  }

  /**
   * Emits an event. A listener that throws must not break the request path, the sweep or the
   * drain: its error goes to the controller's 'error' listeners, or becomes a process warning.
   */
  emit<E extends keyof KeepAliveEvents>(event: E, ...args: KeepAliveEvents[E]): void {
    try {
      this.events.emit(event, ...args)
    } catch (error) {
      this.reportError(error)
    }
  }

  reportError(error: unknown): void {
    const err = error instanceof Error ? error : new Error(String(error))
    // One 'error' listener is our own no-op: more means the user listens.
    if (this.events.listenerCount('error') > 1) {
      try {
        this.events.emit('error', err)
        return
      } catch {
        // the user's error listener threw as well: fall through to a warning
      }
    }
    process.emitWarning(err)
  }
}
