// Rolling reloads of 4 real workers under continuous keep-alive load: startCluster's reload() against
// the naive node:cluster reload (fork, 'listening', SIGINT, server.close()). The fixtures import the
// built packages: run `pnpm build` first (`pnpm test` does).
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import type { ClusterStats, ReloadReport } from '@keepalive/cluster'
import { freePort, startLoad, startPrimary, type Load, type Primary } from './helpers.js'

const primaries = new Set<Primary>()
const loads = new Set<Load>()

beforeAll(() => {
  const missing = ['core', 'prometheus', 'cluster'].filter((p) => !existsSync(new URL(`../../packages/${p}/dist/index.js`, import.meta.url)))
  if (missing.length > 0) throw new Error(`the fixtures run the built packages; run \`pnpm build\` first (missing dist of ${missing.join(', ')})`)
})

afterEach(async () => {
  await Promise.all([...loads].map((load) => load.stop()))
  loads.clear()
  await Promise.all([...primaries].map((primary) => primary.kill()))
  primaries.clear()
})

async function start(script: string): Promise<{ primary: Primary; origin: string }> {
  const port = await freePort()
  const primary = await startPrimary(script, { PORT: String(port), WORKERS: '4' })
  primaries.add(primary)
  return { primary, origin: `http://127.0.0.1:${port}` }
}

function load(origin: string): Load {
  const l = startLoad(origin, 32)
  loads.add(l)
  return l
}

const pidsOf = (stats: ClusterStats): number[] => stats.workers.map((w) => w.pid!).sort()

describe('startCluster reload()', () => {
  it('replaces 4 workers three times in a row under keep-alive load, loses no request and answers stats() meanwhile', { timeout: 120_000 }, async () => {
    const { primary, origin } = await start('primary.mjs')
    const before = await primary.call<ClusterStats>('stats')
    expect(before.workers).toHaveLength(4)
    const traffic = load(origin)
    await traffic.answered(500)

    const seen = new Set(pidsOf(before))
    const times: number[] = []
    for (let round = 0; round < 3; round++) {
      const running = primary.call<ReloadReport>('reload')
      let done = false
      void running.finally(() => (done = true)).catch(() => {})
      // stats() during the reload: it answers, in well under the reload's time, listing every worker.
      const t0 = performance.now()
      const during = await primary.call<ClusterStats>('stats')
      const statsMs = performance.now() - t0
      expect(statsMs).toBeLessThan(1500)
      expect(during.workers.length).toBeGreaterThanOrEqual(4)
      // The replacement being started is listed without stats until it listens; every other worker answers.
      const missing = during.workers.filter((w) => w.error !== undefined)
      expect(missing.map((w) => w.error)).toEqual(missing.map(() => 'starting: not listening yet'))
      expect(missing.length).toBeLessThanOrEqual(1)
      expect(during.requests).toBeGreaterThan(0)
      const report = await running
      expect(done).toBe(true)
      times.push(report.elapsed)

      expect(report.workers).toHaveLength(4)
      for (const step of report.workers) {
        expect(seen.has(step.pid!)).toBe(true)
        expect(seen.has(step.replacement.pid!)).toBe(false)
        expect(step.code).toBe(0)
        expect(step.drain).not.toBeNull()
        expect(step.drain!.forced).toBe(0)
      }
      const after = await primary.call<ClusterStats>('stats')
      expect(after.workers).toHaveLength(4)
      // Every worker replaced: none of the pids before the reload is left.
      expect(pidsOf(after).filter((pid) => report.workers.some((s) => s.pid === pid))).toEqual([])
      for (const pid of pidsOf(after)) seen.add(pid)
      await traffic.answered(300)
    }
    const result = await traffic.stop()
    loads.clear()
    console.log(
      `keepalive cluster: 3 rolling reloads of 4 workers under load: ${result.ok} answered, ${result.lost} lost; reload took ${times.map((t) => `${t.toFixed(2)} s`).join(', ')}`,
    )
    expect(result.errors).toEqual({})
    expect(result.lost).toBe(0)
    // Served by the workers of every generation: 4 initial + 3 × 4 replacements.
    expect(seen.size).toBe(16)
    expect([...result.pids].every((pid) => seen.has(pid))).toBe(true)
  })

  it('measures the naive reload (server.close() on SIGINT) under the same load, for comparison', { timeout: 120_000 }, async () => {
    const { primary, origin } = await start('naive-primary.mjs')
    const traffic = load(origin)
    await traffic.answered(500)
    const times: number[] = []
    for (let round = 0; round < 3; round++) {
      times.push((await primary.call<{ elapsed: number }>('reload')).elapsed)
      await traffic.answered(300)
    }
    const result = await traffic.stop()
    loads.clear()
    console.log(
      `naive cluster: 3 rolling reloads of 4 workers under load: ${result.ok} answered, ${result.lost} lost (${JSON.stringify(result.errors)}); reload took ${times.map((t) => `${t.toFixed(2)} s`).join(', ')}`,
    )
    // Only the comparison is printed: the naive figure varies from run to run.
    expect(result.ok).toBeGreaterThan(0)
  })
})
