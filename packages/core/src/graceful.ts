// gracefulShutdown(): signals, the readiness delay, the user's hooks, the drain and the exit
// (docs/architecture.md §7).
import { constants } from 'node:os'
import { checkKeys, describe, fail, isPlainObject, seconds } from './check.js'
import { createKeepAlive } from './controller.js'
import { ownerOf } from './server.js'
import { kForce, kNotReady, type Forceable } from './shutdown.js'
import type { AttachableServer, KeepAliveController, ShutdownOptions, ShutdownReport } from './types.js'

/** The parts of a controller gracefulShutdown uses. */
type Drainable = Pick<KeepAliveController, 'attach' | 'drain' | 'shutdown'>

/** Options of {@link gracefulShutdown}; durations in seconds. */
export interface GracefulShutdownOptions {
  /**
   * The controller to drain (an adapter's middleware or `fastify.keepAlive` works too). If omitted,
   * the controller already attached to the server is used, else a new one with default options.
   */
  keepAlive?: Drainable
  /** Signals that start the shutdown; names from `os.constants.signals`, not SIGKILL or SIGSTOP. @default ['SIGTERM', 'SIGINT'] */
  signals?: readonly NodeJS.Signals[]
  /** Seconds to keep serving as usual, reporting not-ready, before the drain starts (lets a load balancer stop routing here). @default 0 */
  readinessDelay?: number
  /** Seconds the drain may take before what is left is destroyed. @default 10 */
  timeout?: number
  /** The drain's quiet period in seconds (see `drainQuiet` of createKeepAlive). @default the controller's (0.2) */
  drainQuiet?: number
  /** Seconds over which to spread the connections' closes (a gradual drain; see `shutdown()`). @default 0 */
  gradual?: number
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
  /** Removes the signal handlers (done by itself once a shutdown has completed). */
  dispose(): void
}

const GRACEFUL_KEYS = ['keepAlive', 'signals', 'readinessDelay', 'timeout', 'drainQuiet', 'gradual', 'beforeShutdown', 'onShutdown', 'exit', 'logger'] as const
/** Signals a process cannot catch: a handler for them throws EINVAL. */
const UNCATCHABLE = new Set(['SIGKILL', 'SIGSTOP'])

/** Formats the one-line shutdown report. */
export function formatReport(report: Readonly<ShutdownReport>): string {
  const upgraded = report.upgraded > 0 ? `, ${report.upgraded} upgraded sockets left to the deadline` : ''
  const counts = `${report.closedIdle} idle closed, ${report.completed} requests completed, ${report.forced} forced${upgraded}`
  return `keepalive: drained in ${report.elapsed.toFixed(2)}s: ${counts}`
}

function checkSignals(value: unknown): NodeJS.Signals[] {
  if (!Array.isArray(value)) fail(TypeError, 'signals', `"signals" must be an array of signal names such as "SIGTERM", got ${describe(value)}`)
  for (const name of value as unknown[]) {
    if (typeof name !== 'string') fail(TypeError, 'signals', `"signals" must hold signal names such as "SIGTERM", got ${describe(name)}`)
    if (UNCATCHABLE.has(name)) fail(RangeError, 'signals', `"signals" cannot include ${name}: a process cannot catch it`)
    if (!Object.hasOwn(constants.signals, name)) {
      const known = Object.keys(constants.signals).find((s) => s.toUpperCase() === name.toUpperCase() || s === `SIG${name.toUpperCase()}`)
      fail(RangeError, 'signals', `"signals" has an unknown signal ${describe(name)}${known !== undefined ? `; did you mean "${known}"?` : ''}`)
    }
  }
  return value as NodeJS.Signals[]
}

/** Validates gracefulShutdown's options once, at the call. */
export function resolveGracefulOptions(
  input: unknown,
): Required<Omit<GracefulShutdownOptions, 'keepAlive' | 'beforeShutdown' | 'onShutdown' | 'drainQuiet' | 'gradual'>> &
  Pick<GracefulShutdownOptions, 'keepAlive' | 'beforeShutdown' | 'onShutdown'> & { drain: ShutdownOptions } {
  if (input === undefined) input = {}
  if (!isPlainObject(input)) fail(TypeError, 'options', `gracefulShutdown options must be an object, got ${describe(input)}`)
  checkKeys(input, GRACEFUL_KEYS, '')
  const o = input
  const signals = checkSignals(o.signals ?? ['SIGTERM', 'SIGINT'])
  for (const name of ['beforeShutdown', 'onShutdown', 'logger'] as const) {
    if (o[name] !== undefined && typeof o[name] !== 'function') fail(TypeError, name, `"${name}" must be a function, got ${describe(o[name])}`)
  }
  if (o.exit !== undefined && typeof o.exit !== 'boolean') fail(TypeError, 'exit', `"exit" must be a boolean, got ${describe(o.exit)}`)
  const keepAlive = o.keepAlive as GracefulShutdownOptions['keepAlive']
  if (keepAlive !== undefined && (keepAlive === null || typeof (keepAlive as { shutdown?: unknown }).shutdown !== 'function')) {
    fail(
      TypeError,
      'keepAlive',
      `"keepAlive" must be a keepalive controller (createKeepAlive(), an adapter's middleware or fastify.keepAlive), got ${describe(keepAlive)}`,
    )
  }
  const timeout = o.timeout === undefined ? 10 : seconds('timeout', o.timeout, { min: 0 })
  // The drain's own options, checked as shutdown() checks them (and named as given here).
  const drain: ShutdownOptions = { timeout }
  if (o.drainQuiet !== undefined) drain.drainQuiet = seconds('drainQuiet', o.drainQuiet, { min: 0, max: 60 })
  if (o.gradual !== undefined) {
    drain.gradual = seconds('gradual', o.gradual, { min: 0 })
    if (drain.gradual > timeout)
      fail(
        RangeError,
        'gradual',
        `"gradual" must be at most timeout (${timeout}) so every connection is told to close before the deadline, got ${drain.gradual}`,
      )
  }
  return {
    keepAlive,
    signals,
    drain,
    readinessDelay: o.readinessDelay === undefined ? 0 : seconds('readinessDelay', o.readinessDelay, { min: 0 }),
    timeout,
    beforeShutdown: o.beforeShutdown as GracefulShutdownOptions['beforeShutdown'],
    onShutdown: o.onShutdown as GracefulShutdownOptions['onShutdown'],
    exit: (o.exit as boolean | undefined) ?? true,
    logger: (o.logger as ((line: string) => void) | undefined) ?? ((line: string) => console.log(line)),
  }
}

/**
 * On SIGTERM/SIGINT: report not-ready (keep serving as usual) for `readinessDelay` seconds, run
 * `beforeShutdown`, drain with the deadline (every response `Connection: close`, idle sockets closed
 * once quiet), run `onShutdown`, log the report and exit (0 after a clean drain, 1 if anything was
 * forced). A second signal closes everything at once. Without `keepAlive`, the controller already
 * attached to the server is drained (else a new one with default options is attached).
 * @example
 * const server = app.listen(3000)
 * gracefulShutdown(server, { keepAlive: ka, readinessDelay: 5 })
 */
export function gracefulShutdown(server: AttachableServer, input?: GracefulShutdownOptions): GracefulShutdown {
  const options = resolveGracefulOptions(input)
  const attached = ownerOf(server) as Drainable | undefined
  const controller = options.keepAlive ?? attached ?? createKeepAlive()
  controller.attach(server) // throws if another controller already governs this server
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
    // Readiness routes of the adapters (Fastify's `readiness`) answer 503 from here, not from the drain.
    ;(controller as Forceable)[kNotReady]?.()
    // Connections stay keep-alive during the delay: a proxy that still routes here keeps reusing its
    // pooled connections instead of opening new ones, which the listener's close would reset in the
    // kernel's accept queue (measured behind nginx: POSTs answered 502). The drain starts after it.
    const wait = options.readinessDelay > 0 ? `; draining in ${options.readinessDelay}s` : '; draining now'
    options.logger(`keepalive: ${cause}: reporting not ready${wait}`)
    try {
      await delay(options.readinessDelay)
      await options.beforeShutdown?.()
      const report = await controller.shutdown(options.drain)
      await options.onShutdown?.(report)
      options.logger(formatReport(report))
      if (options.exit) process.exit(report.forced > 0 ? 1 : 0)
      return report
    } finally {
      // Done (or failed): later signals are the process's own again.
      dispose()
    }
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

  function dispose(): void {
    for (const signal of options.signals) process.off(signal, onSignal)
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
    dispose,
  }
}
