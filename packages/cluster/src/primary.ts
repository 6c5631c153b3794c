// startCluster(): the primary's side: fork, restart, ready, stats, rolling reload and shutdown.
import cluster, { type Worker } from 'node:cluster'
import { performance } from 'node:perf_hooks'
import type { ShutdownReport } from '@keepalive/core'
import { ask, CLUSTER_ENV, isOurs, type ToWorker } from './messages.js'
import { resolveClusterOptions } from './options.js'
import { sumStats } from './stats.js'
import type { Cluster, ClusterOptions, ClusterShutdownReport, ClusterStats, ReloadReport, WorkerExit, WorkerReload, WorkerStats } from './types.js'

/** A worker that does not answer a stats request within this long is listed with `error`. */
const STATS_TIMEOUT_MS = 1000
/** A worker told to drain that is still running this long after its deadline is killed. */
const KILL_MARGIN_MS = 2000
/** A worker that died before it ever listened is restarted after this long, not in a tight loop. */
const RESTART_DELAY_MS = 1000

interface Member {
  worker: Worker
  listening: boolean
  /** Told to drain (reload or shutdown): its exit is expected, not restarted. */
  retiring: Promise<WorkerExit> | null
  /** A reload has forked its replacement: if it dies now, the replacement takes its place. */
  replaced: boolean
  /** Forked by a reload: if it dies before it listens, the reload fails instead of restarting it. */
  trial: boolean
  report: ShutdownReport | null
  exited: Promise<WorkerExit>
  /** Settles when it listens, or rejects when it exits first. */
  listened: Promise<void>
  dispose(): void
}

const seconds = (since: number): number => (performance.now() - since) / 1000
const ref = (worker: Worker): { id: number; pid: number | undefined } => ({ id: worker.id, pid: worker.process.pid })

/**
 * Forks `workers` workers running `exec` (each calls {@link joinCluster}), restarts any that dies
 * unexpectedly, and returns the cluster's handle. SIGHUP runs `reload()`, SIGTERM/SIGINT run
 * `shutdown()` (a second one kills what is left), unless `signals: false`. Options are checked here.
 * @example
 * if (cluster.isPrimary) {
 *   const app = startCluster({ workers: 4, timeout: 10 })
 *   await app.ready
 * } else {
 *   const ka = createKeepAlive()
 *   const server = http.createServer((req, res) => { ka.handle(req, res); res.end('ok') }).listen(3000)
 *   ka.attach(server)
 *   joinCluster(ka, { server })
 * }
 */
export function startCluster(options?: ClusterOptions): Cluster {
  const o = resolveClusterOptions(options)
  if (!cluster.isPrimary) {
    throw new Error('keepalive: startCluster() runs in the primary process; call joinCluster(controller) in the workers')
  }
  if (o.exec !== undefined || o.args !== undefined) {
    cluster.setupPrimary({ ...(o.exec === undefined ? {} : { exec: o.exec }), ...(o.args === undefined ? {} : { args: o.args }) })
  }
  const members = new Set<Member>()
  const restartTimers = new Set<NodeJS.Timeout>()
  let stopping = false
  let reloading: Promise<ReloadReport> | null = null
  let stopped: Promise<ClusterShutdownReport> | null = null

  let markReady!: () => void
  const ready = new Promise<void>((resolve) => (markReady = resolve))
  let isReady = false
  function checkReady(): void {
    if (isReady) return
    let up = 0
    for (const m of members) if (m.listening && m.retiring === null) up++
    if (up >= o.workers) {
      isReady = true
      markReady()
    }
  }

  function fork(trial = false): Member {
    const worker = cluster.fork({ ...o.env, [CLUSTER_ENV]: '1' })
    let listenedResolve!: () => void
    let listenedReject!: (error: Error) => void
    const listened = new Promise<void>((resolve, reject) => {
      listenedResolve = resolve
      listenedReject = reject
    })
    listened.catch(() => {}) // observed by whoever waits on it; a startup crash is handled in onExit
    let exitedResolve!: (exit: WorkerExit) => void
    const exited = new Promise<WorkerExit>((resolve) => (exitedResolve = resolve))
    const member: Member = { worker, listening: false, retiring: null, replaced: false, trial, report: null, exited, listened, dispose }

    function onMessage(message: unknown): void {
      if (!isOurs(message)) return
      if (message.keepalive === 'listening' && !member.listening) {
        member.listening = true
        listenedResolve()
        checkReady()
      } else if (message.keepalive === 'drained') {
        member.report = message.report as ShutdownReport
      }
    }
    function onExit(code: number | null, signal: string | null): void {
      dispose()
      members.delete(member)
      const wasListening = member.listening
      listenedReject(new Error(`worker ${worker.id} exited (${signal ?? code}) before it listened`))
      exitedResolve({ ...ref(worker), drain: member.report, code, signal })
      if (member.retiring !== null || member.replaced || stopping || (member.trial && !wasListening)) return
      o.logger(`keepalive: worker ${worker.id} (pid ${worker.process.pid}) exited unexpectedly (${signal ?? `code ${code}`}); starting another`)
      if (wasListening) {
        fork()
        return
      }
      const timer = setTimeout(() => {
        restartTimers.delete(timer)
        if (!stopping) fork()
      }, RESTART_DELAY_MS)
      timer.unref()
      restartTimers.add(timer)
    }
    function dispose(): void {
      worker.off('message', onMessage)
      worker.off('exit', onExit)
    }
    worker.on('message', onMessage)
    worker.on('exit', onExit)
    members.add(member)
    return member
  }

  /** Tells a worker to drain and resolves when it exited; killed if it outlives its deadline. */
  function retire(member: Member): Promise<WorkerExit> {
    if (member.retiring !== null) return member.retiring
    const { worker } = member
    const kill = setTimeout(() => worker.process.kill('SIGKILL'), o.timeout * 1000 + KILL_MARGIN_MS)
    kill.unref()
    member.retiring = member.exited.finally(() => clearTimeout(kill))
    try {
      if (worker.isConnected()) worker.send({ keepalive: 'drain', timeout: o.timeout } satisfies ToWorker)
      else worker.process.kill('SIGTERM')
    } catch {
      // The channel closed between the check and the send: the worker is on its way out; make sure.
      worker.process.kill('SIGTERM')
    }
    return member.retiring
  }

  /** Resolves once the member listens; kills it and rejects if it exits first or takes too long. */
  function waitListening(member: Member): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        member.worker.process.kill('SIGKILL')
        reject(new Error(`worker ${member.worker.id} did not listen within ${o.listenTimeoutMs / 1000} s`))
      }, o.listenTimeoutMs)
      timer.unref()
      member.listened.then(
        () => {
          clearTimeout(timer)
          resolve()
        },
        (error: Error) => {
          clearTimeout(timer)
          reject(error)
        },
      )
    })
  }

  async function rollingReload(): Promise<ReloadReport> {
    const started = performance.now()
    const steps: WorkerReload[] = []
    const old = [...members].filter((m) => m.retiring === null)
    for (const member of old) {
      if (stopping) break
      if (!members.has(member)) continue // it died meanwhile, and was restarted
      member.replaced = true
      const replacement = fork(true)
      try {
        await waitListening(replacement)
      } catch (error) {
        if (stopping) break
        // The old worker keeps serving: a broken release must not take the cluster down.
        member.replaced = false
        void retire(replacement)
        if (!members.has(member)) fork() // it died while its replacement failed: its slot is refilled
        throw new Error(`keepalive: reload stopped after ${steps.length} of ${old.length} workers: ${(error as Error).message}`, { cause: error })
      }
      checkReady()
      const exit = await retire(member)
      steps.push({ ...exit, replacement: ref(replacement.worker) })
    }
    const report = { workers: steps, elapsed: seconds(started) }
    o.logger(`keepalive: reloaded ${steps.length} workers in ${report.elapsed.toFixed(2)}s`)
    return report
  }

  function reload(): Promise<ReloadReport> {
    if (stopped !== null) return Promise.reject(new Error('keepalive: the cluster is shutting down; nothing to reload'))
    reloading ??= rollingReload().finally(() => {
      reloading = null
    })
    return reloading
  }

  async function stats(): Promise<ClusterStats> {
    const rows = await Promise.all(
      [...members].map(async ({ worker, listening }): Promise<WorkerStats> => {
        // A worker still starting has no server (and maybe no joinCluster) yet: do not wait for it.
        if (!listening) return { ...ref(worker), error: 'starting: not listening yet' }
        try {
          return { ...ref(worker), ...(await ask(worker, 'stats', STATS_TIMEOUT_MS)) }
        } catch (error) {
          return { ...ref(worker), error: (error as Error).message }
        }
      }),
    )
    rows.sort((a, b) => a.id - b.id)
    return sumStats(rows, stopping)
  }

  function shutdown(): Promise<ClusterShutdownReport> {
    if (stopped !== null) return stopped
    stopping = true
    const started = performance.now()
    for (const timer of restartTimers) clearTimeout(timer)
    restartTimers.clear()
    stopped = (async () => {
      // A reload's replacement forked meanwhile is in `members` too: every worker drains at once.
      const exits = await Promise.all([...members].map(retire))
      // A replacement forked while the others drained (a reload between two steps) goes the same way.
      while (members.size > 0) exits.push(...(await Promise.all([...members].map(retire))))
      exits.sort((a, b) => a.id - b.id)
      removeSignals()
      const report = { workers: exits, elapsed: seconds(started) }
      const forced = exits.filter((e) => e.code !== 0).length
      o.logger(`keepalive: ${exits.length} workers stopped in ${report.elapsed.toFixed(2)}s${forced > 0 ? `, ${forced} not cleanly` : ''}`)
      return report
    })()
    return stopped
  }

  function onReloadSignal(): void {
    reload().catch((error: unknown) => o.logger(error instanceof Error ? error.message : String(error)))
  }

  function onStopSignal(signal: NodeJS.Signals): void {
    if (stopped !== null) {
      o.logger(`keepalive: second ${signal}, killing every worker now`)
      for (const { worker } of members) worker.process.kill('SIGKILL')
      return
    }
    o.logger(`keepalive: ${signal} received: draining ${members.size} workers`)
    void shutdown().then((report) => {
      if (o.exit) process.exit(report.workers.every((w) => w.code === 0) ? 0 : 1)
    })
  }

  function removeSignals(): void {
    process.off('SIGHUP', onReloadSignal)
    process.off('SIGTERM', onStopSignal)
    process.off('SIGINT', onStopSignal)
  }

  if (o.signals) {
    process.on('SIGHUP', onReloadSignal)
    process.on('SIGTERM', onStopSignal)
    process.on('SIGINT', onStopSignal)
  }
  for (let i = 0; i < o.workers; i++) fork()

  return { ready, stats, reload, shutdown }
}
