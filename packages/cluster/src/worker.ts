// joinCluster(): the worker's side: report listening, answer stats and metrics, drain on command or signal.
import cluster from 'node:cluster'
import { tracingChannel } from 'node:diagnostics_channel'
import { performance } from 'node:perf_hooks'
import type { ShutdownReport } from '@keepalive/core'
import { CLUSTER_ENV, isOurs, type FromWorker } from './messages.js'
import { resolveJoinOptions } from './options.js'
import type { ClusterController, ClusterMember, JoinOptions, ListeningServer } from './types.js'

/** PM2's default `kill_timeout` (ms): it sends SIGKILL this long after SIGINT. */
const PM2_KILL_TIMEOUT_MS = 1600
/** Left between the end of the drain and PM2's SIGKILL, for the report and the exit. */
const PM2_MARGIN_S = 0.5
const DEFAULT_TIMEOUT_S = 10
/** The longest a drained worker waits for its primary to confirm it routes it no more connections. */
const DETACH_TIMEOUT_MS = 1000
/** Left for the exit itself after that wait, before PM2's SIGKILL. */
const PM2_EXIT_MS = 100

/** Node publishes every `server.listen()` here (lib/net.js), in cluster workers too. */
const LISTEN_CHANNEL = 'net.server.listen'

type Mode = ClusterMember['mode']

function detectMode(env: NodeJS.ProcessEnv): Mode {
  if (typeof process.send !== 'function') return 'standalone'
  if (cluster.isWorker && env[CLUSTER_ENV] === '1') return 'cluster'
  // PM2 copies its process environment (pm_id, kill_timeout, …) into every app it starts.
  if (env.pm_id !== undefined || env.PM2_HOME !== undefined) return 'pm2'
  return 'standalone'
}

/** PM2's `kill_timeout` for this app, as PM2 passed it down (`--kill-timeout`, ecosystem file or PM2_KILL_TIMEOUT). */
function pm2KillTimeoutMs(env: NodeJS.ProcessEnv): number {
  const value = Number(env.kill_timeout ?? env.PM2_KILL_TIMEOUT)
  return Number.isFinite(value) && value > 0 ? value : PM2_KILL_TIMEOUT_MS
}

/**
 * Connects a worker's controller to its primary: under {@link startCluster} it reports when the
 * server listens, answers stats and metrics requests and drains when told; under PM2 (`pm2 start -i N`)
 * it sends `process.send('ready')` for `--wait-ready` and drains on SIGINT (what `pm2 reload` and
 * `pm2 stop` send) or the `shutdown` message within `kill_timeout`. In both it drains on SIGTERM and
 * SIGINT, then exits. Run alone (`node app.js`), it does nothing.
 * @example
 * const ka = createKeepAlive()
 * const server = http.createServer((req, res) => { ka.handle(req, res); res.end('ok') })
 * ka.attach(server)
 * joinCluster(ka, { server })
 * server.listen(3000)
 */
export function joinCluster(controller: ClusterController, options?: Readonly<JoinOptions>): ClusterMember {
  if (
    controller === null ||
    (typeof controller !== 'object' && typeof controller !== 'function') ||
    typeof controller.shutdown !== 'function' ||
    typeof controller.stats !== 'function'
  ) {
    throw new TypeError("keepalive: joinCluster() needs a keepalive controller (createKeepAlive(), an adapter's middleware or fastify.keepAlive)")
  }
  const o = resolveJoinOptions(options)
  const mode = detectMode(process.env)
  const signalTimeout = o.timeout ?? (mode === 'pm2' ? Math.max(0, pm2KillTimeoutMs(process.env) / 1000 - PM2_MARGIN_S) : DEFAULT_TIMEOUT_S)
  let draining: Promise<ShutdownReport> | null = null
  let left = false
  const cleanups: (() => void)[] = []

  function send(message: FromWorker | 'ready'): Promise<void> {
    return new Promise((resolve) => {
      if (typeof process.send !== 'function' || !process.connected) return resolve()
      try {
        // Resolves once the message is handed to the channel (or could not be): exit only after that.
        process.send(message, undefined, {}, () => resolve())
      } catch {
        resolve() // the channel closed: the primary is gone, there is no one left to tell
      }
    })
  }

  // ---- listening -------------------------------------------------------------------------------
  let announced!: () => void
  const listening = new Promise<void>((resolve) => (announced = resolve))
  function onListening(): void {
    if (left) return
    void send(mode === 'pm2' ? 'ready' : { keepalive: 'listening' }).then(announced)
  }
  if (mode === 'standalone') {
    announced()
  } else if (o.server !== undefined) {
    const server: ListeningServer = o.server
    if (server.listening) onListening()
    else {
      server.once('listening', onListening)
      cleanups.push(() => server.off('listening', onListening))
    }
  } else {
    const channel = tracingChannel(LISTEN_CHANNEL)
    const handlers = {
      start() {},
      end() {},
      asyncStart() {},
      error() {},
      asyncEnd() {
        unsubscribe()
        onListening()
      },
    }
    let subscribed = true
    const unsubscribe = (): void => {
      if (!subscribed) return
      subscribed = false
      channel.unsubscribe(handlers)
    }
    channel.subscribe(handlers)
    cleanups.push(unsubscribe)
  }

  // ---- drain -----------------------------------------------------------------------------------
  function drain(timeout: number = signalTimeout): Promise<ShutdownReport> {
    draining ??= (async () => {
      const started = performance.now()
      const report = await controller.shutdown({ timeout })
      if (mode === 'cluster') await send({ keepalive: 'drained', report })
      leave()
      await o.beforeExit?.(report)
      if (o.exit) {
        // PM2 sends SIGKILL kill_timeout after its SIGINT: the wait ends before that.
        const left = mode === 'pm2' ? pm2KillTimeoutMs(process.env) - PM2_EXIT_MS - (performance.now() - started) : DETACH_TIMEOUT_MS
        await detach(Math.min(DETACH_TIMEOUT_MS, left))
        process.exit(report.forced > 0 ? 1 : 0)
      }
      return report
    })()
    return draining
  }

  /**
   * Waits, up to `ms`, until the primary has taken this worker out of its round robin. The server's
   * close() only tells the primary so, and the primary may hand over one more connection before it
   * reads that (it does so right after the worker acknowledged the previous one). A worker that is
   * still running sends such a connection back and the primary gives it to another worker; one that
   * has exited never answers, and the primary holds the connection unanswered for good. The primary
   * reads a worker's messages in order and answers `disconnect()`'s only after the close, so once
   * the IPC channel is disconnected every connection sent to this worker has been sent back.
   */
  function detach(ms: number): Promise<void> {
    const worker = cluster.worker
    if (ms <= 0 || !cluster.isWorker || worker === undefined || !worker.isConnected()) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      worker.once('disconnect', () => {
        clearTimeout(timer)
        resolve()
      })
      try {
        worker.disconnect()
      } catch {
        clearTimeout(timer)
        resolve() // the channel closed meanwhile: the primary is gone, or has let go of this worker
      }
    })
  }

  function onSignal(): void {
    void drain()
  }

  async function onMessage(message: unknown): Promise<void> {
    if (mode === 'pm2' && message === 'shutdown') return void drain() // PM2's shutdown_with_message
    if (!isOurs(message)) return
    const id = message.id as string
    if (message.keepalive === 'stats') {
      await send({ keepalive: 'stats', id, stats: controller.stats() })
    } else if (message.keepalive === 'metrics') {
      if (o.metrics === undefined) return void send({ keepalive: 'metrics', id, error: 'joinCluster() was given no "metrics" registry' })
      try {
        await send({ keepalive: 'metrics', id, metrics: await o.metrics.getMetricsAsJSON() })
      } catch (error) {
        await send({ keepalive: 'metrics', id, error: error instanceof Error ? error.message : String(error) })
      }
    } else if (message.keepalive === 'drain' && typeof message.timeout === 'number') {
      void drain(message.timeout)
    }
  }
  function onMessageSync(message: unknown): void {
    void onMessage(message)
  }

  if (mode !== 'standalone') {
    process.on('message', onMessageSync)
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    cleanups.push(() => {
      process.off('message', onMessageSync)
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    })
  }

  function leave(): void {
    if (left) return
    left = true
    for (const cleanup of cleanups.splice(0)) cleanup()
  }

  return { mode, listening, drain, leave }
}
