import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2Session, ServerHttp2Stream } from 'node:http2'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { Server as TlsServer, type TLSSocket } from 'node:tls'
import { parseKeepAlive } from './header.js'
import { createLoadMonitor, type LoadMonitor } from './load.js'
import type { ResolvedOptions } from './options.js'
import { applyLoad, closeReason, initialPolicy, type PolicyState } from './policy.js'
import { hookHeaders, kConnection, nodeKeepsAlive, type HeadersListener, type NodeResponseFields } from './response.js'
import type { AttachableServer, CloseReason, KeepAliveEvents } from './types.js'

const kOwner = Symbol('keepalive.owner')

/** Node publishes these around every HTTP/1.x request of every server (lib/_http_server.js). */
const REQUEST_START = 'http.server.request.start'
const RESPONSE_FINISH = 'http.server.response.finish'

interface ChannelMessage {
  request: IncomingMessage
  response: ServerResponse
  socket: Socket
  server: AttachableServer
}

/** The fields of `http.Server` (and the HTTP/1 side of `http2` servers) the tracker tunes. */
interface TunableServer extends AttachableServer {
  [kOwner]?: Tracker
  keepAliveTimeout?: number
  maxRequestsPerSocket?: number | null
  headersTimeout?: number
  requestTimeout?: number
  timeout?: number
  updateSettings?: unknown
  closeIdleConnections?: () => void
}

interface TrackedSocket extends Socket {
  [kConnection]?: Connection
  // Node sets `parser` on sockets it parses HTTP/1 on and clears it when the socket is upgraded.
  parser?: unknown
  alpnProtocol?: string | false | null
}

/** A response's place on its connection (1-based), set as its request starts. */
const kSequence = Symbol('keepalive.sequence')

interface SequencedResponse extends ServerResponse {
  [kSequence]?: number
}

interface TrackedSession extends Http2Session {
  [kConnection]?: Connection
}

/** Ms the first request may take to start on a connection whose keep-alive is off. */
const FIRST_REQUEST_MS = 5000

/**
 * How often idle connections are checked: a quarter of `grace` (the slack the client was promised
 * beyond the advertised timeout), kept between 50 and 500 ms.
 */
export function sweepInterval(options: Pick<ResolvedOptions, 'graceMs' | 'timeoutMs'>): number {
  const slack = options.graceMs > 0 ? options.graceMs : options.timeoutMs || FIRST_REQUEST_MS
  return Math.min(500, Math.max(50, Math.round(slack / 4)))
}

/** Removes an IPv4-mapped IPv6 prefix so `::ffff:1.2.3.4` and `1.2.3.4` count as one address. */
export function normaliseAddress(address: string | undefined): string | null {
  if (address === undefined) return null
  const lower = address.toLowerCase()
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower
}

/**
 * The clock of connection times: whole milliseconds since the process started. Whole numbers
 * stay small integers in V8's object fields (no boxed double per timestamp per connection).
 */
export function now(): number {
  return Math.floor(performance.now())
}

/** Per-connection state, kept on the socket itself. */
export class Connection implements HeadersListener {
  /** Requests started, responses finished. */
  started = 0
  finished = 0
  /** When the connection last turned idle (whole ms, see `now()`). */
  idleSince: number
  /** How long it may stay idle: what the last keep-alive response promised, plus grace. */
  idleMs: number
  /**
   * `socket.bytesRead` when this idle period began (0 for a new connection), or -1 until the
   * sweep or the drain takes it (`markRead()`): bytes beyond it are a request on its way, which
   * neither the idle timeout nor the drain may cut.
   */
  readMark = 0
  /** The last decided response closes the connection. */
  closing = false
  reason: CloseReason | null = null
  session: TrackedSession | null = null
  readonly http2: boolean
  /** The server port, for the close event; read at track time only when someone listens (a getsockname() call). */
  localPort: number | undefined = undefined

  constructor(
    readonly tracker: Tracker,
    readonly socket: TrackedSocket,
    /** Whole ms, see `now()`. */
    readonly createdAt: number,
    /** Normalised remote address; read only when `maxConnectionsPerIp` is set, else null. */
    readonly address: string | null,
    http2: boolean,
    idleMs: number,
  ) {
    this.idleSince = createdAt
    this.idleMs = idleMs
    this.http2 = http2
  }

  get active(): boolean {
    return this.started > this.finished
  }

  /** Takes this idle period's read mark if nobody has yet; true if it did. */
  markRead(): boolean {
    if (this.readMark !== -1) return false
    this.readMark = this.socket.bytesRead
    return true
  }

  /**
   * True if bytes arrived since the connection turned idle: a request is on its way. With the mark
   * taken only now, the answer is "maybe", so the caller checks again later.
   */
  requestArriving(): boolean {
    return this.markRead() || this.socket.bytesRead !== this.readMark
  }

  /** Node no longer speaks HTTP/1 on this socket (upgraded to WebSocket, CONNECT tunnel). */
  get detached(): boolean {
    return !this.http2 && this.socket.parser == null
  }

  beforeHeaders(res: ServerResponse, statusCode: number, inStore: boolean): void {
    if (inStore) this.tracker.decideInStore(this, res, statusCode)
    else this.tracker.decide(this, res)
  }
}

interface Attachment {
  readonly connectionEvent: string
  readonly onConnection: (socket: TrackedSocket) => void
  readonly onClose: () => void
  readonly onSession: ((session: TrackedSession) => void) | null
  readonly onStream: ((stream: ServerHttp2Stream) => void) | null
}

/** Hooks the drain installs while a shutdown runs. */
export interface DrainHooks {
  /** A connection went idle during the drain. */
  idle(conn: Connection): void
  /** A connection closed. */
  released(): void
  /** A request finished during the drain. */
  finished(): void
  /** The drain closed an idle connection. */
  closedIdle(): void
}

function onSocketClose(this: TrackedSocket): void {
  const conn = this[kConnection]
  if (conn !== undefined) conn.tracker.release(conn)
}

/** Connection tracking, the per-response policy and idle timers for one controller. */
export class Tracker {
  readonly conns = new Set<Connection>()
  /** Idle connections, longest-idle first; kept only when `maxConnections` is set. */
  readonly idle: Set<Connection> | null
  readonly perAddress: Map<string, number> | null
  readonly servers = new Map<TunableServer, Attachment>()
  readonly events = new EventEmitter()
  readonly policy: PolicyState
  readonly closes: Record<CloseReason, number> = {
    client: 0,
    idleTimeout: 0,
    maxRequests: 0,
    maxAge: 0,
    shed: 0,
    evicted: 0,
    perIp: 0,
    drain: 0,
    forced: 0,
  }
  active = 0
  requests = 0
  reused = 0
  load = 0
  drainHooks: DrainHooks | null = null
  /** Connections closing to bring the count back under `maxConnections`, not yet closed. */
  private leaving = 0
  private monitor: LoadMonitor | null = null
  private sweepTimer: NodeJS.Timeout | null = null
  private closeQueued = false
  /**
   * Whether each socket has a 'close' listener. It costs ~200 B per connection (with Node's own
   * per-request listener, the socket's listener list turns into an array that keeps its grown
   * capacity), so it is kept only where a close must be seen at once: under `maxConnections` or
   * `maxConnectionsPerIp`, and while draining. Otherwise the sweep releases closed sockets within
   * one interval, and `purge()` before `stats()` makes the counts exact.
   */
  private watching: boolean
  private subscribed = false
  private headerCache: (string | undefined)[] = []
  private headerPrefix = ''
  private headerTimeoutOnly = ''

  constructor(readonly options: ResolvedOptions) {
    this.policy = initialPolicy(options)
    this.idle = options.maxConnections === Infinity ? null : new Set()
    this.perAddress = options.maxConnectionsPerIp === Infinity ? null : new Map()
    this.watching = this.idle !== null || this.perAddress !== null
    this.rebuildHeaders()
    // An 'error' event without a listener would throw; errors of the user's signal are reported, never thrown.
    this.events.on('error', () => {})
  }

  // ---- attaching -------------------------------------------------------------------------

  attach(server: TunableServer): void {
    if (server[kOwner] === this) return
    if (server[kOwner] !== undefined) {
      throw new Error('keepalive: this server is already attached to another keepalive controller')
    }
    server[kOwner] = this
    const http2 = typeof server.updateSettings === 'function'
    const tls = server instanceof TlsServer
    const attachment: Attachment = {
      connectionEvent: tls ? 'secureConnection' : 'connection',
      onConnection: (socket) => {
        this.track(socket, server)
      },
      onClose: () => {
        this.detach(server)
      },
      onSession: http2 ? (session) => this.trackSession(session) : null,
      onStream: http2 ? (stream) => this.streamStarted(stream) : null,
    }
    this.servers.set(server, attachment)
    // http2 servers create the session in their own connection listener and emit 'session' from it:
    // track the socket first, so the session finds its connection.
    if (http2) server.prependListener(attachment.connectionEvent, attachment.onConnection)
    else server.on(attachment.connectionEvent, attachment.onConnection)
    server.on('close', attachment.onClose)
    if (attachment.onSession !== null) server.on('session', attachment.onSession)
    if (attachment.onStream !== null) server.on('stream', attachment.onStream)

    // Idle timeouts are per connection from now on: Node must not arm its own, nor advertise it.
    if (typeof server.keepAliveTimeout === 'number') server.keepAliveTimeout = 0
    // `max` governs; Node's own limit would answer 503 past it and keep closed sockets open.
    if (typeof server.maxRequestsPerSocket === 'number' && server.maxRequestsPerSocket > 0) server.maxRequestsPerSocket = 0
    this.alignSlowlorisGuards(server)

    if (!this.subscribed) {
      subscribe(REQUEST_START, this.onRequestStart)
      subscribe(RESPONSE_FINISH, this.onResponseFinish)
      this.subscribed = true
    }
    if (this.sweepTimer === null) {
      this.sweepTimer = setInterval(this.sweep, sweepInterval(this.options))
      this.sweepTimer.unref()
    }
    if (this.options.adaptive !== null && this.monitor === null) {
      this.monitor = createLoadMonitor(
        this.options.adaptive.intervalMs,
        {
          open: () => this.conns.size,
          maxConnections: this.options.maxConnections,
          user: this.options.adaptive.signal,
          onSignalError: (error) => this.events.emit('error', error),
        },
        (load) => this.setLoad(load),
      )
      this.monitor.start()
    }
  }

  /**
   * Node's request guards count from a request's first byte (lib/_http_server.js checkConnections),
   * not from idle time, but a headersTimeout below our idle time would contradict what we advertise
   * to proxies that reuse connections slowly; keep headersTimeout above it and requestTimeout >= headersTimeout,
   * as Node requires. Guards are only ever raised, never lowered or turned off.
   */
  private alignSlowlorisGuards(server: TunableServer): void {
    const idleMs = this.options.timeoutMs + this.options.graceMs
    if (typeof server.headersTimeout === 'number' && server.headersTimeout > 0 && server.headersTimeout <= idleMs) {
      server.headersTimeout = idleMs + 1000
    }
    if (
      typeof server.requestTimeout === 'number' &&
      typeof server.headersTimeout === 'number' &&
      server.requestTimeout > 0 &&
      server.requestTimeout < server.headersTimeout
    ) {
      server.requestTimeout = server.headersTimeout
    }
  }

  /** Releases everything attached to a server once it has closed. */
  detach(server: TunableServer): void {
    const attachment = this.servers.get(server)
    if (attachment === undefined) return
    this.servers.delete(server)
    server.off(attachment.connectionEvent, attachment.onConnection)
    server.off('close', attachment.onClose)
    if (attachment.onSession !== null) server.off('session', attachment.onSession)
    if (attachment.onStream !== null) server.off('stream', attachment.onStream)
    delete server[kOwner]
    if (this.servers.size === 0) this.releaseAll()
  }

  /** Stops the sampler and the channel subscriptions; nothing of this controller keeps running. */
  releaseAll(): void {
    if (this.subscribed) {
      unsubscribe(REQUEST_START, this.onRequestStart)
      unsubscribe(RESPONSE_FINISH, this.onResponseFinish)
      this.subscribed = false
    }
    this.monitor?.stop()
    this.monitor = null
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer)
    this.sweepTimer = null
  }

  owns(server: unknown): server is TunableServer {
    return typeof server === 'object' && server !== null && (server as TunableServer)[kOwner] === this
  }

  // ---- connections -----------------------------------------------------------------------

  /** Starts tracking a socket; returns null if it was refused over the per-address cap. */
  track(socket: TrackedSocket, server: TunableServer): Connection | null {
    const existing = socket[kConnection]
    if (existing !== undefined) return existing.tracker === this ? existing : null
    // Only the per-address cap needs the address: reading it costs a getpeername() call and its strings.
    const address = this.perAddress === null ? null : normaliseAddress(socket.remoteAddress)
    if (this.perAddress !== null && address !== null) {
      const count = this.perAddress.get(address) ?? 0
      if (count >= this.options.maxConnectionsPerIp) {
        this.closes.perIp++
        const localPort = this.events.listenerCount('close') > 0 ? socket.localPort : undefined
        socket.destroy()
        if (this.events.listenerCount('close') > 0) {
          this.events.emit('close', { reason: 'perIp', requests: 0, age: 0, remoteAddress: socket.remoteAddress, localPort, http2: undefined })
        }
        return null
      }
      this.perAddress.set(address, count + 1)
    }
    const http2 = typeof server.updateSettings === 'function' && (!(server instanceof TlsServer) || (socket as TLSSocket).alpnProtocol === 'h2')
    // A connection that never sends a request is closed like an idle one.
    const idleMs = (this.policy.timeoutMs || FIRST_REQUEST_MS) + this.options.graceMs
    const conn = new Connection(this, socket, now(), address, http2, idleMs)
    socket[kConnection] = conn
    this.conns.add(conn)
    this.idle?.add(conn)
    // After the close the socket can no longer tell its port: read it now if an exporter will want it.
    if (this.events.listenerCount('close') > 0) conn.localPort = socket.localPort
    if (this.watching) socket.on('close', onSocketClose)
    if (this.events.listenerCount('connection') > 0) {
      this.events.emit('connection', { remoteAddress: socket.remoteAddress, open: this.conns.size })
    }
    if (this.idle !== null) this.makeRoom(conn)
    return conn
  }

  private trackSession(session: TrackedSession): void {
    let conn: Connection | undefined
    try {
      conn = (session.socket as TrackedSocket)[kConnection]
    } catch {
      return // the session lost its socket before we saw it: nothing to track
    }
    if (conn === undefined || conn.tracker !== this) return
    conn.session = session
    session[kConnection] = conn
  }

  /** Over `maxConnections`: close the longest-idle connections first, as nginx does when it runs out. */
  private makeRoom(newcomer: Connection): void {
    let excess = this.conns.size - this.leaving - this.options.maxConnections
    if (excess > 0) {
      for (const conn of this.idle!) {
        if (excess <= 0) break
        if (conn === newcomer || conn.closing || conn.active || conn.detached) continue
        // Accepted moments ago and not yet heard from: its first request may already be on the wire
        // (a burst of new clients at the cap). As the drain does, give it `grace` before calling it idle.
        if (conn.started === 0 && newcomer.createdAt - conn.createdAt < this.options.graceMs) continue
        conn.reason = 'evicted'
        conn.closing = true
        this.leaving++
        excess--
        if (conn.session !== null) conn.session.close()
        else conn.socket.destroy()
      }
    }
    // Nothing idle left to close: new clients are still served, and the next responses close their
    // connections (counted as evicted too), one per connection over the cap.
    this.policy.overCap = excess > 0
  }

  release(conn: Connection): void {
    if (!this.conns.delete(conn)) return
    this.idle?.delete(conn)
    if (conn.active) this.active--
    if (conn.reason === 'evicted') this.leaving--
    if (this.perAddress !== null && conn.address !== null) {
      const count = (this.perAddress.get(conn.address) ?? 1) - 1
      if (count <= 0) this.perAddress.delete(conn.address)
      else this.perAddress.set(conn.address, count)
    }
    if (this.policy.overCap) this.policy.overCap = this.conns.size - this.leaving > this.options.maxConnections
    const reason = conn.reason ?? 'client'
    this.closes[reason]++
    conn.socket.off('close', onSocketClose)
    if (this.events.listenerCount('close') > 0) {
      this.events.emit('close', {
        reason,
        requests: conn.finished,
        age: (now() - conn.createdAt) / 1000,
        remoteAddress: conn.socket.remoteAddress,
        localPort: conn.localPort,
        http2: conn.http2,
      })
    }
    this.drainHooks?.released()
  }

  /**
   * Idle timeouts: one timer for every connection, rather than a timer re-armed on each socket
   * after each response (what Node's keepAliveTimeout does). An HTTP/1 connection idle for longer
   * than its `idleMs` is closed; HTTP/2 sessions and upgraded sockets are not ours to time out.
   */
  private readonly sweep = (): void => {
    const time = now()
    let due = false
    for (const conn of this.conns) {
      if (conn.socket.destroyed) this.release(conn)
      else if (this.expired(conn, time)) due = true
    }
    if (due && !this.closeQueued) {
      // Close from the check phase, after this loop iteration's poll phase: a request that
      // arrived while the timer was due is read first and makes its connection active.
      this.closeQueued = true
      setImmediate(this.closeExpired)
    }
  }

  /** Releases connections whose sockets have closed but were not released yet (see `watching`). */
  purge(): void {
    if (this.watching) return
    for (const conn of this.conns) if (conn.socket.destroyed) this.release(conn)
  }

  /** From now on every close is seen at once (the drain needs it): purges, then listens on every socket. */
  watchCloses(): void {
    if (this.watching) return
    this.purge()
    this.watching = true
    for (const conn of this.conns) conn.socket.on('close', onSocketClose)
  }

  private readonly closeExpired = (): void => {
    this.closeQueued = false
    const time = now()
    for (const conn of this.conns) {
      if (this.expired(conn, time)) this.closeIdle(conn, this.policy.draining ? 'drain' : 'idleTimeout')
    }
  }

  /**
   * Idle past its time, with no request started nor begun: once a request's first bytes arrive,
   * Node's headersTimeout guards it (nginx likewise switches from keepalive_timeout to
   * client_header_timeout).
   */
  private expired(conn: Connection, time: number): boolean {
    if (conn.started !== conn.finished || conn.closing || conn.http2) return false
    // First sight in this idle period: take the mark now (read once per idle period, not per
    // request), so it is ready when the time is up.
    if (conn.markRead()) return false
    return time - conn.idleSince >= conn.idleMs && !conn.requestArriving() && !conn.detached
  }

  /** Closes an idle connection now. */
  closeIdle(conn: Connection, reason: CloseReason): void {
    if (conn.reason === null) conn.reason = reason
    conn.closing = true
    if (reason === 'drain') this.drainHooks?.closedIdle()
    if (conn.session !== null) conn.session.close()
    else conn.socket.destroy()
  }

  // ---- requests --------------------------------------------------------------------------

  // Arrow functions: subscribed once per controller, no closure per request.
  private readonly onRequestStart = (message: unknown): void => {
    const { server, socket, response } = message as ChannelMessage
    if ((server as TunableServer)[kOwner] !== this) return
    const conn = (socket as TrackedSocket)[kConnection] ?? this.track(socket, server)
    if (conn !== null) this.requestStarted(conn, response)
  }

  private readonly onResponseFinish = (message: unknown): void => {
    const { server, socket, response } = message as ChannelMessage
    if ((server as TunableServer)[kOwner] !== this) return
    const conn = (socket as TrackedSocket)[kConnection]
    if (conn !== undefined && conn.tracker === this) this.responseFinished(conn, response)
  }

  /** Processes a request's start; also called by `handle()` for the request that attached lazily. */
  requestStarted(conn: Connection, res: SequencedResponse): void {
    this.markStarted(conn)
    // Pipelined requests may write their headers out of order: `max=` counts by place, not by who writes first.
    res[kSequence] = conn.started
    hookHeaders(res)
  }

  /** Counts a request's start; a connection with nothing in flight turns active. (HTTP/1 and HTTP/2.) */
  private markStarted(conn: Connection): void {
    if (conn.started++ === conn.finished) {
      this.active++
      this.idle?.delete(conn)
    }
  }

  /**
   * Counts a response's end (`served`: it finished, rather than being cut); returns true if the
   * connection has nothing left in flight. (HTTP/1 and HTTP/2.)
   */
  private markFinished(conn: Connection, served: boolean): boolean {
    conn.finished++
    if (served) {
      this.requests++
      if (conn.finished > 1) this.reused++
      this.drainHooks?.finished()
    }
    if (conn.active) return false // pipelined requests or other streams are still running
    this.active--
    return true
  }

  private responseFinished(conn: Connection, res: ServerResponse): void {
    if (conn.finished >= conn.started) return // a response we never saw start
    // Node ends the socket after a response it marked last (its own rule 3, or our Connection: close).
    if ((res as unknown as NodeResponseFields)._last) conn.closing = true
    if (!this.markFinished(conn, true)) return
    if (conn.closing) return
    conn.idleSince = now()
    conn.readMark = -1
    this.idle?.add(conn)
    this.drainHooks?.idle(conn)
  }

  private streamStarted(stream: ServerHttp2Stream): void {
    const conn = (stream.session as TrackedSession | undefined)?.[kConnection]
    if (conn === undefined || conn.tracker !== this) return
    this.markStarted(conn)
    stream.once('close', () => {
      // A stream reset or destroyed before its response ended (at the deadline, say) served no request.
      if (!this.markFinished(conn, stream.writableFinished)) return
      conn.idleSince = now()
      this.idle?.add(conn)
    })
  }

  /**
   * The per-response decision, taken as the headers are written (DESIGN.md rules 3 to 5), for a
   * response whose connection headers are left to us: it sets the fields Node writes them from
   * (see NodeResponseFields), so Node's own rule 3 applies and no header goes through `setHeader`.
   */
  decide(conn: Connection, res: SequencedResponse): void {
    const n = res[kSequence] ?? conn.started
    const reason = this.reasonToClose(conn, n)
    const fields = res as unknown as NodeResponseFields
    if (reason !== null) {
      // Node writes `Connection: close` and ends the socket after this response.
      fields.shouldKeepAlive = false
      this.closing(conn, reason)
      return
    }
    const policy = this.policy
    conn.closing = false // Node may still close after it (its rule 3): responseFinished reads that from `_last`
    fields._keepAliveTimeout = policy.timeoutMs
    fields._maxRequestsPerSocket = policy.max === Infinity ? 0 : policy.max - n
    conn.idleMs = policy.timeoutMs + this.options.graceMs
  }

  /** The decision for a response whose application set `Connection` or `Keep-Alive` itself: read and written in the header store. */
  decideInStore(conn: Connection, res: SequencedResponse, statusCode: number): void {
    const n = res[kSequence] ?? conn.started
    if (!nodeKeepsAlive(res, statusCode)) {
      // Node closes after this response anyway; never advertise keep-alive beside it.
      if (res.hasHeader('keep-alive')) res.removeHeader('keep-alive')
      conn.closing = true
      return
    }
    const options = this.options
    const reason = this.reasonToClose(conn, n)
    if (reason !== null) {
      res.setHeader('Connection', 'close')
      if (res.hasHeader('keep-alive')) res.removeHeader('keep-alive')
      this.closing(conn, reason)
      return
    }
    conn.closing = false
    const own = res.getHeader('keep-alive')
    if (own === undefined) {
      res.setHeader('Keep-Alive', this.headerFor(n))
      conn.idleMs = this.policy.timeoutMs + options.graceMs
    } else {
      // The application's header wins, and the socket keeps what it promises.
      const promised = parseKeepAlive(Array.isArray(own) ? own : String(own)).timeout
      conn.idleMs = (promised === undefined ? this.policy.timeoutMs : Math.min(promised * 1000, 0x7fffffff - options.graceMs)) + options.graceMs
    }
  }

  private reasonToClose(conn: Connection, n: number): CloseReason | null {
    const ageMs = this.options.maxAgeMs === Infinity ? 0 : now() - conn.createdAt
    return closeReason(n, ageMs, this.policy, this.options)
  }

  /** Records that the response being decided closes its connection, and why. */
  private closing(conn: Connection, reason: CloseReason): void {
    conn.closing = true
    conn.reason = reason
    if (reason === 'evicted') {
      // Closing after this response brings the count one closer to the cap.
      this.leaving++
      this.policy.overCap = this.conns.size - this.leaving > this.options.maxConnections
    }
  }

  /** `Keep-Alive` value for the n-th response; built once per (timeout, remaining) value. */
  private headerFor(n: number): string {
    const max = this.policy.max
    if (max === Infinity) return this.headerTimeoutOnly
    const remaining = max - n
    const cached = this.headerCache[remaining]
    if (cached !== undefined) return cached
    return (this.headerCache[remaining] = this.headerPrefix + remaining)
  }

  private rebuildHeaders(): void {
    const seconds = Math.floor(this.policy.timeoutMs / 1000)
    this.headerTimeoutOnly = `timeout=${seconds}`
    this.headerPrefix = `timeout=${seconds}, max=`
    this.headerCache = []
  }

  // ---- load ------------------------------------------------------------------------------

  /** From now on every response carries `Connection: close`. */
  startDraining(): void {
    if (this.policy.draining) return
    this.policy.draining = true
    this.events.emit('draining')
  }

  setLoad(load: number): void {
    const previous = this.load
    this.load = load
    if (applyLoad(this.policy, load, this.options)) this.rebuildHeaders()
    if (load !== previous && this.events.listenerCount('load') > 0) this.events.emit('load', load)
  }

  emit<E extends keyof KeepAliveEvents>(event: E, ...args: KeepAliveEvents[E]): void {
    this.events.emit(event, ...args)
  }
}
