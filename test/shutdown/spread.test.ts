// Closes spread over time so clients do not reconnect in one burst (a gradual drain, maxAge
// jitter), and upgraded sockets in a drain (docs/architecture.md §7).
import http from 'node:http'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { createKeepAlive, type KeepAliveOptions, type ShutdownReport } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { useResources } from '../helpers/resources.js'
import { connect, expectHeaders, saysClose, type RawClient } from '../helpers/wire.js'

const resources = useResources()

async function start(options: KeepAliveOptions, onUpgrade?: (socket: Socket) => void) {
  const ka = createKeepAlive(options)
  const server = http.createServer((req, res) => {
    ka.handle(req, res)
    res.end('ok')
  })
  if (onUpgrade !== undefined) {
    server.on('upgrade', (_req, socket: Socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n')
      onUpgrade(socket)
    })
  }
  ka.attach(server)
  const port = await resources.listen(server)
  return { ka, port }
}

async function clients(port: number, n: number): Promise<RawClient[]> {
  const list: RawClient[] = []
  for (let i = 0; i < n; i++) list.push(resources.add(await connect(port), (c) => c.destroy()))
  return list
}

/** The largest number of times falling in any one `width` ms bucket. */
function peak(times: readonly number[], width: number): number {
  const buckets = new Map<number, number>()
  for (const t of times) buckets.set(Math.floor(t / width), (buckets.get(Math.floor(t / width)) ?? 0) + 1)
  return Math.max(...buckets.values())
}

describe('a gradual drain', () => {
  it('closes idle connections one by one over the window instead of all at once, losing nothing', async () => {
    const { ka, port } = await start({ drainQuiet: 0.05 })
    const idle = await clients(port, 24)
    for (const client of idle) expectHeaders(await client.request('/'), { connection: 'keep-alive' })
    const begun = performance.now()
    const report = await ka.shutdown({ timeout: 5, gradual: 1.2 })
    const closedAt = (await Promise.all(idle.map((c) => c.closed))).map((t) => t - begun)
    expect(report).toMatchObject({ closedIdle: 24, forced: 0, upgraded: 0 })
    // 24 turns spread uniformly over 1.2 s: a 100 ms bucket holds about 2 of them, never all.
    expect(peak(closedAt, 100)).toBeLessThanOrEqual(10)
    expect(Math.max(...closedAt) - Math.min(...closedAt)).toBeGreaterThan(500)
    expect(Math.max(...closedAt)).toBeLessThan(2500)
  })

  it('keeps answering on a connection until its turn, then answers with Connection: close', async () => {
    // A connection quiet for drainQuiet when its turn comes is closed as idle, which a loaded machine
    // can make of one whose client is slow to send its first request: the quiet period here is long
    // enough that only back-to-back requests are seen.
    const { ka, port } = await start({ drainQuiet: 0.25 })
    const busy = await clients(port, 8)
    const shutdown = ka.shutdown({ timeout: 5, gradual: 1 })
    let kept = 0
    // Back-to-back requests on every connection until each is told to close.
    await Promise.all(
      busy.map(async (client) => {
        for (;;) {
          const response = await client.request('/')
          expect(response.status).toBe(200)
          if (saysClose(response)) return
          kept++
        }
      }),
    )
    expect(kept).toBeGreaterThan(0)
    expect((await shutdown).forced).toBe(0)
  })

  it('rejects a window longer than the deadline', async () => {
    const { ka } = await start({})
    expect(() => ka.shutdown({ timeout: 1, gradual: 2 })).toThrow(
      'keepalive: "shutdown.gradual" must be at most shutdown.timeout (1) so every connection is told to close before the deadline, got 2',
    )
  })
})

describe('maxAge jitter', () => {
  /** Requests every 50 ms on `n` connections until each is closed for its age; ms from the start to each close. */
  async function recycleTimes(options: KeepAliveOptions, n: number): Promise<number[]> {
    const { port } = await start(options)
    const list = await clients(port, n)
    const begun = performance.now()
    return Promise.all(
      list.map(async (client) => {
        for (;;) {
          const response = await client.request('/')
          if (saysClose(response)) return response.receivedAt - begun
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      }),
    )
  }

  it('spreads the recycling of connections opened together', async () => {
    const [still, jittered] = await Promise.all([recycleTimes({ maxAge: 1, maxAgeJitter: 0 }, 16), recycleTimes({ maxAge: 1, maxAgeJitter: 0.4 }, 16)])
    const spread = (times: number[]): number => Math.max(...times) - Math.min(...times)
    // Without jitter all 16 reach 1 s within a couple of request intervals; with ±40 % they spread over 0.6 to 1.4 s.
    expect(spread(still)).toBeLessThan(300)
    expect(spread(jittered)).toBeGreaterThan(300)
    expect(Math.min(...jittered)).toBeGreaterThanOrEqual(550)
    expect(Math.max(...jittered)).toBeLessThan(1400 + 400)
  })
})

describe('upgraded sockets in a drain', () => {
  async function upgraded(port: number): Promise<RawClient> {
    const client = resources.add(await connect(port), (c) => c.destroy())
    client.send('GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n')
    expect((await client.read()).status).toBe(101)
    return client
  }

  it("are announced with an 'upgraded' event; closed by the application, the drain ends at once", async () => {
    const { ka, port } = await start({}, () => {})
    const client = await upgraded(port)
    ka.on('upgraded', ({ socket }) => socket.end())
    const report = await ka.shutdown({ timeout: 5 })
    await client.closed
    expect(report).toMatchObject({ forced: 0, upgraded: 0 })
    expect(report.elapsed).toBeLessThan(1)
  })

  it('left open by the application, are destroyed at the deadline and counted apart from forced', async () => {
    const { ka, port } = await start({}, () => {})
    const client = await upgraded(port)
    const seen: Socket[] = []
    ka.on('upgraded', ({ socket }) => seen.push(socket))
    const report: ShutdownReport = await ka.shutdown({ timeout: 0.3 })
    await client.closed
    expect(seen).toHaveLength(1)
    expect(report).toMatchObject({ forced: 0, upgraded: 1 })
  })
})
