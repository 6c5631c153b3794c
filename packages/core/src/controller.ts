import type { ServerResponse } from 'node:http'
import { resolveOptions, resolveShutdownTimeout } from './options.js'
import { drain, kForce, type Drain } from './shutdown.js'
import { Tracker } from './tracker.js'
import { kConnection } from './response.js'
import type { AnyRequest, AnyResponse, AttachableServer, KeepAliveController, KeepAliveOptions, KeepAliveStats, ShutdownReport } from './types.js'

interface SocketWithServer {
  server?: unknown
  [kConnection]?: unknown
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

  function attach(server: AttachableServer): void {
    if (typeof server !== 'object' || server === null || typeof (server as { on?: unknown }).on !== 'function') {
      throw new TypeError('keepalive: attach() needs an http, https or http2 server')
    }
    tracker.attach(server)
  }

  function handle(req: AnyRequest, res: AnyResponse): void {
    const socket = req.socket as SocketWithServer | null
    if (socket === null || socket === undefined) return
    // Once attached, Node's request channel has already handled this request.
    if (socket[kConnection] !== undefined) return
    // HTTP/2: connection headers are forbidden; only make sure the server is tracked.
    if (req.httpVersionMajor >= 2) {
      const server = (req as { stream?: { session?: { server?: unknown } } }).stream?.session?.server ?? socket.server
      if (isServer(server) && !tracker.owns(server) && !report) tryAttach(server)
      return
    }
    const server = socket.server
    if (!isServer(server)) return
    if (!tracker.owns(server)) {
      if (report !== null || !tryAttach(server)) return
    }
    const conn = tracker.track(req.socket as never, server)
    if (conn !== null) tracker.requestStarted(conn, res as ServerResponse)
  }

  function tryAttach(server: AttachableServer): boolean {
    try {
      tracker.attach(server)
      return true
    } catch {
      return false // attached to another controller: that one governs
    }
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

  function shutdown(input?: { timeout?: number }): Promise<ShutdownReport> {
    if (report !== null) return report
    const timeoutMs = resolveShutdownTimeout(input)
    running = drain(tracker, timeoutMs)
    report = running.promise.then((result) => {
      tracker.releaseAll()
      return result
    })
    return report
  }

  const controller: KeepAliveController & { [kForce]: () => void } = {
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
  }
  return controller
}

function isServer(value: unknown): value is AttachableServer {
  return typeof value === 'object' && value !== null && typeof (value as { on?: unknown }).on === 'function'
}
