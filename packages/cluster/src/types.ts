// The public option, handle, stats and report types of the cluster package.
import type { KeepAliveController, KeepAliveStats, ShutdownReport } from '@keepalive/core'

/** Options of {@link startCluster}; every duration is in seconds (fractions allowed). */
export interface ClusterOptions {
  /** Workers to keep running. @default os.availableParallelism() */
  workers?: number
  /** The worker script. @default the current script (node:cluster's own default, `process.argv[1]`) */
  exec?: string
  /** Arguments passed to the worker script. @default process.argv.slice(2) */
  args?: readonly string[]
  /** Extra environment variables of every worker, on top of the primary's own. @default {} */
  env?: Readonly<Record<string, string>>
  /** Seconds a worker's drain may take (its controller's `shutdown({ timeout })`) before what is left is destroyed. @default 10 */
  timeout?: number
  /** Seconds a new worker may take to listen before a reload gives up on it. @default 30 */
  listenTimeout?: number
  /** Run `reload()` on SIGHUP and `shutdown()` on SIGTERM/SIGINT (a second one forces). @default true */
  signals?: boolean
  /** After a shutdown a signal started, exit the primary: 0 when every worker drained cleanly, else 1. @default true */
  exit?: boolean
  /** Where the one-line notices (worker restarted, reload done, shutdown done) go. @default console.log */
  logger?: (line: string) => void
}

/** One worker's row in {@link ClusterStats}: its own `stats()`, or why it has none. */
export type WorkerStats =
  | ({ /** node:cluster's worker id. */ id: number; pid: number | undefined; error?: undefined } & KeepAliveStats)
  | { id: number; pid: number | undefined; /** Why the worker gave no stats: it did not answer within 1 s, or it is still starting. */ error: string }

/**
 * The cluster-wide snapshot: a controller's `stats()` shape with counts summed over the workers that
 * answered, `load` their maximum, `timeout` and `max` the lowest any of them advertises (what every
 * client can count on), `draining` true once every answering worker drains; plus one row per worker.
 */
export interface ClusterStats extends KeepAliveStats {
  workers: WorkerStats[]
}

/** A worker as the reports name it. */
export interface WorkerRef {
  /** node:cluster's worker id. */
  id: number
  pid: number | undefined
}

/** How one worker ended: its drain report, as its controller resolved it, and its exit. */
export interface WorkerExit extends WorkerRef {
  /** The drain report the worker sent before exiting; `null` if it exited without one (killed, crashed). */
  drain: ShutdownReport | null
  /** Exit code; `null` when a signal ended it. */
  code: number | null
  signal: string | null
}

/** One step of a rolling reload: the worker replaced, and its replacement. */
export interface WorkerReload extends WorkerExit {
  replacement: WorkerRef
}

/** What {@link Cluster.reload} resolves with. */
export interface ReloadReport {
  /** One entry per worker replaced, in order. */
  workers: WorkerReload[]
  /** Seconds from the call until the last old worker exited. */
  elapsed: number
}

/** What {@link Cluster.shutdown} resolves with. */
export interface ClusterShutdownReport {
  workers: WorkerExit[]
  /** Seconds from the call until every worker exited. */
  elapsed: number
}

/** What {@link startCluster} returns. */
export interface Cluster {
  /** Resolves once every worker listens. */
  readonly ready: Promise<void>
  /** The cluster-wide snapshot; a worker that does not answer within 1 s is listed with `error`. */
  stats(): Promise<ClusterStats>
  /** Rolling restart, one worker at a time; a call while one runs returns the same promise. */
  reload(): Promise<ReloadReport>
  /** Drains every worker at once and resolves when all exited; a second call returns the same promise. */
  shutdown(): Promise<ClusterShutdownReport>
}

/** The registry part {@link joinCluster} reads for cluster-wide metrics: a prom-client `Registry` fits. */
export interface MetricsRegistry {
  getMetricsAsJSON(): Promise<unknown[]> | unknown[]
}

/** A server whose listening {@link joinCluster} reports: `http`, `https` or `http2`. */
export interface ListeningServer {
  readonly listening: boolean
  once(event: 'listening', listener: () => void): unknown
  off(event: 'listening', listener: () => void): unknown
}

/** The controller parts {@link joinCluster} uses; an adapter's middleware or `fastify.keepAlive` works too. */
export type ClusterController = Pick<KeepAliveController, 'stats' | 'shutdown'>

/** Options of {@link joinCluster}; durations in seconds. */
export interface JoinOptions {
  /**
   * The server the controller serves on: the worker reports "listening" once this one listens.
   * @default the first server that starts listening in this process after `joinCluster()`
   */
  server?: ListeningServer
  /**
   * Seconds the drain may take when a signal starts it. Under startCluster the primary's `timeout`
   * governs the drains it asks for.
   * @default under PM2, its `kill_timeout` less 0.5 s (PM2 sends SIGKILL then); otherwise 10
   */
  timeout?: number
  /** The registry the primary's cluster metrics read (where `registerKeepAliveMetrics` put this worker's metrics). */
  metrics?: MetricsRegistry
  /** Runs with the drain report before the worker exits (close a database pool, flush logs). */
  beforeExit?: (report: ShutdownReport) => unknown
  /** Exit the worker once drained: 0 when nothing was forced, else 1. @default true */
  exit?: boolean
}

/** What {@link joinCluster} returns. */
export interface ClusterMember {
  /** Where the worker runs: under {@link startCluster}, under PM2, or alone (then joining does nothing). */
  readonly mode: 'cluster' | 'pm2' | 'standalone'
  /** Resolves once the server listens and the primary (or PM2) was told. */
  readonly listening: Promise<void>
  /** Drains the controller as a signal would; resolves with the report (before the exit, if `exit`). */
  drain(timeout?: number): Promise<ShutdownReport>
  /** Removes every listener joining added; a drain already running goes on. */
  leave(): void
}
