// Reconnect storms (#16): 200 keep-alive clients, one connection each, that reconnect as soon as
// the server tells them to close (or closes on them). A drain sends every one of them elsewhere; a
// shared maxAge recycles connections opened together. Measured: the peak number of new connections
// in any 100 ms on the server they reconnect to, with a gradual drain against an immediate one, and
// with the default maxAge jitter against none. Every request must still be answered.
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { createKeepAlive, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { useResources } from '../helpers/resources.js'
import { connect, saysClose, type RawClient } from '../helpers/wire.js'

const resources = useResources()

const CLIENTS = 200
/** A client's pause between a response and its next request: random, and shorter than drainQuiet (0.2 s). */
const THINK_MS = [20, 100] as const

/** A node:http server under a controller that records when each connection arrived (ms, performance.now()). */
async function start(options: KeepAliveOptions): Promise<{ ka: KeepAliveController; port: number; arrivals: number[] }> {
  const ka = createKeepAlive(options)
  const arrivals: number[] = []
  const server = http.createServer((req, res) => {
    ka.handle(req, res)
    res.end('ok')
  })
  server.on('connection', () => arrivals.push(performance.now()))
  ka.attach(server)
  return { ka, port: await resources.listen(server), arrivals }
}

/** The largest number of `times` in any window [t, t + width) (a sliding window, not fixed buckets). */
function peak(times: readonly number[], width = 100): number {
  const sorted = [...times].sort((a, b) => a - b)
  let best = 0
  for (let lo = 0, hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi]! - sorted[lo]! >= width) lo++
    best = Math.max(best, hi - lo + 1)
  }
  return best
}

interface Tally {
  /** Clients that have had their first response. */
  warm: number
  sent: number
  answered: number
  lost: string[]
}

/**
 * One client: requests on its connection to `first` with a random pause after each response; when a
 * response says `Connection: close`, or the server closed the connection while it was idle, it opens
 * a new connection to `next()` and goes on there. Ends after `extra` requests on a replacement.
 */
async function client(first: number, next: () => number, tally: Tally, extra = 2): Promise<void> {
  let conn: RawClient = resources.add(await connect(first), (c) => c.destroy())
  let replaced = 0
  let onReplacement = 0
  let warm = false
  const reconnect = async (): Promise<void> => {
    void conn.destroy()
    conn = resources.add(await connect(next()), (c) => c.destroy())
    replaced++
  }
  while (replaced === 0 || onReplacement < extra) {
    if (conn.isClosed) {
      await reconnect() // closed by the server while idle: nothing was sent on it
      continue
    }
    tally.sent++
    try {
      const response = await conn.request('/')
      if (response.status !== 200) throw new Error(`status ${response.status}`)
      tally.answered++
      if (!warm) {
        warm = true
        tally.warm++
      }
      if (replaced > 0) onReplacement++
      if (saysClose(response)) await reconnect()
    } catch (error) {
      tally.lost.push(error instanceof Error ? error.message : String(error))
      await reconnect()
    }
    await sleep(THINK_MS[0] + Math.random() * (THINK_MS[1] - THINK_MS[0]))
  }
}

describe('reconnect peaks', () => {
  /** 200 clients on A, A drains with `gradual`, every client moves to B: B's peak per 100 ms and the tally. */
  async function drainTo(gradual: number): Promise<{ peak: number; moved: number; tally: Tally; elapsed: number }> {
    const a = await start({})
    const b = await start({})
    const tally: Tally = { warm: 0, sent: 0, answered: 0, lost: [] }
    let drained = false
    const clients = Array.from({ length: CLIENTS }, () => client(a.port, () => b.port, tally))
    // Every client on A has had a response before the drain starts.
    while (tally.warm < CLIENTS) await sleep(THINK_MS[0])
    const begun = performance.now()
    const report = a.ka.shutdown({ timeout: 10, gradual }).then((r) => {
      drained = true
      return r
    })
    await Promise.all(clients)
    const { forced } = await report
    expect(drained).toBe(true)
    expect(forced).toBe(0)
    return { peak: peak(b.arrivals), moved: b.arrivals.length, tally, elapsed: performance.now() - begun }
  }

  it('a gradual drain spreads the reconnects to the next server at least 5× thinner, losing no request', { timeout: 40_000 }, async () => {
    const immediate = await drainTo(0)
    const gradual = await drainTo(4)
    console.log(
      `${CLIENTS} clients reconnecting to a second server, new connections in its busiest 100 ms: ` +
        `immediate drain ${immediate.peak}, gradual drain (4 s) ${gradual.peak}; ` +
        `requests answered ${immediate.tally.answered} / ${gradual.tally.answered}, lost ${immediate.tally.lost.length} / ${gradual.tally.lost.length}`,
    )
    for (const run of [immediate, gradual]) {
      expect(run.tally.lost).toEqual([])
      expect(run.tally.answered).toBe(run.tally.sent)
      expect(run.moved).toBe(CLIENTS)
    }
    // Every client is told to close within one pause (≤ 100 ms) of an immediate drain.
    expect(immediate.peak).toBeGreaterThan(CLIENTS / 3)
    expect(gradual.elapsed).toBeGreaterThan(3000)
    expect(immediate.peak).toBeGreaterThanOrEqual(5 * gradual.peak)
  })

  /** 200 connections opened together on one server with maxAge 3 s: the peak of their replacements per 100 ms. */
  async function recycle(maxAgeJitter: number | undefined): Promise<{ peak: number; spread: number; tally: Tally }> {
    const options: KeepAliveOptions = { maxAge: 3 }
    if (maxAgeJitter !== undefined) options.maxAgeJitter = maxAgeJitter
    const s = await start(options)
    const tally: Tally = { warm: 0, sent: 0, answered: 0, lost: [] }
    await Promise.all(Array.from({ length: CLIENTS }, () => client(s.port, () => s.port, tally, 1)))
    const replacements = s.arrivals.slice(CLIENTS)
    expect(replacements).toHaveLength(CLIENTS)
    return { peak: peak(replacements), spread: Math.max(...replacements) - Math.min(...replacements), tally }
  }

  it('maxAge jitter (default ±10 %) spreads the recycling of 200 connections opened together', { timeout: 40_000 }, async () => {
    const still = await recycle(0)
    const jittered = await recycle(undefined)
    console.log(
      `${CLIENTS} connections reaching maxAge 3 s together, reconnects in the busiest 100 ms: ` +
        `maxAgeJitter 0 → ${still.peak} (over ${Math.round(still.spread)} ms), default → ${jittered.peak} (over ${Math.round(jittered.spread)} ms)`,
    )
    for (const run of [still, jittered]) {
      expect(run.tally.lost).toEqual([])
      expect(run.tally.answered).toBe(run.tally.sent)
    }
    // ±10 % of 3 s spreads them over about 600 ms instead of one pause: at most half the peak.
    expect(jittered.spread).toBeGreaterThan(400)
    expect(jittered.peak * 2).toBeLessThanOrEqual(still.peak)
  })
})
