// Runs examples/cluster/app.mjs as a user would, with 2 workers: requests on a keep-alive
// connection, cluster stats and metrics on the admin port, SIGHUP (rolling reload), SIGTERM (drain,
// exit 0). The example imports the built packages: run `pnpm build` first (`pnpm test` does).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Client } from 'undici'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { ClusterStats } from '@keepalive/cluster'
import { freePort } from '../../test/cluster/helpers.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const children = new Set<ChildProcessWithoutNullStreams>()

beforeAll(() => {
  const missing = ['core', 'prometheus', 'cluster'].filter((p) => !existsSync(`${root}packages/${p}/dist/index.js`))
  if (missing.length > 0) throw new Error(`the example runs the built packages; run \`pnpm build\` first (missing dist of ${missing.join(', ')})`)
})

afterEach(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
  children.clear()
})

async function get(origin: string, path: string, client?: Client): Promise<{ headers: Record<string, unknown>; body: string }> {
  const c = client ?? new Client(origin)
  const response = await c.request({ method: 'GET', path })
  const body = await response.body.text()
  if (client === undefined) await c.close()
  return { headers: response.headers, body }
}

/** Resolves once the output so far matches `pattern`. */
function printed(child: ChildProcessWithoutNullStreams, output: () => string, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!pattern.test(output())) return
      child.stdout.off('data', check)
      resolve()
    }
    child.stdout.on('data', check)
    void once(child, 'exit').then(() => reject(new Error(`exited before printing ${pattern}:\n${output()}`)))
    check()
  })
}

describe('examples/cluster/app.mjs', () => {
  it('serves from 2 workers, reports cluster stats and metrics, reloads on SIGHUP and drains on SIGTERM', { timeout: 60_000 }, async () => {
    const [port, adminPort] = [await freePort(), await freePort()]
    const child = spawn(process.execPath, ['examples/cluster/app.mjs'], {
      cwd: root,
      env: { ...process.env, PORT: String(port), ADMIN_PORT: String(adminPort), WORKERS: '2' },
    })
    children.add(child)
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    await printed(child, () => output, /^listening on http:\/\/127\.0\.0\.1:\d+; stats and metrics on /m)
    const app = `http://127.0.0.1:${port}`
    const admin = `http://127.0.0.1:${adminPort}`

    const client = new Client(app)
    const first = await get(app, '/', client)
    expect(first.body).toMatch(/^hello from \d+\n$/)
    expect(first.headers).toMatchObject({ connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
    await client.close()

    const stats = JSON.parse((await get(admin, '/stats')).body) as ClusterStats
    expect(stats.workers).toHaveLength(2)
    expect(stats.requests).toBe(1)
    expect((await get(admin, '/metrics')).body).toMatch(/worker="\d+"/)

    child.kill('SIGHUP')
    await printed(child, () => output, /keepalive: reloaded 2 workers in \d+\.\d\ds/)
    const after = JSON.parse((await get(admin, '/stats')).body) as ClusterStats
    expect(after.workers).toHaveLength(2)
    expect(after.workers.map((w) => w.pid).filter((pid) => stats.workers.some((w) => w.pid === pid))).toEqual([])

    child.kill('SIGTERM')
    const [code, signal] = await once(child, 'exit')
    expect({ code, signal }).toEqual({ code: 0, signal: null })
    expect(output).toMatch(/keepalive: SIGTERM received: draining 2 workers\n/)
    expect(output).toMatch(/keepalive: 2 workers stopped in \d+\.\d\ds\n/)
  })
})
