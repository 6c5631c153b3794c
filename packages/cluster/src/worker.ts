// joinCluster(): the worker's side: report listening, answer stats and metrics, drain on command or signal.
import cluster from 'node:cluster'
import { tracingChannel } from 'node:diagnostics_channel'
import type { ShutdownReport } from '@keepalive/core'
import { CLUSTER_ENV, isOurs, type FromWorker } from './messages.js'
import { resolveJoinOptions } from './options.js'
import type { ClusterController, ClusterMember, JoinOptions, ListeningServer } from './types.js'

/** PM2's default `kill_timeout` (ms): it sends SIGKILL this long after SIGINT. */
const PM2_KILL_TIMEOUT_MS = 1600
/** Left between the end of the drain and PM2's SIGKILL, for the report and the exit. */
const PM2_MARGIN_S = 0.5
const DEFAULT_TIMEOUT_S = 10

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
      const report = await controller.shutdown({ timeout })
      if (mode === 'cluster') await send({ keepalive: 'drained', report })
      leave()
      await o.beforeExit?.(report)
      if (o.exit) process.exit(report.forced > 0 ? 1 : 0)
      return report
    })()
    return draining
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
