import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'
import { describe, expect, it } from 'vitest'
import { createKeepAlive, type CloseEvent, type KeepAliveController, type KeepAliveOptions, type KeepAliveStats } from '@keepalive/core'
import { useResources, type Handler, type StartedServer } from './helpers/resources.js'
import { refTimers, watchTimers } from './helpers/timers.js'
import { connectionHeaders, fromHeaderObject, type ConnectionHeaders } from './helpers/wire.js'

const resources = useResources()

// ---- helpers -------------------------------------------------------------------------------

/** The `timeout=` a Keep-Alive header advertises. */
function advertisedTimeout(keepAlive: string): number {
  const match = /^timeout=(\d+)(?:, max=\d+)?$/.exec(keepAlive)
  if (match === null) throw new Error(`malformed Keep-Alive: ${keepAlive}`)
  return Number(match[1])
}

/** What the handler saw in stats() just before its response's headers were decided. */
interface Policy {
  timeout: number
  max: number | null
  load: number
}

interface Reply {
  headers: ConnectionHeaders
  policy: Policy
}

/** Replies with the policy in force as the response is written: its headers are decided in the same tick. */
function reportPolicy(ka: KeepAliveController, res: http.ServerResponse): void {
  const { timeout, max, load } = ka.stats()
  res.end(JSON.stringify({ timeout, max, load } satisfies Policy))
}

async function get(pool: Pool, path = '/'): Promise<Reply> {
  const { headers, body } = await pool.request({ path, method: 'GET' })
  return { headers: connectionHeaders(fromHeaderObject(headers)), policy: (await body.json()) as Policy }
}

/** Every response must advertise exactly the policy it was decided under; never Keep-Alive beside close. */
function expectConsistent({ headers, policy }: Reply): void {
  if (headers.connection === 'close') {
    expect(headers.keepAlive).toBeNull()
    return
  }
  expect(headers.connection).toBe('keep-alive')
  expect(advertisedTimeout(headers.keepAlive!)).toBe(Math.floor(policy.timeout))
}

/** Resolves at the first 'load' event (or now) where the stats satisfy `ready`; gives up with the last stats. */
function until(ka: KeepAliveController, ready: (stats: KeepAliveStats) => boolean, what: string, ms = 20_000): Promise<KeepAliveStats> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const stats = ka.stats()
      if (!ready(stats)) return
      stop()
      resolve(stats)
    }
    const timer = setTimeout(() => {
      stop()
      reject(new Error(`no load sample gave ${what} within ${ms} ms; last stats: ${JSON.stringify(ka.stats())}`))
    }, ms)
    const stop = (): void => {
      clearTimeout(timer)
      ka.off('load', check)
    }
    ka.on('load', check)
    check()
  })
}

function nextClose(ka: KeepAliveController, reason: CloseEvent['reason']): Promise<CloseEvent> {
  return new Promise((resolve) => {
    const listener = (event: CloseEvent): void => {
      if (event.reason !== reason) return
      ka.off('close', listener)
      resolve(event)
    }
    ka.on('close', listener)
  })
}

/** Keeps the event loop busy, as a CPU-bound handler does. */
function burn(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // spin
  }
}

/** The linear scaling of docs/architecture.md §8: configured value up to `from`, floor at load 1. */
const scaled = (high: number, low: number, load: number, from: number): number => (load <= from ? high : high - ((high - low) * (load - from)) / (1 - from))

interface Started extends StartedServer {
  ka: KeepAliveController
  /** An undici Pool to the server, destroyed after the test. */
  pool(connections: number): Pool
}

/** By default every response reports the policy it was decided under. */
async function start(options: KeepAliveOptions, handler: Handler = (_req, res, ka) => reportPolicy(ka, res)): Promise<Started> {
  const started = await resources.startServer({ grace: 0.2, ...options }, handler)
  return {
    ...started,
    ka: started.controller,
    pool: (connections) => resources.add(new Pool(started.url, { connections }), (pool) => pool.destroy()),
  }
}

// ---- tests ---------------------------------------------------------------------------------

describe('adaptive: load from a CPU-bound handler', () => {
  it('shrinks the advertised timeout while the handler burns CPU, and restores it once the burn stops', async () => {
    let burning = true
    const { ka, pool } = await start({ timeout: 5, adaptive: { interval: 0.05 } }, (req, res, ka) => {
      if (burning && req.url === '/burn') burn(20)
      reportPolicy(ka, res)
    })
    const clients = pool(4)
    const replies: Reply[] = []
    let shrunk: Reply | null = null
    let gaveUp = false
    const deadline = setTimeout(() => (gaveUp = true), 20_000)
    try {
      // Four clients keep the handler busy until a response advertises less than the configured 5 s.
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (shrunk === null && !gaveUp) {
            const reply = await get(clients, '/burn')
            replies.push(reply)
            if (reply.headers.keepAlive !== null && advertisedTimeout(reply.headers.keepAlive) < 5) shrunk = reply
          }
        }),
      )
    } finally {
      clearTimeout(deadline)
    }
    expect(shrunk, `no shrunk timeout in ${replies.length} responses; stats: ${JSON.stringify(ka.stats())}`).not.toBeNull()
    expect(shrunk!.policy.load).toBeGreaterThan(0.5)
    for (const reply of replies) expectConsistent(reply)

    burning = false
    const recovered = await until(ka, (stats) => stats.timeout === 5, 'the configured timeout again')
    expect(recovered.load).toBeLessThanOrEqual(0.5)
    const after = await get(clients)
    expectConsistent(after)
    expect(after.headers).toEqual({ connection: 'keep-alive', keepAlive: expect.stringMatching(/^timeout=5, max=\d+$/) as unknown })
  })
})

describe('adaptive: a user signal', () => {
  it('sheds keep-alive at full load: Connection: close, no Keep-Alive, counted as shed', async () => {
    let signal = 1
    const { ka, pool } = await start({ adaptive: { signal: () => signal, interval: 0.05 } })
    expect(await until(ka, (stats) => stats.load === 1, 'load 1')).toMatchObject({ load: 1, timeout: 1, max: 10 })

    const shed = nextClose(ka, 'shed')
    const first = await get(pool(1))
    expect(first.headers).toEqual({ connection: 'close', keepAlive: null })
    await shed
    expect(ka.stats().closes.shed).toBe(1)

    // Shedding ends once the load has fallen well below shedAt.
    signal = 0
    await until(ka, (stats) => stats.load <= 0.5, 'load at or below 0.5')
    const reply = await get(pool(1))
    expect(reply.headers.connection).toBe('keep-alive')
    expectConsistent(reply)
  })

  // A response's keep-alive fields are written as its request starts (before Express swaps its
  // prototype); a load sample that lands while the request runs must still reach its headers.
  it('advertises the numbers in force as the headers go out, not those of the request start', async () => {
    let signal = 0
    const started: (() => void)[] = []
    const { pool } = await start({ timeout: 10, max: 100, adaptive: { signal: () => signal, interval: 0.02 } }, (req, res, ka) => {
      if (req.url !== '/slow') return reportPolicy(ka, res)
      for (const resolve of started.splice(0)) resolve()
      // Answered once a sample at the new load has rescaled the policy.
      void until(ka, (stats) => stats.timeout < 10 && stats.max! < 100, 'a scaled timeout and max').then(() => reportPolicy(ka, res))
    })
    const clients = pool(1)
    const before = await get(clients)
    expect(before.headers).toEqual({ connection: 'keep-alive', keepAlive: 'timeout=10, max=99' })
    const running = new Promise<void>((resolve) => started.push(resolve))
    const reply = get(clients, '/slow')
    await running
    signal = 0.8
    const after = await reply
    expectConsistent(after)
    expect(after.policy.timeout).toBeLessThan(10)
    expect(after.policy.max).toBeLessThan(100)
    // The second request on the connection: max= is what is left of the scaled max after it.
    expect(after.headers).toEqual({ connection: 'keep-alive', keepAlive: `timeout=${Math.floor(after.policy.timeout)}, max=${after.policy.max! - 2}` })
  })

  it('does not flap for a signal alternating between 0.93 and 0.97 around shedAt 0.95', async () => {
    let mode: 'idle' | 'full' | 'alternating' = 'idle'
    let alternations = 0
    const sampled: (() => void)[] = []
    const signal = (): number => {
      // Resolved here, the waiting test continues once this sample has been applied to the policy.
      for (const resolve of sampled.splice(0)) resolve()
      if (mode === 'idle') return 0
      if (mode === 'full') return 1
      return ++alternations % 2 === 1 ? 0.93 : 0.97
    }
    const { ka, pool } = await start({ adaptive: { signal, shedAt: 0.95, interval: 0.02 } })
    const clients = pool(1)

    /** One response after each of the next `count` samples: is it closing? */
    async function observe(count: number): Promise<boolean[]> {
      const closing: boolean[] = []
      for (let i = 0; i < count; i++) {
        await new Promise<void>((resolve) => sampled.push(resolve))
        const reply = await get(clients)
        expectConsistent(reply)
        closing.push(reply.headers.connection === 'close')
      }
      return closing
    }
    const transitions = (closing: boolean[]): number => closing.slice(1).filter((c, i) => c !== closing[i]).length

    // From idle, the alternating signal turns shedding on at most once and never back off.
    await until(ka, (stats) => stats.load === 0, 'load 0')
    mode = 'alternating'
    const rising = await observe(30)
    expect(rising[0]).toBe(false)
    expect(transitions(rising), `closing: ${rising.join(' ')}`).toBeLessThanOrEqual(1)

    // Once shedding, the same signal keeps it on: hysteresis holds it down to shedAt - 0.05.
    mode = 'full'
    await until(ka, (stats) => stats.load === 1, 'load 1')
    alternations = 0
    mode = 'alternating'
    const shedding = await observe(30)
    expect(shedding.every(Boolean), `closing: ${shedding.join(' ')}`).toBe(true)
    expect(ka.stats().load).toBeGreaterThanOrEqual(0.9)
  })

  it('shows the load and the effective timeout and max in stats()', async () => {
    const from = 0.5
    const { ka, pool } = await start({ timeout: 5, max: 100, adaptive: { signal: () => 0.75, from, minTimeout: 1, minMax: 10, interval: 0.05 } })
    const seen: [number, KeepAliveStats][] = []
    ka.on('load', (load) => seen.push([load, ka.stats()]))
    const stats = await until(ka, (s) => s.load > 0.7, 'load above 0.7')
    expect(stats.timeout).toBeLessThan(5)
    expect(stats.max).toBeLessThan(100)
    expect(JSON.parse(JSON.stringify(stats))).toEqual(stats)
    // Every published load came with the timeout and max of the linear scaling, from 5 s / 100 down to 1 s / 10.
    expect(seen.length).toBeGreaterThanOrEqual(3)
    for (const [load, at] of seen) {
      expect(at.load).toBe(load)
      expect(at.timeout).toBeCloseTo(scaled(5, 1, load, from), 9)
      expect(at.max).toBe(Math.max(10, Math.round(scaled(100, 10, load, from))))
    }

    // The wire says what stats() says.
    const reply = await get(pool(1))
    expectConsistent(reply)
    expect(reply.headers.keepAlive).toBe(`timeout=${Math.floor(reply.policy.timeout)}, max=${reply.policy.max! - 1}`)
  })
})

describe('adaptive: the sampler', () => {
  it('stops when the server closes, leaving no timer behind', async () => {
    const before = refTimers()
    let sampledTwice: () => void = () => {}
    const twoSamples = new Promise<void>((resolve) => (sampledTwice = resolve))
    let samples = 0
    const signal = (): number => {
      if (++samples === 2) sampledTwice()
      return 0
    }
    const ka = createKeepAlive({ grace: 0.2, adaptive: { interval: 0.05, signal } })
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      reportPolicy(ka, res)
    })

    // attach() creates two timers, the sampler's and the idle sweep's: record them and wait for their destruction.
    const timers = watchTimers()
    try {
      timers.record(() => ka.attach(server))
      expect(timers.live).toBe(2)

      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      const { port } = server.address() as AddressInfo
      const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 })
      expectConsistent(await get(pool))
      await twoSamples // the sampler runs
      await pool.destroy()

      await new Promise((resolve) => server.close(resolve))
      await timers.destroyed // cleared, never to fire again
      await ka.shutdown({ timeout: 1 })
      expect(timers.live).toBe(0)
      expect(refTimers()).toBeLessThanOrEqual(before)
    } finally {
      timers.disable()
      if (server.listening) server.close()
    }
  })
})
