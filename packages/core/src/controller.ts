// createKeepAlive(): the controller, a plain object of closures over the tracker, the attachments
// and the drain (docs/architecture.md §1).
import type { ServerResponse } from 'node:http'
import { resolveOptions, resolveShutdownOptions } from './options.js'
import { hookedListenerOf, kConnection } from './response.js'
import { Attachments, ownerOf, type TunableServer } from './server.js'
import { drain, kForce, kNotReady, type Drain } from './shutdown.js'
import type { Connection } from './connection.js'
import { Tracker } from './tracker.js'
import type {
  AnyRequest,
  AnyResponse,
  AttachableServer,
  KeepAliveController,
  KeepAliveOptions,
  KeepAliveStats,
  ShutdownOptions,
  ShutdownReport,
} from './types.js'

interface SocketWithServer {
  server?: unknown
  [kConnection]?: { owner?: unknown }
}

/**
 * Creates a keep-alive controller: the policy, the connection tracker and graceful shutdown for
 * one or more servers. Options are checked here, once; bad ones throw naming the option.
 * @example
 * const ka = createKeepAlive({ timeout: 65 })
 * const server = http.createServer((req, res) => { ka.handle(req, res); res.end('ok') })
 * ka.attach(server)
 */
export function createKeepAlive(options?: KeepAliveOptions): KeepAliveController {
  const tracker = new Tracker(resolveOptions(options))
  let running: Drain | null = null
  let report: Promise<ShutdownReport> | null = null
  /** Servers found taken by another controller on a lazy attach: warned about once each. */
  const warned = new WeakSet<object>()

  function attach(server: AttachableServer): void {
    if (!isServer(server)) throw new TypeError('keepalive: attach() needs an http, https or http2 server')
    attachments.attach(server as TunableServer)
  }

  function handle(req: AnyRequest, res: AnyResponse): void {
    // Handled by the request hook a moment ago (the usual case: the middleware runs first).
    if ((hookedListenerOf(res) as Connection | null)?.owner === tracker) return
    const socket = req.socket as SocketWithServer | null
    if (socket === null || socket === undefined) return
    // Once attached, the request hook has already handled this request.
    const known = socket[kConnection]
    if (known !== undefined) {
      if (known.owner !== tracker) lazyAttach(socket.server)
      return
    }
    // HTTP/2: connection headers are forbidden; only make sure the server is tracked.
    const server =
      req.httpVersionMajor >= 2 ? ((req as { stream?: { session?: { server?: unknown } } }).stream?.session?.server ?? socket.server) : socket.server
    if (!isServer(server)) return
    if (!attachments.owns(server) && !lazyAttach(server)) return
    if (req.httpVersionMajor >= 2) return
    const conn = tracker.track(req.socket as never, server)
    if (conn !== null) tracker.requestStarted(conn, res as ServerResponse)
  }

  /** The first request attaches the server, unless it is shut down or governed by another controller. */
  function lazyAttach(server: unknown): boolean {
    if (report !== null || !isServer(server)) return false
    if (ownerOf(server) !== undefined) {
      // Two controllers on one server: this one's options would silently do nothing. Say so, once.
      if (!warned.has(server)) {
        warned.add(server)
        const error = new Error(
          "keepalive: this server is already governed by another keepalive controller, so this middleware's options do nothing; " +
            'attach one controller per server (for gracefulShutdown: pass it as `keepAlive`)',
        )
        ;(error as Error & { code: string }).code = 'ERR_KEEPALIVE_ALREADY_ATTACHED'
        tracker.reportError(error)
      }
      return false
    }
    attachments.attach(server as TunableServer)
    return true
  }

  function stats(): KeepAliveStats {
    tracker.purge()
    const open = tracker.conns.size
    return {
      connections: { open, active: tracker.active, idle: open - tracker.active },
      requests: tracker.requests,
      reuseRatio: tracker.requests === 0 ? 0 : tracker.reused / tracker.requests,
      closes: { ...tracker.closes },
      load: tracker.load,
      timeout: tracker.policy.timeoutMs / 1000,
      max: tracker.policy.max === Infinity ? null : tracker.policy.max,
      draining: tracker.policy.draining,
    }
  }

  function shutdown(input?: ShutdownOptions): Promise<ShutdownReport> {
    if (report !== null) return report
    const settings = resolveShutdownOptions(input, tracker.options)
    running = drain(tracker, [...attachments.servers.keys()], settings)
    report = running.promise.then((result) => {
      // A server whose listen() was still pending keeps our sweep until it closes (detach stops it).
      if (![...attachments.servers.keys()].some((server) => !server.listening && server.listenerCount('listening') > 0)) attachments.stop()
      return result
    })
    return report
  }

  const controller: KeepAliveController & { [kForce]: () => void; [kNotReady]: () => void } = {
    attach,
    handle,
    stats,
    drain: () => tracker.startDraining(),
    shutdown,
    on(event, listener) {
      tracker.events.on(event, listener as (...args: unknown[]) => void)
      return controller
    },
    once(event, listener) {
      tracker.events.once(event, listener as (...args: unknown[]) => void)
      return controller
    },
    off(event, listener) {
      tracker.events.off(event, listener as (...args: unknown[]) => void)
      return controller
    },
    [kForce]() {
      if (running === null) void shutdown({ timeout: 0 })
      running?.force()
    },
    [kNotReady]() {
      tracker.emit('notReady')
    },
  }
  const attachments = new Attachments(tracker, controller)
  return controller
}

function isServer(value: unknown): value is AttachableServer {
  return typeof value === 'object' && value !== null && typeof (value as { on?: unknown }).on === 'function'
}
