// Starts examples/prometheus/server.mjs as its own process, as a user would, serves requests on a
// real keep-alive connection and scrapes /metrics between them. The example imports the built
// packages: run `pnpm build` first (`pnpm test` does).
import { once } from 'node:events'
import type { Client } from 'undici'
import { describe, expect, it } from 'vitest'
import { useExamples } from '../../test/helpers/example.js'

const { start, client } = useExamples(['core', 'prometheus'])

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

/** Checks the named samples of a scrape, each to exactly the value given. */
function expectSamples(samples: Map<string, number>, expected: Readonly<Record<string, number>>): void {
  expect(Object.fromEntries(Object.keys(expected).map((name) => [name, samples.get(name)]))).toEqual(expected)
}

async function get(on: Client, reset = false): Promise<Record<string, string | string[] | undefined>> {
  const response = await on.request({ method: 'GET', path: '/', reset })
  expect(await response.body.text()).toBe('hello\n')
  return response.headers
}

describe('examples/prometheus/server.mjs', () => {
  it('serves /metrics whose counters and gauges move as requests are served and connections close', async () => {
    const server = await start('prometheus')
    const scraper = client(server.url)

    // A scrape is itself a request: it is active while collected, and counted once it has finished.
    let samples = await scrape(scraper)
    expectSamples(samples, {
      keepalive_requests_total: 0,
      'keepalive_connections{state="active"}': 1,
      'keepalive_connections{state="idle"}': 0,
      keepalive_timeout_seconds: 5,
      keepalive_max_requests: 1000,
      keepalive_load_ratio: 0,
      keepalive_draining: 0,
    })
    expect(samples.has('process_cpu_user_seconds_total')).toBe(true)

    const user = client(server.url)
    for (let i = 0; i < 3; i++) expect((await get(user))['keep-alive']).toBe(`timeout=5, max=${999 - i}`)
    samples = await scrape(scraper)
    expectSamples(samples, {
      keepalive_requests_total: 4,
      'keepalive_connections{state="active"}': 1,
      'keepalive_connections{state="idle"}': 1,
      keepalive_requests_per_connection_count: 0,
    })

    // The fourth request asks for Connection: close; the server closes the connection after answering.
    const disconnected = once(user, 'disconnect')
    expect((await get(user, true)).connection).toBe('close')
    await disconnected
    samples = await scrape(scraper)
    expectSamples(samples, {
      keepalive_requests_total: 6,
      'keepalive_connections{state="idle"}': 0,
      'keepalive_connection_closes_total{reason="client"}': 1,
      'keepalive_connection_closes_total{reason="idle_timeout"}': 0,
      keepalive_requests_per_connection_count: 1,
      keepalive_requests_per_connection_sum: 4,
      'keepalive_requests_per_connection_bucket{le="2"}': 0,
      'keepalive_requests_per_connection_bucket{le="5"}': 1,
    })

    server.child.kill('SIGTERM')
    expect(await server.exited).toEqual([0, null])
  })
})
