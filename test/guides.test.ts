// The deployment guides' options, run as written: each row of docs/load-balancers.md's table gives a
// `behind` option and the header it promises, and a server started with exactly that option must send
// it; docs/pm2-cluster.md's ecosystem file must give the server's drain time to finish before PM2's SIGKILL.
// The PM2 case runs examples/express/server.mjs, which imports the built packages (`pnpm build` first).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { Client } from 'undici'
import { describe, expect, it } from 'vitest'
import { createKeepAlive, type KeepAliveOptions } from '@keepalive/core'
import { connect, expectHeaders } from './helpers/wire.js'
import { useResources } from './helpers/resources.js'

const resources = useResources()

interface Row {
  name: string
  option: string
  header: string
}

/** The table rows of a guide: `| name | ... | `behind: { ... }` | `Keep-Alive: ...` |`. */
function rows(path: string): Row[] {
  const text = readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')
  const found: Row[] = []
  for (const line of text.split('\n')) {
    const match = /^\| ([^|]+) \|.*\| `(behind: \{ idleTimeout: \d+ \})` \| `Keep-Alive: ([^`]+)` \|$/.exec(line)
    if (match !== null) found.push({ name: match[1]!.trim(), option: match[2]!, header: match[3]! })
  }
  return found
}

/** `behind: { idleTimeout: 60 }` → `{ behind: { idleTimeout: 60 } }`, read as data, not evaluated. */
function parseOption(option: string): KeepAliveOptions {
  const match = /^behind: \{ idleTimeout: (\d+) \}$/.exec(option)
  if (match === null) throw new Error(`not a behind option: ${option}`)
  return { behind: { idleTimeout: Number(match[1]) } }
}

const loadBalancers = rows('docs/load-balancers.md')

describe('docs/load-balancers.md', () => {
  it('has a row for AWS ALB (60 s) and Google Cloud (600 s)', () => {
    expect(loadBalancers.map((row) => [row.name, row.option])).toEqual([
      ['AWS Application Load Balancer', 'behind: { idleTimeout: 60 }'],
      ['Google Cloud external Application Load Balancer', 'behind: { idleTimeout: 600 }'],
    ])
  })

  it.each(loadBalancers)('$name: $option advertises $header', async ({ option, header }) => {
    const options = parseOption(option)
    const ka = createKeepAlive(options)
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    ka.attach(server)
    const port = await resources.listen(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': header })
    expect(ka.stats().timeout).toBe(options.behind!.idleTimeout + 5)
    // Node's header timeout must not cut a connection the load balancer may still reuse.
    expect(server.headersTimeout).toBeGreaterThan((options.behind!.idleTimeout + 5 + 1) * 1000)
  })
})

describe('docs/pm2-cluster.md', () => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const ecosystem = createRequire(import.meta.url)('../examples/pm2/ecosystem.config.cjs') as {
    apps: { script: string; exec_mode: string; kill_timeout: number }[]
  }
  const app = ecosystem.apps[0]!

  it("gives PM2's kill_timeout room for the server's readiness delay, drain timeout and a margin", () => {
    expect(app).toMatchObject({ script: 'examples/express/server.mjs', exec_mode: 'cluster' })
    const source = readFileSync(new URL(`../${app.script}`, import.meta.url), 'utf8')
    // The server uses gracefulShutdown's defaults: readinessDelay 0 s, timeout 10 s.
    expect(source).toContain('gracefulShutdown(server, { keepAlive: ka })')
    expect(app.kill_timeout).toBeGreaterThanOrEqual((0 + 10 + 5) * 1000)
  })

  it('drains and exits 0 on SIGINT, the signal PM2 stops and reloads with', async () => {
    const child = spawn(process.execPath, [app.script], { cwd: root, env: { ...process.env, PORT: '0' } })
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
    resources.add(child, async (c) => {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL')
        await exited
      }
    })
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.resume()
    while (!/^listening on http:\/\/127\.0\.0\.1:\d+$/m.test(stdout)) {
      await Promise.race([once(child.stdout, 'data'), exited.then(() => Promise.reject(new Error(`exited early:\n${stdout}`)))])
    }
    const url = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)![1]!
    const client = resources.add(new Client(url, { pipelining: 1, keepAliveTimeoutThreshold: 0 }), (c) => c.destroy())
    const response = await client.request({ method: 'GET', path: '/' })
    expect(response.headers['keep-alive']).toBe('timeout=5, max=999')
    await response.body.text()

    child.kill('SIGINT')
    const [code, signal] = await exited
    expect({ code, signal }).toEqual({ code: 0, signal: null })
    expect(stdout).toContain('keepalive: SIGINT received: reporting not ready; draining now\n')
    expect(stdout).toMatch(/^keepalive: drained in \d+\.\d\ds: 1 idle closed, 0 requests completed, 0 forced$/m)
  })
})
