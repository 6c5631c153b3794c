import { performance } from 'node:perf_hooks'
import { checkKeys, describe, fail, isPlainObject, seconds } from './check.js'
import { now, type Connection, type Tracker } from './tracker.js'
import type { AttachableServer, KeepAliveController, ShutdownReport } from './types.js'

const noop = (): void => {}

/** How often the drain looks again at a quiet socket on which a request has begun to arrive. */
const ARRIVING_RECHECK_MS = 100

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
  if (!server.listening) return
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

/** A running drain: its promise, and the way to end it early. */
export interface Drain {
  readonly promise: Promise<ShutdownReport>
  /** Destroys whatever is left now, as the deadline would. */
  force(): void
}

/**
 * Drains every connection of a tracker: stop accepting; every response from now on carries
 * `Connection: close`; idle sockets close once they have been quiet for `grace` seconds (a request
 * already sent reaches us first and is answered); HTTP/2 sessions get GOAWAY; at the deadline
 * whatever is left is destroyed.
 */
export function drain(tracker: Tracker, timeoutMs: number): Drain {
  const started = performance.now()
  const report: ShutdownReport = { closedIdle: 0, completed: 0, forced: 0, elapsed: 0 }
  const quietMs = tracker.options.graceMs
  /** Idle connections waiting to have been quiet for `quietMs`. */
  const waiting = new Set<Connection>()
  let sweepTimer: NodeJS.Timeout | null = null
  let sweepQueued: NodeJS.Immediate | null = null
  let deadline: NodeJS.Timeout | null = null
  let resolve!: (report: ShutdownReport) => void
  const promise = new Promise<ShutdownReport>((r) => (resolve = r))
  let done = false

  function finish(): void {
    if (done) return
    done = true
    if (deadline !== null) clearTimeout(deadline)
    if (sweepTimer !== null) clearTimeout(sweepTimer)
    if (sweepQueued !== null) clearImmediate(sweepQueued)
    waiting.clear()
    tracker.drainHooks = null
    report.elapsed = (performance.now() - started) / 1000
    tracker.emit('shutdown', { ...report })
    resolve(report)
  }

  // Closing runs from setImmediate, after the poll phase: a request that reached the socket while
  // the timer was due (or while the event loop was stalled) is read first, and answered.
  function queueSweep(): void {
    if (sweepQueued !== null || done) return
    sweepQueued = setImmediate(sweep)
  }

  function sweep(): void {
    sweepQueued = null
    if (sweepTimer !== null) clearTimeout(sweepTimer)
    sweepTimer = null
    const time = now()
    let next = Infinity
    for (const conn of waiting) {
      if (conn.active || conn.closing || conn.detached || !tracker.conns.has(conn)) {
        waiting.delete(conn)
        continue
      }
      const quietFor = time - conn.idleSince
      if (quietFor >= quietMs && conn.requestArriving()) {
        // A request's first bytes are in: it is answered (with Connection: close) once it is whole.
        next = Math.min(next, ARRIVING_RECHECK_MS)
      } else if (quietFor >= quietMs) {
        waiting.delete(conn)
        tracker.closeIdle(conn, 'drain')
      } else {
        next = Math.min(next, quietMs - quietFor)
      }
    }
    if (next !== Infinity && !done) {
      // One timer for the whole drain, set for the connection that turns quiet first.
      sweepTimer = setTimeout(queueSweep, Math.ceil(next))
      sweepTimer.unref()
    }
  }

  function closeWhenQuiet(conn: Connection): void {
    if (conn.active || conn.closing || conn.detached) return
    conn.markRead()
    waiting.add(conn)
    queueSweep()
  }

  function force(): void {
    if (done) return
    for (const conn of [...tracker.conns]) {
      if (conn.active || conn.detached) {
        conn.reason = 'forced'
        report.forced++
      } else if (!conn.closing) {
        conn.reason = 'drain'
        report.closedIdle++
      }
      conn.session?.destroy()
      conn.socket.destroy()
    }
    if (tracker.conns.size === 0) finish()
  }

  tracker.startDraining()
  tracker.drainHooks = {
    idle: closeWhenQuiet,
    released: () => {
      if (tracker.conns.size === 0) finish()
    },
    finished: () => {
      report.completed++
    },
    closedIdle: () => {
      report.closedIdle++
    },
  }
  tracker.watchCloses()
  for (const server of tracker.servers.keys()) stopAccepting(server)
  for (const conn of [...tracker.conns]) {
    if (conn.session !== null) {
      if (!conn.active) {
        tracker.closeIdle(conn, 'drain')
        continue
      }
      conn.reason = 'drain'
      conn.closing = true
      conn.session.close() // GOAWAY: open streams finish, no new ones start
    } else {
      closeWhenQuiet(conn)
    }
  }
  if (tracker.conns.size === 0) {
    finish()
  } else {
    deadline = setTimeout(force, timeoutMs)
    deadline.unref()
  }
  return { promise, force }
}

/** Options of {@link gracefulShutdown}; durations in seconds. */
export interface GracefulShutdownOptions {
  /** The controller to drain (an adapter's middleware or `fastify.keepAlive` works too); created if omitted. */
  keepAlive?: Pick<KeepAliveController, 'attach' | 'drain' | 'shutdown'>
  /** Signals that start the shutdown. @default ['SIGTERM', 'SIGINT'] */
  signals?: readonly NodeJS.Signals[]
  /** Seconds to keep serving as usual, reporting not-ready, before the drain starts (lets a load balancer stop routing here). @default 0 */
  readinessDelay?: number
  /** Seconds the drain may take before what is left is destroyed. @default 10 */
  timeout?: number
  /** Runs after the readiness delay, before the drain. */
  beforeShutdown?: () => unknown
  /** Runs with the report once the drain is over, before the process exits. */
  onShutdown?: (report: ShutdownReport) => unknown
  /** Exit the process when done: 0 after a clean drain, 1 if anything was forced. @default true */
  exit?: boolean
  /** Where the one-line report goes. @default console.log */
  logger?: (line: string) => void
}

/** What {@link gracefulShutdown} returns. */
export interface GracefulShutdown {
  /** False from the first signal on: answer your readiness probe with 503. */
  readonly ready: boolean
  /** A ready-made readiness handler: 200 `ok` while ready, 503 `shutting down` after. */
  readiness(req: unknown, res: { statusCode: number; setHeader(name: string, value: string): unknown; end(body?: string): unknown }): void
  /** Starts the shutdown as a signal would; resolves with the report. */
  shutdown(): Promise<ShutdownReport>
  /** Removes the signal handlers. */
  dispose(): void
}

const GRACEFUL_KEYS = ['keepAlive', 'signals', 'readinessDelay', 'timeout', 'beforeShutdown', 'onShutdown', 'exit', 'logger'] as const

/** Formats the one-line shutdown report. */
export function formatReport(report: Readonly<ShutdownReport>): string {
  return `keepalive: drained in ${report.elapsed.toFixed(2)}s: ${report.closedIdle} idle closed, ${report.completed} requests completed, ${report.forced} forced`
}

export const kForce = Symbol.for('keepalive.force')

/** A controller, as passed to gracefulShutdown, may carry the way to end its drain at once. */
interface Forceable {
  [kForce]?: () => void
}

export function resolveGracefulOptions(input: unknown): Required<Omit<GracefulShutdownOptions, 'keepAlive' | 'beforeShutdown' | 'onShutdown'>> &
  Pick<GracefulShutdownOptions, 'keepAlive' | 'beforeShutdown' | 'onShutdown'> {
  if (input === undefined) input = {}
  if (!isPlainObject(input)) fail(TypeError, 'options', `gracefulShutdown options must be an object, got ${describe(input)}`)
  checkKeys(input, GRACEFUL_KEYS, '')
  const o = input
  const signals = o.signals ?? ['SIGTERM', 'SIGINT']
  if (!Array.isArray(signals) || !signals.every((s) => typeof s === 'string' && s.startsWith('SIG'))) {
    fail(TypeError, 'signals', `"signals" must be an array of signal names such as "SIGTERM", got ${describe(signals)}`)
  }
  for (const name of ['beforeShutdown', 'onShutdown', 'logger'] as const) {
    if (o[name] !== undefined && typeof o[name] !== 'function') fail(TypeError, name, `"${name}" must be a function, got ${describe(o[name])}`)
  }
  if (o.exit !== undefined && typeof o.exit !== 'boolean') fail(TypeError, 'exit', `"exit" must be a boolean, got ${describe(o.exit)}`)
  const keepAlive = o.keepAlive as GracefulShutdownOptions['keepAlive']
  if (keepAlive !== undefined && (keepAlive === null || typeof (keepAlive as { shutdown?: unknown }).shutdown !== 'function')) {
    fail(TypeError, 'keepAlive', `"keepAlive" must be a keepalive controller (createKeepAlive(), an adapter's middleware or fastify.keepAlive), got ${describe(keepAlive)}`)
  }
  return {
    keepAlive,
    signals: signals as NodeJS.Signals[],
    readinessDelay: o.readinessDelay === undefined ? 0 : seconds('readinessDelay', o.readinessDelay, { min: 0 }),
    timeout: o.timeout === undefined ? 10 : seconds('timeout', o.timeout, { min: 0 }),
    beforeShutdown: o.beforeShutdown as GracefulShutdownOptions['beforeShutdown'],
    onShutdown: o.onShutdown as GracefulShutdownOptions['onShutdown'],
    exit: (o.exit as boolean | undefined) ?? true,
    logger: (o.logger as ((line: string) => void) | undefined) ?? ((line: string) => console.log(line)),
  }
}

/** Builds gracefulShutdown once the controller factory is known (avoids a module cycle). */
export function createGracefulShutdown(
  server: AttachableServer,
  input: unknown,
  create: () => Pick<KeepAliveController, 'attach' | 'drain' | 'shutdown'>,
): GracefulShutdown {
  const options = resolveGracefulOptions(input)
  const controller = options.keepAlive ?? create()
  controller.attach(server)
  let ready = true
  let running: Promise<ShutdownReport> | null = null

  let endDelay: (() => void) | null = null
  const delay = (seconds: number): Promise<void> =>
    new Promise((resolve) => {
      if (seconds <= 0) return resolve()
      const timer = setTimeout(resolve, seconds * 1000)
      endDelay = () => {
        clearTimeout(timer)
        resolve()
      }
    })

  async function run(cause: string): Promise<ShutdownReport> {
    ready = false
    // Connections stay keep-alive during the delay: a proxy that still routes here keeps reusing its
    // pooled connections instead of opening new ones, which the listener's close would reset in the
    // kernel's accept queue (measured behind nginx: POSTs answered 502). The drain starts after it.
    const wait = options.readinessDelay > 0 ? `; draining in ${options.readinessDelay}s` : '; draining now'
    options.logger(`keepalive: ${cause}: reporting not ready${wait}`)
    await delay(options.readinessDelay)
    await options.beforeShutdown?.()
    const report = await controller.shutdown({ timeout: options.timeout })
    await options.onShutdown?.(report)
    options.logger(formatReport(report))
    if (options.exit) process.exit(report.forced > 0 ? 1 : 0)
    return report
  }

  function shutdown(cause = 'shutdown requested'): Promise<ShutdownReport> {
    running ??= run(cause)
    return running
  }

  function onSignal(signal: NodeJS.Signals): void {
    if (running === null) {
      shutdown(`${signal} received`).catch((error: unknown) => {
        options.logger(`keepalive: shutdown failed: ${error instanceof Error ? error.message : String(error)}`)
        if (options.exit) process.exit(1)
      })
      return
    }
    // A second signal: stop waiting.
    options.logger('keepalive: second signal, closing every connection now')
    endDelay?.() // a readiness delay still running ends now
    ;(controller as Forceable)[kForce]?.()
    if (options.exit) process.exit(1)
  }

  for (const signal of options.signals) process.on(signal, onSignal)

  return {
    get ready() {
      return ready
    },
    readiness(_req, res) {
      res.statusCode = ready ? 200 : 503
      res.setHeader('Content-Type', 'text/plain; charset=utf-8')
      res.end(ready ? 'ok' : 'shutting down')
    },
    shutdown,
    dispose() {
      for (const signal of options.signals) process.off(signal, onSignal)
    },
  }
}
