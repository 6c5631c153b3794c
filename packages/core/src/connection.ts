// The per-connection record and its state machine: the only writer of a connection's state
// (docs/architecture.md §3).
import type { Http2Session } from 'node:http2'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { answersParsedRequest, isDetached, kConnection, lastResponse, type FirstMessageListener, type HeadersListener } from './response.js'
import type { AttachableServer, CloseReason } from './types.js'

/**
 * Where a connection is in its life:
 * - `new`: accepted, no request yet;
 * - `active`: at least one request in flight;
 * - `idle`: kept alive between requests;
 * - `closing`: it ends once what is in flight is done (a closing response, or we closed it);
 * - `closed`: its socket has closed and it is released;
 * - `detached`: no longer HTTP/1 (upgraded to WebSocket, CONNECT tunnel): not ours to time out.
 */
export type ConnectionState = 'new' | 'active' | 'idle' | 'closing' | 'closed' | 'detached'

/** What a connection tells its owner (the tracker): aggregates follow from these calls alone. */
export interface ConnectionOwner {
  /** The connection has requests in flight now (`true`) or none any more (`false`). */
  busy(conn: Connection, busy: boolean): void
  /** The connection started (`true`) or stopped (`false`) waiting for a request (states new and idle). */
  idle(conn: Connection, idle: boolean): void
  /** The connection is now known to close (`true`), or a close predicted for it was wrong (`false`). */
  leaving(conn: Connection, leaving: boolean): void
  /** A response finished (`served`) or was cut; `reused` if it was not the connection's first. */
  served(conn: Connection, reused: boolean): void
  /** The connection's socket closed. */
  released(conn: Connection): void
  /** A request no listener was handed started, answered by `res` (see `Connection.unannounced`). */
  unannounced(conn: Connection, res: object): void
  /** Decides the connection headers of a response about to be written (see response.ts). */
  decide(conn: Connection, res: unknown, statusCode: number, inStore: boolean): void
}

/**
 * The clock of connection times: whole milliseconds since the process started. Whole numbers stay
 * small integers in V8's object fields (no boxed double per timestamp per connection).
 */
export function now(): number {
  return Math.floor(performance.now())
}

/** A socket as the tracker sees it. */
export interface TrackedSocket extends Socket {
  [kConnection]?: Connection
  alpnProtocol?: string | false | null
}

/** An HTTP/2 session as the tracker sees it. */
export interface TrackedSession extends Http2Session {
  [kConnection]?: Connection
}

/**
 * A pipelined response's number (1-based) on its connection. Alone in flight, a response needs
 * none: it is its connection's latest.
 */
export const kSequence = Symbol('keepalive.sequence')

/** A response as the connection numbers it. */
export interface NumberedResponse {
  [kSequence]?: number
}

/** Per-connection state, kept on the socket itself. */
export class Connection implements HeadersListener, FirstMessageListener {
  state: ConnectionState = 'new'
  /** Requests started, responses ended. */
  started = 0
  finished = 0
  /** When the connection last had nothing in flight (whole ms, see `now()`). */
  idleSince: number
  /**
   * When a response last ended (or, for HTTP/2, a stream last started): the backstop's clock. An
   * HTTP/1 request start does not read the clock: while it runs, Node has a request begun or a
   * response pending on the socket, and the backstop leaves such a socket alone (§6).
   */
  touchedAt: number
  /** How long it may stay idle: what the last keep-alive response promised, plus grace. */
  idleMs: number
  /**
   * `socket.bytesRead` when this idle period began, or -1 until the sweep, the drain or eviction
   * takes it (`markRead()`): read once per idle period, not per request.
   */
  readMark = -1
  /** Why it closes; set on entering `closing` (null there: the client's or Node's own close). */
  reason: CloseReason | null = null
  /** Counted by the owner as leaving (a close is decided or under way). */
  leaving = false
  /**
   * For a new connection: whether its first request message has begun (true), not yet (false), or
   * this socket cannot tell (null: Node's connection list answers instead).
   */
  firstMessage: boolean | null = null
  session: TrackedSession | null = null
  /** A random whole number in [0, 2^30): this connection's maxAge jitter and its turn in a gradual drain. */
  readonly seed = (Math.random() * 0x40000000) | 0
  /**
   * The decider's preset epoch when its latest request started: that request's response then has
   * the keep-alive fields written already (-1: none). See `Decider.requestStarted`.
   */
  presetEpoch = -1
  /** The number (1-based) of the response a close was last predicted for, or 0. */
  predictedN = 0
  /** The response of the latest request that started, until it ends (HTTP/1). */
  latest: object | null = null
  /** Whether the owner listens for this socket's close (see `watchClose`). */
  closeWatched = false

  constructor(
    readonly owner: ConnectionOwner,
    readonly socket: TrackedSocket,
    readonly server: AttachableServer,
    /** Whole ms, see `now()`. */
    readonly createdAt: number,
    /** Normalised remote address; read only when `maxConnectionsPerIp` is set, else null. */
    readonly address: string | null,
    readonly http2: boolean,
    idleMs: number,
    /** The server port, for the close event; read only when someone listens to `close`. */
    readonly localPort: number | undefined,
  ) {
    this.idleSince = createdAt
    this.touchedAt = createdAt
    this.idleMs = idleMs
  }

  /** Requests in flight. */
  get inFlight(): number {
    return this.started - this.finished
  }

  /** Still waiting for, or between, requests: what idle timeouts, eviction and the drain may close. */
  get waiting(): boolean {
    return this.state === 'idle' || this.state === 'new'
  }

  /** Takes this idle period's read mark if nobody has yet; true if it did. */
  markRead(): boolean {
    if (this.readMark !== -1) return false
    this.readMark = this.socket.bytesRead
    return true
  }

  /** True if bytes arrived since the idle period's mark (taking the mark now counts as "maybe"). */
  bytesArrived(): boolean {
    return this.markRead() || this.socket.bytesRead !== this.readMark
  }

  // ---- transitions: the only writers of the fields above ---------------------------------

  /** The owner listens for this socket's close from now on; false if it already did. */
  watchClose(): boolean {
    if (this.closeWatched) return false
    this.closeWatched = true
    return true
  }

  /** A fresh connection will be told when its first request message begins (see `messageBegan`). */
  awaitFirstMessage(): void {
    this.firstMessage = false
  }

  /** The first request message began on this connection: bytes of a request are on their way. */
  messageBegan(): void {
    if (this.firstMessage === false) this.firstMessage = true
  }

  /** The response being written promises the client this much idle time (grace included). */
  keepFor(idleMs: number): void {
    this.idleMs = idleMs
  }

  /** A request started (HTTP/1 request or HTTP/2 stream); `time` moves the backstop's clock. */
  requestStarted(time?: number): void {
    if (time !== undefined) this.touchedAt = time
    if (this.started++ === this.finished) this.owner.busy(this, true)
    if (this.waiting) {
      this.owner.idle(this, false)
      this.state = 'active'
    }
  }

  /**
   * `res` answers the request that just started (after `requestStarted`). Behind another still in
   * flight (`pipelined`) it is numbered, and so is the one it follows if that one was not: each then
   * knows its place when its headers go out.
   */
  responseStarted(res: object, pipelined: boolean): void {
    if (pipelined) {
      const previous = this.latest as NumberedResponse | null
      if (previous !== null && previous[kSequence] === undefined) previous[kSequence] = this.started - 1
      ;(res as NumberedResponse)[kSequence] = this.started
    }
    this.latest = res
  }

  /** True if `res` answers a request this connection saw start. */
  answers(res: object): boolean {
    return res === this.latest || (res as NumberedResponse)[kSequence] !== undefined
  }

  unannounced(res: object): boolean {
    // Node answers the request its parser has just read, in front of any still in flight; or, where
    // the socket tells no parser, alone on it. A response to a request read before tracking began
    // is neither, and is not a new request.
    const alone = this.started === this.finished && this.waiting && (res as { socket?: unknown }).socket === this.socket
    if (!alone && !answersParsedRequest(res, this.socket)) return false
    this.owner.unannounced(this, res)
    return true
  }

  /** The connection's latest request started with its response's keep-alive fields preset in `epoch`. */
  preset(epoch: number): void {
    this.presetEpoch = epoch
  }

  /**
   * The decision for response `n` (0: an HTTP/2 session's GOAWAY) predicted that it closes the
   * connection (`reason` null: not for a reason of ours, e.g. the client asked). It stands once
   * Node really ends the socket (`responseEnded`).
   */
  predictClose(reason: CloseReason | null, n = 0): void {
    if (this.state === 'closed' || this.state === 'detached') return
    this.setLeaving(true)
    // The highest predicted stands: a pipelined response predicted before an earlier one keeps its
    // close until it ends itself (the earlier one's end corrects nothing then).
    if (n > this.predictedN) this.predictedN = n
    if (reason !== null) this.reason = reason
  }

  /**
   * An HTTP/1 response ended (responses end in order: Node gives a pipelined response its socket
   * only after those before it). What Node decided for it (`_last`: it ends the socket now) is the
   * truth; a prediction made before its headers were written is corrected here, never left
   * standing. Of a pipelined burst's predictions the highest-numbered is kept: it settles the
   * connection when its response ends, whatever an earlier one predicted.
   */
  responseEnded(res: object, time: number): void {
    if (res === this.latest) this.latest = null
    else if ((res as NumberedResponse)[kSequence] === undefined) {
      // A response to a request read before tracking began: it ends the socket or not, it is not
      // one of the requests counted here (their ends are still to come).
      if (lastResponse(res)) this.willEnd()
      return
    }
    const predicted = this.predictedN === this.finished + 1
    if (lastResponse(res)) {
      this.willEnd()
    } else if (predicted && this.state !== 'closing') {
      // Predicted to close, but Node keeps the connection (the application made it keep-alive).
      this.reason = null
      this.setLeaving(false)
    }
    this.ended(true, time)
  }

  /** Node ends the socket after the response that just ended. */
  private willEnd(): void {
    if (this.state !== 'closing' && this.state !== 'closed') {
      if (this.waiting) this.owner.idle(this, false)
      this.state = 'closing'
    }
    this.setLeaving(true)
  }

  /** An HTTP/2 stream closed; `served` if its response ended rather than being cut. */
  streamEnded(served: boolean, time: number): void {
    this.ended(served, time)
  }

  private ended(served: boolean, time: number): void {
    if (this.finished >= this.started) return // a response whose start we never saw
    this.finished++
    this.touchedAt = time
    if (served) this.owner.served(this, this.finished > 1)
    if (this.finished !== this.started) return // pipelined requests or other streams still run
    this.owner.busy(this, false)
    if (this.state !== 'active') return
    this.state = 'idle'
    this.idleSince = time
    this.readMark = -1
    this.owner.idle(this, true)
  }

  /** Closes the connection now, for `reason` (idle timeout, drain, eviction, deadline, backstop). */
  close(reason: CloseReason): void {
    if (this.state === 'closed') return
    if (this.waiting) this.owner.idle(this, false)
    if (this.state !== 'closing' || this.reason === null) this.reason = reason
    this.state = 'closing'
    this.setLeaving(true)
    if (this.session !== null) this.session.close()
    else this.socket.destroy()
  }

  /** Destroys the socket (and session) whatever it is doing: the deadline and forced ends. */
  destroy(reason: CloseReason): void {
    if (this.state === 'closed') return
    this.reason = reason
    this.session?.destroy()
    this.socket.destroy()
  }

  /** Node stopped speaking HTTP/1 on the socket: upgraded, or a CONNECT tunnel. True if so. */
  checkDetached(): boolean {
    if (this.state === 'detached') return true
    if (this.http2 || !isDetached(this.socket)) return false
    if (this.waiting) this.owner.idle(this, false)
    this.state = 'detached'
    this.setLeaving(false)
    return true
  }

  /** The socket closed: the connection is over. */
  release(): void {
    if (this.state === 'closed') return
    if (this.waiting) this.owner.idle(this, false)
    // What was still in flight ends with the socket (cut, so not counted as served).
    if (this.finished < this.started) this.owner.busy(this, false)
    this.state = 'closed'
    this.latest = null
    this.setLeaving(false)
    this.owner.released(this)
  }

  beforeHeaders(res: object, statusCode: number, inStore: boolean): void {
    this.owner.decide(this, res, statusCode, inStore)
  }

  private setLeaving(leaving: boolean): void {
    if (this.leaving === leaving) return
    this.leaving = leaving
    this.owner.leaving(this, leaving)
  }
}
