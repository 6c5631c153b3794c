// Starts each runnable example as its own process, exactly as a user would (`node examples/<x>/server.mjs`),
// talks to it over a real keep-alive connection, then sends SIGTERM and reads the shutdown report.
// The examples import the built packages: run `pnpm build` first (`pnpm test` does).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync } from 'node:fs'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Client } from 'undici'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const examples = ['express', 'koa', 'fastify', 'raw-http'] as const
const REPORT = /^keepalive: drained in \d+\.\d\ds: (\d+) idle closed, (\d+) requests completed, (\d+) forced$/m

type Headers = Record<string, string | string[] | undefined>

/** Checks response headers; `null` means the header must be absent. */
function expectHeaders(headers: Headers, expected: Record<string, string | null>): void {
  for (const [name, value] of Object.entries(expected)) {
    if (value === null) expect(headers[name], `${name} must be absent`).toBeUndefined()
    else expect(headers[name], name).toBe(value)
  }
}

interface Running {
  child: ChildProcessWithoutNullStreams
  url: string
  /** Everything the process printed on stdout so far. */
  output(): string
  exited: Promise<[number | null, NodeJS.Signals | null]>
}

const children = new Set<ChildProcessWithoutNullStreams>()
const clients = new Set<Client>()

/** Runs `node examples/<name>/server.mjs` on a free port and resolves once it prints its listening line. */
async function start(name: string): Promise<Running> {
  const child = spawn(process.execPath, [`examples/${name}/server.mjs`], {
    cwd: root,
    env: { ...process.env, PORT: '0' },
  })
  children.add(child)
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (): void => {
      const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)
      if (match === null) return
      child.stdout.off('data', onData)
      resolve(match[1]!)
    }
    child.stdout.on('data', onData)
    void exited.then(([code, signal]) => reject(new Error(`examples/${name} exited (${code ?? signal}) before listening:\n${stdout}${stderr}`)))
  })
  return { child, url, output: () => stdout, exited }
}

function keepAliveClient(url: string): Client {
  // keepAliveTimeoutThreshold 0: the client trusts the advertised timeout in full, so the
  // connection is still open (idle) when the server drains it.
  const client = new Client(url, { pipelining: 1, keepAliveTimeoutThreshold: 0 })
  clients.add(client)
  return client
}

async function get(client: Client, path: string): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await client.request({ method: 'GET', path })
  return { status: response.statusCode, headers: response.headers, body: await response.body.text() }
}

beforeAll(() => {
  const missing = ['core', 'express', 'koa', 'fastify'].filter((p) => !existsSync(`${root}packages/${p}/dist/index.js`))
  if (missing.length > 0) throw new Error(`the examples run the built packages; run \`pnpm build\` first (missing dist of ${missing.join(', ')})`)
})

afterEach(async () => {
  await Promise.all([...clients].map((client) => client.destroy()))
  clients.clear()
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
  children.clear()
})

describe.each(examples)('examples/%s/server.mjs', (name) => {
  it('advertises timeout=5 and a decreasing max on one reused connection, and reports it in /stats', async () => {
    const server = await start(name)
    const client = keepAliveClient(server.url)

    const first = await get(client, '/')
    expect(first.status).toBe(200)
    expect(first.body).toBe('hello\n')
    expectHeaders(first.headers, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })

    const second = await get(client, '/')
    expectHeaders(second.headers, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=998' })

    const stats = await get(client, '/stats')
    expectHeaders(stats.headers, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=997' })
    expect(JSON.parse(stats.body)).toEqual({
      connections: { open: 1, active: 1, idle: 0 },
      requests: 2,
      reuseRatio: 0.5,
      closes: { client: 0, idleTimeout: 0, maxRequests: 0, maxAge: 0, shed: 0, evicted: 0, perIp: 0, drain: 0, forced: 0 },
      load: 0,
      timeout: 5,
      max: 1000,
      draining: false,
    })

    const ready = await get(client, '/ready')
    expect(ready.status).toBe(200)
    expect(ready.body).toBe('ok')
    expectHeaders(ready.headers, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=996' })
  })

  it('drains the idle keep-alive connection on SIGTERM, prints the report and exits 0', async () => {
    const server = await start(name)
    const client = keepAliveClient(server.url)
    expect((await get(client, '/')).headers['keep-alive']).toBe('timeout=5, max=999')

    server.child.kill('SIGTERM')
    const [code, signal] = await server.exited

    expect({ code, signal }).toEqual({ code: 0, signal: null })
    const lines = server.output().trim().split('\n')
    expect(lines).toHaveLength(3)
    expect(lines[0]).toMatch(/^listening on /)
    expect(lines[1]).toBe('keepalive: SIGTERM received: reporting not ready; draining now')
    const report = REPORT.exec(lines[2]!)
    expect(report, `report line, got: ${lines[2]}`).not.toBeNull()
    // The client's pooled connection was idle: the drain closed it, nothing was cut.
    expect(report!.slice(1).map(Number)).toEqual([1, 0, 0])
  })
})
