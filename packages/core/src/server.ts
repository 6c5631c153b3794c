// Attaching a controller to servers: their listeners, the request and finish hooks, Node's
// settings, the sweep and sampler that run while attached, and stopping a listener
// (docs/architecture.md §2).
import { EventEmitter } from 'node:events'
import { ServerResponse, type IncomingMessage } from 'node:http'
import type { ServerHttp2Stream } from 'node:http2'
import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import { now, type Connection, type TrackedSession, type TrackedSocket } from './connection.js'
import { createLoadMonitor, type LoadMonitor } from './load.js'
import { advertisedTimeoutMs, installResponseHooks, kConnection, removeResponseHooks } from './response.js'
import { Sweep } from './sweep.js'
import type { Tracker } from './tracker.js'
import type { AttachableServer } from './types.js'

/** Marks a server with the controller attached to it; shared by every copy of the package (ESM and CJS). */
export const kOwner = Symbol.for('keepalive.owner')

/** Marks a server with this copy's attachments: what a finishing response's socket leads back to. */
const kAttachments = Symbol('keepalive.attachments')

type Emit = (this: TunableServer, type: string | symbol, ...args: unknown[]) => boolean

/** Node's own `emit`, as this module found it. */
const nodeEmit = EventEmitter.prototype.emit as Emit

/** Set once node:domain is loaded, which wraps `emit` (lib/domain.js). */
const emitters = EventEmitter as typeof EventEmitter & { usingDomains?: boolean }

/**
 * The key of an emitter's own `captureRejections` flag (lib/events.js kCapture, own on every
 * emitter on Node 20 to 26), or a key no emitter has where a Node keeps it otherwise.
 */
function captureKey(server: object): symbol {
  return Object.getOwnPropertySymbols(server).find((s) => s.description === 'kCapture') ?? Symbol('keepalive.noCapture')
}

/** The fields of `http.Server` (and the HTTP/1 side of `http2` servers) attaching tunes. */
export interface TunableServer extends AttachableServer {
  [kOwner]?: object
  [kAttachments]?: Attachments
  emit: Emit
  keepAliveTimeout?: number
  maxRequestsPerSocket?: number | null
  headersTimeout?: number
  requestTimeout?: number
  updateSettings?: unknown
  closeIdleConnections?: () => void
}

interface Attachment {
  readonly connectionEvent: string
  readonly onConnection: (socket: TrackedSocket) => void
  readonly onClose: () => void
  readonly onSession: ((session: TrackedSession) => void) | null
  readonly onStream: ((stream: ServerHttp2Stream) => void) | null
  /** The server's `emit` with the request hook in front, and what it was before. */
  readonly emit: Emit
  readonly ownEmit: PropertyDescriptor | undefined
  /** False once detached: a hook someone wrapped since passes everything through. */
  live: boolean
}

/**
 * A finished response was detached from its socket (the finish hook in response.ts, one for every
 * controller of this copy): its connection's tracker takes it, or a socket never tracked is adopted.
 * `kAttachments` is on a server exactly while one of this copy's controllers is attached to it.
 */
function responseFinished(res: ServerResponse, socket: Socket): void {
  const conn = (socket as TrackedSocket)[kConnection]
  if (conn === undefined) {
    const server = (socket as Socket & { server?: TunableServer }).server
    server?.[kAttachments]?.adopt(socket, server, res)
  } else {
    // Only while its controller is attached to the connection's server.
    const attachments = (conn.server as TunableServer)[kAttachments]
    if (attachments !== undefined && attachments.tracker === conn.owner) attachments.tracker.responseEnded(conn, res)
  }
}

/** The controller attached to a server, if any (this package's or another copy's). */
export function ownerOf(server: unknown): object | undefined {
  return typeof server === 'object' && server !== null ? (server as TunableServer)[kOwner] : undefined
}

/** The servers one controller is attached to, and what runs while it is. */
export class Attachments {
  readonly servers = new Map<TunableServer, Attachment>()
  readonly sweep: Sweep
  private monitor: LoadMonitor | null = null
  private hooked = false

  constructor(
    readonly tracker: Tracker,
    /** The public controller: what `kOwner` marks a server with. */
    private readonly owner: object,
  ) {
    this.sweep = new Sweep(tracker, (conn) => {
      const draining = tracker.policy.draining
      if (draining && conn.waiting) tracker.drainHooks.closedIdle()
      conn.close(draining ? 'drain' : 'idleTimeout')
    })
  }

  owns(server: unknown): server is TunableServer {
    return ownerOf(server) === this.owner
  }

  attach(server: TunableServer): void {
    if (server[kOwner] === this.owner) return
    if (server[kOwner] !== undefined) {
      throw new Error(
        'keepalive: this server is already attached to another keepalive controller; ' +
          'use that one (for gracefulShutdown: pass it as `keepAlive`), or create only one per server',
      )
    }
    const tracker = this.tracker
    const http2 = typeof server.updateSettings === 'function'
    const ownEmit = Object.getOwnPropertyDescriptor(server, 'emit')
    // An `emit` of the server's own is the next in the chain; otherwise the class's, looked up on
    // each call, so that instrumentation patching the prototype later still sees every event.
    const fixedNext = ownEmit === undefined ? null : server.emit
    const prototype = Object.getPrototypeOf(server) as TunableServer
    const onRequest = this.onRequest
    const capture = captureKey(server)
    // The request hook: in front of every listener, of a request Node hands the application
    // (`request`, or `checkContinue` / `checkExpectation` for an Expect header). Then the request
    // goes on as Node's `emit` would send it (docs/architecture.md §2).
    const emit: Emit = function (this: TunableServer, type: string | symbol, req?: unknown, res?: unknown): boolean {
      if ((type === 'request' || type === 'checkContinue' || type === 'checkExpectation') && attachment.live && (!http2 || res instanceof ServerResponse)) {
        onRequest(server, req, res)
        // What Node's own emit does with one listener function and rejections not captured, without
        // the argument arrays of a call through it.
        if (arguments.length === 3 && fixedNext === null && prototype.emit === nodeEmit && emitters.usingDomains !== true) {
          const handler = (this as { _events?: Record<string | symbol, unknown> })._events?.[type]
          if (typeof handler === 'function' && (this as unknown as Record<symbol, unknown>)[capture] === false) {
            ;(handler as (this: unknown, req: unknown, res: unknown) => unknown).call(this, req, res)
            return true
          }
        }
      }
      // eslint-disable-next-line prefer-rest-params
      return Reflect.apply(fixedNext ?? prototype.emit, this, arguments)
    }
    const attachment: Attachment = {
      connectionEvent: server instanceof TlsServer ? 'secureConnection' : 'connection',
      onConnection: (socket) => {
        tracker.track(socket, server)
      },
      onClose: () => {
        this.detach(server)
      },
      onSession: http2 ? (session) => this.trackSession(session) : null,
      onStream: http2 ? (stream) => this.streamStarted(stream) : null,
      emit,
      ownEmit,
      live: true,
    }
    // First, so that a server whose emit cannot be replaced is left as it was.
    let refused: unknown = null
    try {
      server.emit = emit
    } catch (error) {
      refused = error
    }
    if (refused !== null || server.emit !== emit) {
      throw new TypeError(`keepalive: cannot attach to this server: its emit() cannot be replaced${refused instanceof Error ? ` (${refused.message})` : ''}`, {
        cause: refused ?? undefined,
      })
    }
    server[kOwner] = this.owner
    server[kAttachments] = this
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

    if (!this.hooked) {
      installResponseHooks(responseFinished)
      this.hooked = true
    }
    this.sweep.start()
    const options = tracker.options
    if (options.adaptive !== null && this.monitor === null) {
      this.monitor = createLoadMonitor(
        options.adaptive.intervalMs,
        {
          open: () => tracker.conns.size,
          maxConnections: options.maxConnections,
          user: options.adaptive.signal,
          onSignalError: (error) => tracker.emit('error', error),
        },
        (load) => tracker.setLoad(load),
      )
      this.monitor.start()
    }
  }

  /**
   * Node's request guards count from a request's first byte (lib/_http_server.js checkConnections),
   * not from idle time, but a headersTimeout below our idle time would contradict what we advertise
   * to proxies that reuse connections slowly; keep headersTimeout above it and requestTimeout >=
   * headersTimeout, as Node requires. Guards are only ever raised, never lowered or turned off.
   */
  private alignSlowlorisGuards(server: TunableServer): void {
    const idleMs = this.tracker.options.timeoutMs + this.tracker.options.graceMs
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
    attachment.live = false
    if (server.emit === attachment.emit) {
      if (attachment.ownEmit === undefined) delete (server as Partial<TunableServer>).emit
      else Object.defineProperty(server, 'emit', attachment.ownEmit)
    }
    delete server[kOwner]
    delete server[kAttachments]
    if (this.servers.size === 0) this.stop()
  }

  /** Stops the sweep, the sampler and the response hooks: nothing of this controller keeps running. */
  stop(): void {
    if (this.hooked) {
      removeResponseHooks()
      this.hooked = false
    }
    this.monitor?.stop()
    this.monitor = null
    this.sweep.stop()
    this.tracker.forgetHooked()
  }

  // An arrow function: one per controller, no closure per request.
  private readonly onRequest = (server: TunableServer, req: unknown, res: unknown): void => {
    const socket = (req as IncomingMessage).socket as TrackedSocket | null
    const conn = socket?.[kConnection]
    if (conn !== undefined) {
      // Once per request: a `checkContinue` listener may hand the request on with emit('request').
      if (conn.owner === this.tracker && !conn.http2 && !conn.answers(res as object)) this.tracker.requestStarted(conn, res as ServerResponse)
      return
    }
    // A socket accepted before attach(), or an `emit('request')` of someone's own: only the
    // server's own sockets are tracked.
    if (socket == null || !(res instanceof ServerResponse) || (socket as Socket & { server?: unknown }).server !== server) return
    const tracked = this.tracker.track(socket, server)
    if (tracked !== null && !tracked.http2) this.tracker.requestStarted(tracked, res)
  }

  /**
   * A response ended on a socket never seen before: its request was in flight when `attach()` ran.
   * Node has switched its own idle timer off since, so the socket is tracked from here, with the
   * longer of what Node advertised on it and what we advertise.
   */
  adopt(socket: Socket, server: AttachableServer, res: ServerResponse): void {
    if (socket.destroyed) return
    const conn = this.tracker.track(socket, server)
    if (conn === null) return
    const time = now()
    conn.requestStarted(time)
    conn.responseStarted(res, false)
    conn.keepFor(Math.max(advertisedTimeoutMs(res), this.tracker.policy.timeoutMs) + this.tracker.options.graceMs)
    conn.responseEnded(res, time)
  }

  private trackSession(session: TrackedSession): void {
    let conn: Connection | undefined
    try {
      conn = (session.socket as TrackedSocket)[kConnection]
    } catch {
      return // the session lost its socket before we saw it: nothing to track
    }
    if (conn === undefined || conn.owner !== this.tracker) return
    conn.session = session
    session[kConnection] = conn
    // A handshake that completed after the drain began: GOAWAY at once, its streams still finish.
    if (this.tracker.policy.draining) {
      conn.predictClose('drain')
      session.close()
    }
  }

  private streamStarted(stream: ServerHttp2Stream): void {
    const conn = (stream.session as TrackedSession | undefined)?.[kConnection]
    if (conn === undefined || conn.owner !== this.tracker) return
    conn.requestStarted(now())
    // A stream reset or destroyed before its response ended (at the deadline, say) served no request.
    stream.once('close', () => conn.streamEnded(stream.writableFinished, now()))
  }
}

const noop = (): void => {}

interface ClosableServer extends AttachableServer {
  closeIdleConnections?: () => void
}

/**
 * Stops accepting connections without touching open ones. Node 19+ `http.Server#close()` also
 * destroys every idle socket at once (httpServerPreClose in lib/_http_server.js), including sockets
 * whose next request is already on the wire: that is the request loss we exist to prevent, so the
 * drain closes idle sockets itself, once they have been quiet.
 */
export function stopAccepting(server: ClosableServer): void {
  // listen() may still be resolving its host: stop as soon as it listens. (Never having listened,
  // it has nothing to stop.)
  if (!server.listening) {
    server.once('listening', () => stopAccepting(server))
    return
  }
  if (typeof server.closeIdleConnections !== 'function') {
    server.close()
    return
  }
  const own = Object.getOwnPropertyDescriptor(server, 'closeIdleConnections')
  server.closeIdleConnections = noop
  try {
    server.close()
  } finally {
    if (own === undefined) delete server.closeIdleConnections
    else Object.defineProperty(server, 'closeIdleConnections', own)
  }
}
