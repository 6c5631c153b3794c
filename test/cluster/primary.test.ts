// startCluster's handle against real workers: stats() with a hung worker, restarts, metrics through
// AggregatorRegistry, a second reload() call, shutdown() and the signals. The fixtures import the
// built packages: run `pnpm build` first (`pnpm test` does).
import { rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { kill } from 'node:process'
import { afterEach, describe, expect, it } from 'vitest'
import type { ClusterShutdownReport, ClusterStats } from '@keepalive/cluster'
import { Client } from 'undici'
import { freePort, startPrimary, type Primary } from './helpers.js'

const primaries = new Set<Primary>()

afterEach(async () => {
  await Promise.all([...primaries].map((primary) => primary.kill()))
  primaries.clear()
})

async function start(env: Record<string, string> = {}): Promise<{ primary: Primary; origin: string }> {
  const port = await freePort()
  const primary = await startPrimary('primary.mjs', { PORT: String(port), WORKERS: '4', ...env })
  primaries.add(primary)
  return { primary, origin: `http://127.0.0.1:${port}` }
}

/** `n` keep-alive requests over `connections` sockets, so round-robin reaches every worker. */
async function requests(origin: string, n: number): Promise<void> {
  const clients = Array.from({ length: 8 }, () => new Client(origin))
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const response = await clients[i % clients.length]!.request({ method: 'GET', path: '/' })
      await response.body.text()
    }),
  )
  await Promise.all(clients.map((c) => c.close()))
}

describe('startCluster', () => {
  it("sums the workers' stats and lists each worker with its pid", async () => {
    const { primary, origin } = await start()
    await requests(origin, 40)
    const stats = await primary.call<ClusterStats>('stats')
    expect(stats.workers).toHaveLength(4)
    expect(new Set(stats.workers.map((w) => w.pid)).size).toBe(4)
    const rows = stats.workers.filter((w) => w.error === undefined)
    expect(rows).toHaveLength(4)
    expect(stats.requests).toBe(40)
    expect(stats.requests).toBe(rows.reduce((a, w) => a + (w.error === undefined ? w.requests : 0), 0))
    expect(stats.connections.open).toBe(rows.reduce((a, w) => a + (w.error === undefined ? w.connections.open : 0), 0))
    expect(stats).toMatchObject({ timeout: 5, max: 1000, draining: false, load: 0 })
  })

  it('finds the server without the server option: ready once the first server after joinCluster listens', async () => {
    const { primary, origin } = await start({ JOIN_WITHOUT_SERVER: '1', WORKERS: '2' })
    expect((await primary.call<ClusterStats>('stats')).workers.filter((w) => w.error === undefined)).toHaveLength(2)
    await requests(origin, 4)
  })

  it('returns stats() within about 1 s when a worker hangs, with that worker marked', async () => {
    const { primary } = await start()
    const { id } = await primary.call<{ id: number }>('hang', { ms: 4000 })
    const t0 = performance.now()
    const stats = await primary.call<ClusterStats>('stats')
    const elapsed = performance.now() - t0
    expect(elapsed).toBeGreaterThan(900)
    expect(elapsed).toBeLessThan(2000)
    const hung = stats.workers.find((w) => w.id === id)
    expect(hung?.error).toBe('no answer within 1 s')
    expect(stats.workers.filter((w) => w.error === undefined)).toHaveLength(3)
  })

  it('restarts a worker that dies unexpectedly', async () => {
    const { primary } = await start()
    const before = await primary.call<ClusterStats>('stats')
    const victim = before.workers[1]!
    const next = primary.call<{ id: number; pid: number }>('nextListening')
    kill(victim.pid!, 'SIGKILL')
    const replacement = await next
    const after = await primary.call<ClusterStats>('stats')
    expect(after.workers).toHaveLength(4)
    expect(after.workers.map((w) => w.pid)).not.toContain(victim.pid)
    expect(after.workers.map((w) => w.pid)).toContain(replacement.pid)
    expect(primary.output()).toMatch(new RegExp(`worker ${victim.id} \\(pid ${victim.pid}\\) exited unexpectedly \\(SIGKILL\\); starting another`))
  })

  it('returns the running reload to a second reload() call', { timeout: 60_000 }, async () => {
    const { primary } = await start({ WORKERS: '2' })
    expect(await primary.call('reloadTwice')).toEqual({ same: true, replaced: 2 })
  })

  it('stops a reload whose new worker crashes at start, and keeps the old workers serving', { timeout: 60_000 }, async () => {
    const marker = join(tmpdir(), `keepalive-crash-${process.pid}-${Date.now()}`)
    const { primary, origin } = await start({ WORKERS: '2', CRASH_MARKER: marker })
    const before = await primary.call<ClusterStats>('stats')
    await writeFile(marker, '')
    try {
      await expect(primary.call('reload')).rejects.toThrow(/keepalive: reload stopped after 0 of 2 workers: worker \d+ exited \(3\) before it listened/)
    } finally {
      await rm(marker, { force: true })
    }
    const after = await primary.call<ClusterStats>('stats')
    expect(after.workers.map((w) => w.pid)).toEqual(before.workers.map((w) => w.pid))
    await requests(origin, 4)
  })

  it("exposes every worker's metrics through AggregatorRegistry, one series per worker by default", async () => {
    const { primary, origin } = await start()
    await requests(origin, 40)
    const text = await primary.call<string>('metrics')
    const workers = new Set([...text.matchAll(/worker="(\d+)"/g)].map((m) => m[1]))
    expect(workers.size).toBe(4)
  })

  it('sums the workers\' series with by: "sum"', async () => {
    const { primary, origin } = await start({ METRICS_BY: 'sum' })
    await requests(origin, 40)
    const text = await primary.call<string>('metrics')
    expect(text).not.toMatch(/worker="/)
    // A counter of responses, summed over the 4 workers, reads the 40 requests.
    const counters = [...text.matchAll(/^(\w*requests\w*_total) (\d+)$/gm)]
    expect(counters.map((m) => Number(m[2]))).toContain(40)
  })

  it('drains every worker at once on shutdown() and reports each exit', async () => {
    const { primary, origin } = await start()
    await requests(origin, 16)
    const report = await primary.call<ClusterShutdownReport>('shutdown')
    expect(report.workers).toHaveLength(4)
    for (const worker of report.workers) {
      expect(worker.code).toBe(0)
      expect(worker.drain).toMatchObject({ forced: 0 })
    }
    expect(report.elapsed).toBeLessThan(5)
  })

  it('shuts down on SIGTERM and exits 0 once every worker drained', async () => {
    const { primary } = await start()
    primary.child.kill('SIGTERM')
    const [code, signal] = await primary.exited
    expect({ code, signal }).toEqual({ code: 0, signal: null })
    expect(primary.output()).toMatch(/keepalive: SIGTERM received: draining 4 workers/)
    expect(primary.output()).toMatch(/keepalive: 4 workers stopped in \d+\.\d\ds\n/)
  })

  it('reloads on SIGHUP', { timeout: 60_000 }, async () => {
    const { primary } = await start({ WORKERS: '2' })
    const before = await primary.call<ClusterStats>('stats')
    const listened = [primary.call('nextListening'), primary.call('nextListening')]
    primary.child.kill('SIGHUP')
    await Promise.all(listened)
    // The last step of the reload is logged once its old worker exited.
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (!/reloaded 2 workers/.test(primary.output())) return
        primary.child.stdout!.off('data', check)
        resolve()
      }
      primary.child.stdout!.on('data', check)
      check()
    })
    const after = await primary.call<ClusterStats>('stats')
    expect(after.workers.map((w) => w.pid).filter((pid) => before.workers.some((w) => w.pid === pid))).toEqual([])
  })
})
