// Starts examples/prometheus/server.mjs as its own process, as a user would, serves requests on a
// real keep-alive connection and scrapes /metrics between them. The example imports the built
// packages: run `pnpm build` first (`pnpm test` does).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync } from 'node:fs'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Client } from 'undici'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))

const children = new Set<ChildProcessWithoutNullStreams>()
const clients = new Set<Client>()

beforeAll(() => {
  const missing = ['core', 'prometheus'].filter((p) => !existsSync(`${root}packages/${p}/dist/index.js`))
  if (missing.length > 0) throw new Error(`the example runs the built packages; run \`pnpm build\` first (missing dist of ${missing.join(', ')})`)
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

interface Running {
  url: string
  child: ChildProcessWithoutNullStreams
  exited: Promise<[number | null, NodeJS.Signals | null]>
}

async function start(): Promise<Running> {
  const child = spawn(process.execPath, ['examples/prometheus/server.mjs'], { cwd: root, env: { ...process.env, PORT: '0' } })
  children.add(child)
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  let output = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
  child.stdout.setEncoding('utf8')
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: string): void => {
      output += chunk
      const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(output)
      if (match === null) return
      child.stdout.off('data', onData)
      child.stdout.resume()
      resolve(match[1]!)
    }
    child.stdout.on('data', onData)
    void exited.then(([code, signal]) => reject(new Error(`examples/prometheus exited (${code ?? signal}) before listening:\n${output}`)))
  })
  return { url, child, exited }
}

function client(url: string): Client {
  const created = new Client(url, { pipelining: 1, keepAliveTimeoutThreshold: 0 })
  clients.add(created)
  return created
}

/** Parses Prometheus text exposition into `name{labels}` → value. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    const value = line.slice(at + 1)
    samples.set(line.slice(0, at), value === '+Inf' ? Infinity : Number(value))
  }
  return samples
}

async function scrape(scraper: Client): Promise<Map<string, number>> {
  const response = await scraper.request({ method: 'GET', path: '/metrics' })
  expect(response.statusCode).toBe(200)
  expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
  return parse(await response.body.text())
}

async function get(on: Client, reset = false): Promise<Record<string, string | string[] | undefined>> {
  const response = await on.request({ method: 'GET', path: '/', reset })
  expect(await response.body.text()).toBe('hello\n')
  return response.headers
}

describe('examples/prometheus/server.mjs', () => {
  it('serves /metrics whose counters and gauges move as requests are served and connections close', async () => {
    const server = await start()
    const scraper = client(server.url)

    // A scrape is itself a request: it is active while collected, and counted once it has finished.
    let samples = await scrape(scraper)
    expect(samples.get('keepalive_requests_total')).toBe(0)
    expect(samples.get('keepalive_connections{state="active"}')).toBe(1)
    expect(samples.get('keepalive_connections{state="idle"}')).toBe(0)
    expect(samples.get('keepalive_timeout_seconds')).toBe(5)
    expect(samples.get('keepalive_max_requests')).toBe(1000)
    expect(samples.get('keepalive_load_ratio')).toBe(0)
    expect(samples.get('keepalive_draining')).toBe(0)
    expect(samples.has('process_cpu_user_seconds_total')).toBe(true)

    const user = client(server.url)
    for (let i = 0; i < 3; i++) expect((await get(user))['keep-alive']).toBe(`timeout=5, max=${999 - i}`)
    samples = await scrape(scraper)
    expect(samples.get('keepalive_requests_total')).toBe(4)
    expect(samples.get('keepalive_connections{state="active"}')).toBe(1)
    expect(samples.get('keepalive_connections{state="idle"}')).toBe(1)
    expect(samples.get('keepalive_requests_per_connection_count')).toBe(0)

    // The fourth request asks for Connection: close; the server closes the connection after answering.
    const disconnected = once(user, 'disconnect')
    expect((await get(user, true)).connection).toBe('close')
    await disconnected
    samples = await scrape(scraper)
    expect(samples.get('keepalive_requests_total')).toBe(6)
    expect(samples.get('keepalive_connections{state="idle"}')).toBe(0)
    expect(samples.get('keepalive_connection_closes_total{reason="client"}')).toBe(1)
    expect(samples.get('keepalive_connection_closes_total{reason="idle_timeout"}')).toBe(0)
    expect(samples.get('keepalive_requests_per_connection_count')).toBe(1)
    expect(samples.get('keepalive_requests_per_connection_sum')).toBe(4)
    expect(samples.get('keepalive_requests_per_connection_bucket{le="2"}')).toBe(0)
    expect(samples.get('keepalive_requests_per_connection_bucket{le="5"}')).toBe(1)

    server.child.kill('SIGTERM')
    expect(await server.exited).toEqual([0, null])
  })
})
