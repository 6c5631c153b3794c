// The exported option, stats, report and event types.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'

/** Settings of the load-adaptive policy; every duration is in seconds. */
export interface AdaptiveOptions {
  /** Extra load signal in [0, 1], sampled every `interval`; the busiest signal decides. */
  signal?: () => number
  /** Load at which timeout and max start to shrink. @default 0.5 */
  from?: number
  /** Load at or above which responses carry `Connection: close`. @default 0.95 */
  shedAt?: number
  /** Advertised idle timeout at full load, in seconds. @default 1 */
  minTimeout?: number
  /** Requests per connection at full load. @default 10 */
  minMax?: number
  /** Seconds between two load samples. @default 0.5 */
  interval?: number
}

/** The idle timeout of the proxy or load balancer in front of this server. */
export interface BehindOptions {
  /** The proxy's idle timeout for upstream connections, in seconds (AWS ALB: 60). */
  idleTimeout: number
}

/** Options of {@link createKeepAlive}; every duration is in seconds (fractions allowed). */
export interface KeepAliveOptions {
  /** Advertised idle timeout in seconds; `0` turns keep-alive off. @default 5 */
  timeout?: number
  /** Requests one connection may serve in total, at most 2^31 - 1; `Infinity` sends no `max=`. @default 1000 */
  max?: number
  /** Connection age in seconds after which the next response closes it. @default Infinity */
  maxAge?: number
  /**
   * Spread of `maxAge` per connection, as a fraction (0 to 0.5): each connection's age limit is
   * `maxAge` × a random factor in [1 - maxAgeJitter, 1 + maxAgeJitter], so connections opened
   * together are not all recycled together (as gRPC's MAX_CONNECTION_AGE does). @default 0.1
   */
  maxAgeJitter?: number
  /** Seconds an idle socket is really kept beyond the advertised timeout. @default 1 */
  grace?: number
  /**
   * Seconds an idle connection must have been quiet (no request arriving) before the drain or
   * eviction closes it: time for a back-to-back client's next request to arrive and be answered
   * with `Connection: close`. At most 60. @default 0.2
   */
  drainQuiet?: number
  /** Open-connection cap; over it the longest-idle connections are closed first. @default Infinity */
  maxConnections?: number
  /**
   * Open connections per remote address; a new one over the cap is closed at once. Behind a proxy or
   * load balancer every connection comes from the proxy's address, so this caps the proxy's own
   * connection pool, not its clients (set together with `behind`, it emits a `KEEPALIVE_PER_IP_BEHIND_PROXY` warning).
   * @default Infinity
   */
  maxConnectionsPerIp?: number
  /** Shrink timeout and max with load, and shed keep-alive under overload. @default false */
  adaptive?: boolean | AdaptiveOptions
  /**
   * The proxy in front: sets `timeout` to its idle timeout + 5 s so the server outlives it; with
   * `adaptive`, the timeout then never scales to or below the proxy's (load lowers `max=` or sheds).
   */
  behind?: BehindOptions
}

/** Why a tracked connection closed. */
export type CloseReason = 'client' | 'idleTimeout' | 'maxRequests' | 'maxAge' | 'shed' | 'evicted' | 'perIp' | 'drain' | 'forced'

/** Every close reason, in the order `stats().closes` lists them (for exporters that report each, zero included). */
export const CLOSE_REASONS: readonly CloseReason[] = Object.freeze([
  'client',
  'idleTimeout',
  'maxRequests',
  'maxAge',
  'shed',
  'evicted',
  'perIp',
  'drain',
  'forced',
] as const)

/** A plain, JSON-serialisable snapshot of a controller. */
export interface KeepAliveStats {
  connections: { open: number; active: number; idle: number }
  /** Responses finished. */
  requests: number
  /** Share of requests served on an already-used connection, in [0, 1]. */
  reuseRatio: number
  closes: Record<CloseReason, number>
  /** Current smoothed load factor in [0, 1]. */
  load: number
  /** Current advertised idle timeout in seconds. */
  timeout: number
  /** Current requests-per-connection limit; `null` when unlimited. */
  max: number | null
  draining: boolean
}

/** What {@link KeepAliveController.shutdown} resolves with. */
export interface ShutdownReport {
  /** Sockets closed while idle. */
  closedIdle: number
  /** Requests in flight or arriving during the drain that finished. */
  completed: number
  /** Sockets destroyed at the deadline with a request still in flight. */
  forced: number
  /** Upgraded sockets (WebSocket, CONNECT) the application had not closed by the deadline, destroyed then; not a failure. */
  upgraded: number
  /** Seconds from the call until every connection was closed. */
  elapsed: number
}

/** Options of {@link KeepAliveController.shutdown}. */
export interface ShutdownOptions {
  /** Seconds before whatever is still open is destroyed. @default 10 */
  timeout?: number
  /** This drain's quiet period in seconds. @default the controller's `drainQuiet` (0.2) */
  drainQuiet?: number
  /**
   * Seconds over which to spread the close of every connection (Envoy's gradual drain): each one
   * is told `Connection: close`, and closed once idle and quiet, at its own random moment in the
   * window, so clients behind an L4 balancer do not all reconnect elsewhere at once. At most
   * `timeout`. @default 0 (all at once)
   */
  gradual?: number
}

/** What the `close` event carries. */
export interface CloseEvent {
  reason: CloseReason
  /** Requests the connection served. */
  requests: number
  /** Seconds the connection was open. */
  age: number
  remoteAddress: string | undefined
  /** The server port the connection came in on (`socket.localPort`). */
  localPort: number | undefined
  /** The connection spoke HTTP/2; `undefined` when it was refused before it was tracked (`perIp`). */
  http2: boolean | undefined
}

/** What the `upgraded` event carries. */
export interface UpgradedEvent {
  /** The socket Node handed to the 'upgrade' or 'connect' listener. */
  socket: Socket
}

/** What the `connection` event carries. */
export interface ConnectionEvent {
  remoteAddress: string | undefined
  /** Open connections, this one included. */
  open: number
}

/** Events a controller emits, with their arguments. */
export interface KeepAliveEvents {
  connection: [ConnectionEvent]
  close: [CloseEvent]
  draining: []
  /**
   * A {@link gracefulShutdown} began on a server of this controller (a signal, or its `shutdown()`):
   * readiness answers 503 from now on, while requests are still served as usual until the drain
   * starts (`draining`), after `readinessDelay`.
   */
  notReady: []
  shutdown: [ShutdownReport]
  /** The published load factor changed. */
  load: [number]
  /**
   * During a drain: an upgraded socket (WebSocket, CONNECT tunnel) is still open. It is not HTTP
   * any more, so the drain does not close it: close it (e.g. a WebSocket close frame), or it is
   * destroyed at the deadline and counted as `upgraded`.
   */
  upgraded: [UpgradedEvent]
  /** A user `adaptive.signal()` threw or returned a non-number; the sample counts it as 0. */
  error: [Error]
}

/** A server the controller can attach to: `http`, `https` or `http2`. */
export type AttachableServer = EventEmitter & {
  close(callback?: (err?: Error) => void): unknown
  listening: boolean
}

/** Request types {@link KeepAliveController.handle} accepts. */
export type AnyRequest = IncomingMessage | Http2ServerRequest
/** Response types {@link KeepAliveController.handle} accepts. */
export type AnyResponse = ServerResponse | Http2ServerResponse

/** The object {@link createKeepAlive} returns; adapters carry the same methods. */
export interface KeepAliveController {
  /** Start tracking a server and take over its socket idle timeouts. Idempotent per server. */
  attach(server: AttachableServer): void
  /** Apply this response's connection policy; attaches to `req.socket.server` on first use. */
  handle(req: AnyRequest, res: AnyResponse): void
  /** A JSON-serialisable snapshot of connections, requests, closes and the current policy. */
  stats(): KeepAliveStats
  /** Mark draining: every response from now on carries `Connection: close`; nothing is closed yet. */
  drain(): void
  /** Graceful drain with a deadline (responses close from the listeners' close on); a second call returns the same promise. */
  shutdown(options?: ShutdownOptions): Promise<ShutdownReport>
  /** Subscribe to an event. */
  on<E extends keyof KeepAliveEvents>(event: E, listener: (...args: KeepAliveEvents[E]) => void): KeepAliveController
  /** Subscribe to one occurrence of an event. */
  once<E extends keyof KeepAliveEvents>(event: E, listener: (...args: KeepAliveEvents[E]) => void): KeepAliveController
  /** Remove a listener. */
  off<E extends keyof KeepAliveEvents>(event: E, listener: (...args: KeepAliveEvents[E]) => void): KeepAliveController
}

/** Parameters of a `Keep-Alive` header. */
export interface KeepAliveParams {
  /** Idle timeout in whole seconds. */
  timeout?: number
  /** Requests the client may still send on this connection. */
  max?: number
}
