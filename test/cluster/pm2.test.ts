// The same worker app under real PM2 in cluster mode: `pm2 start -i 4 --wait-ready`, continuous
// keep-alive load, `pm2 reload`: no request lost. The naive worker goes through the same for
// comparison (its losses are printed, not asserted). The daemon runs with its own PM2_HOME in a temp
// dir and is killed at the end. The fixtures import the built packages: run `pnpm build` first.
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, startLoad, type LoadResult } from './helpers.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../..', import.meta.url))
const pm2Bin = join(root, 'node_modules', 'pm2', 'bin', 'pm2')
let home = ''

async function pm2(args: string[], env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(process.execPath, [pm2Bin, ...args], {
    cwd: root,
    env: { ...process.env, ...env, PM2_HOME: home },
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  })
  return stdout
}

interface Pm2Process {
  name: string
  pid: number
  pm2_env: { status: string; restart_time: number }
}

async function list(name: string): Promise<Pm2Process[]> {
  return (JSON.parse(await pm2(['jlist'])) as Pm2Process[]).filter((p) => p.name === name)
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'keepalive-pm2-'))
})

afterAll(async () => {
  if (home === '') return
  await pm2(['kill']).catch((error: unknown) => console.error('pm2 kill failed', error))
  await rm(home, { recursive: true, force: true })
})

/** Starts `script` with `pm2 start -i 4`, loads it, runs `pm2 reload` twice, and returns what the load saw. */
async function reloadUnderLoad(
  name: string,
  script: string,
  startArgs: string[],
): Promise<{ result: LoadResult; times: number[]; before: number[]; after: number[] }> {
  const port = await freePort()
  await pm2(['start', join(root, 'test/cluster/fixtures', script), '--name', name, '-i', '4', ...startArgs], { PORT: String(port) })
  try {
    const before = (await list(name)).map((p) => p.pid)
    expect(before).toHaveLength(4)
    const traffic = startLoad(`http://127.0.0.1:${port}`, 32)
    await traffic.answered(500)
    const times: number[] = []
    for (let round = 0; round < 2; round++) {
      const t0 = performance.now()
      await pm2(['reload', name])
      times.push((performance.now() - t0) / 1000)
      await traffic.answered(300)
    }
    const result = await traffic.stop()
    const after = (await list(name)).map((p) => p.pid)
    return { result, times, before, after }
  } finally {
    await pm2(['delete', name])
  }
}

describe('under PM2 cluster mode', () => {
  it('pm2 reload of 4 workers that joined the cluster loses no request under keep-alive load', { timeout: 180_000 }, async () => {
    // kill_timeout: the seconds PM2 waits after SIGINT before SIGKILL; joinCluster drains within it.
    const { result, times, before, after } = await reloadUnderLoad('keepalive-app', 'worker.mjs', [
      '--wait-ready',
      '--kill-timeout',
      '5000',
      '--listen-timeout',
      '20000',
    ])
    console.log(
      `keepalive under PM2: 2 × pm2 reload of 4 workers under load: ${result.ok} answered, ${result.lost} lost (${JSON.stringify(result.errors)}); reload took ${times.map((t) => `${t.toFixed(2)} s`).join(', ')}`,
    )
    expect(result.errors).toEqual({})
    expect(result.lost).toBe(0)
    expect(after).toHaveLength(4)
    expect(after.filter((pid) => before.includes(pid))).toEqual([])
    // Old and new workers both answered: the load really ran across the reloads.
    expect(before.some((pid) => result.pids.has(pid))).toBe(true)
    expect(after.some((pid) => result.pids.has(pid))).toBe(true)
  })

  it('measures the naive worker under the same pm2 reload, for comparison', { timeout: 180_000 }, async () => {
    const { result, times } = await reloadUnderLoad('naive-app', 'naive-worker.mjs', ['--kill-timeout', '5000'])
    console.log(
      `naive under PM2: 2 × pm2 reload of 4 workers under load: ${result.ok} answered, ${result.lost} lost (${JSON.stringify(result.errors)}); reload took ${times.map((t) => `${t.toFixed(2)} s`).join(', ')}`,
    )
    expect(result.ok).toBeGreaterThan(0)
  })
})
