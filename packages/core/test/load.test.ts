import { afterEach, describe, expect, it, vi } from 'vitest'
import { createLoadMonitor, createLoadSmoother, DELAY_FLOOR_MS, DELAY_SPAN_MS, delayToLoad, LOAD_STEP, SMOOTHING, type SignalSources } from '../src/load.js'
import { refTimers, watchTimers } from '../../../test/helpers/timers.js'

/** Feeds samples in order and returns every published value. */
function feed(samples: readonly number[], smoother = createLoadSmoother()): number[] {
  return samples.map((raw) => smoother.update(raw))
}

function changes(published: readonly number[]): number {
  let count = 0
  for (let i = 1; i < published.length; i++) if (published[i] !== published[i - 1]) count++
  return count
}

describe('createLoadSmoother', () => {
  it('averages each sample with the past (EWMA)', () => {
    expect(SMOOTHING).toBe(0.5)
    expect(feed([1, 1, 1, 1])).toEqual([0.5, 0.75, 0.875, 0.9375])
  })

  it('converges on a steady load and stays there', () => {
    const published = feed(Array.from({ length: 30 }, () => 0.8))
    const settled = published.slice(10)
    for (const load of settled) expect(Math.abs(load - 0.8)).toBeLessThan(LOAD_STEP)
    expect(changes(settled)).toBe(0)
  })

  it('does not flap for a signal oscillating around a value', () => {
    const oscillating = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? 0.55 : 0.65))
    const published = feed(oscillating)
    expect(changes(published)).toBeLessThanOrEqual(5) // the climb from 0
    expect(changes(published.slice(10))).toBe(0)
    expect(Math.abs(published.at(-1)! - 0.6)).toBeLessThan(LOAD_STEP)
    // Without the dead band the same input republishes on every sample.
    expect(changes(feed(oscillating, createLoadSmoother(SMOOTHING, 1e-9)))).toBeGreaterThan(90)
  })

  it('reaches exactly 1 under full load and exactly 0 once idle', () => {
    const up = feed(Array.from({ length: 6 }, () => 1))
    expect(up.at(-1)).toBe(1)
    expect(up.slice(0, -1).every((load) => load < 1)).toBe(true)
    const smoother = createLoadSmoother()
    feed(
      Array.from({ length: 10 }, () => 1),
      smoother,
    )
    const down = feed(
      Array.from({ length: 10 }, () => 0),
      smoother,
    )
    expect(down.at(-1)).toBe(0)
    expect(smoother.load).toBe(0)
  })

  it('clamps samples outside [0, 1] and treats NaN as 0', () => {
    expect(feed([5])).toEqual([0.5])
    expect(feed([-3])).toEqual([0])
    expect(feed([Number.NaN, 1])).toEqual([0, 0.5])
  })

  it('reports the published value through `load`', () => {
    const smoother = createLoadSmoother()
    expect(smoother.load).toBe(0)
    const published = smoother.update(0.6)
    expect(smoother.load).toBe(published)
  })
})

describe('delayToLoad', () => {
  it.each([
    [-5, 0],
    [0, 0],
    [DELAY_FLOOR_MS, 0],
    [DELAY_FLOOR_MS + DELAY_SPAN_MS / 2, 0.5],
    [DELAY_FLOOR_MS + DELAY_SPAN_MS, 1],
    [5_000, 1],
  ])('maps a p99 of %d ms to %d', (delayMs, load) => {
    expect(delayToLoad(delayMs)).toBeCloseTo(load, 10)
  })

  it('is linear between 10 ms and 200 ms', () => {
    expect(delayToLoad(29)).toBeCloseTo(0.1, 10)
    expect(delayToLoad(105)).toBeCloseTo(0.5, 10)
    expect(delayToLoad(181)).toBeCloseTo(0.9, 10)
  })
})

describe('createLoadMonitor', () => {
  function sources(overrides: Partial<SignalSources> = {}): SignalSources & { errors: Error[] } {
    const errors: Error[] = []
    return { open: () => 0, maxConnections: Infinity, user: null, onSignalError: (error) => errors.push(error), errors, ...overrides }
  }
  /** What the first sample publishes for a raw value. */
  const first = (raw: number): number => createLoadSmoother().update(raw)

  it('takes the busiest of the user signal and open connections', () => {
    expect(createLoadMonitor(1000, sources({ user: () => 0.3, open: () => 8, maxConnections: 10 }), () => {}).sample()).toBe(first(0.8))
    expect(createLoadMonitor(1000, sources({ user: () => 0.9, open: () => 2, maxConnections: 10 }), () => {}).sample()).toBe(first(0.9))
  })

  it('ignores open connections when there is no cap', () => {
    const open = vi.fn(() => 1_000_000)
    expect(createLoadMonitor(1000, sources({ open, user: () => 0.2 }), () => {}).sample()).toBe(first(0.2))
    expect(open).not.toHaveBeenCalled()
  })

  it('counts a blocked event loop as load once started', () => {
    const monitor = createLoadMonitor(60_000, sources(), () => {})
    monitor.start()
    try {
      const until = performance.now() + 60
      while (performance.now() < until) {
        // burn the loop: utilisation since start() is close to 1
      }
      expect(monitor.sample()).toBeGreaterThanOrEqual(first(0.8))
    } finally {
      monitor.stop()
    }
  })

  it('reports a throwing signal through onSignalError and counts it as 0', () => {
    const boom = new Error('boom')
    const s = sources({
      user: () => {
        throw boom
      },
    })
    expect(createLoadMonitor(1000, s, () => {}).sample()).toBe(0)
    expect(s.errors).toEqual([boom])
  })

  it('wraps a thrown non-Error in an Error', () => {
    const s = sources({
      user: () => {
        throw 'not an error'
      },
    })
    createLoadMonitor(1000, s, () => {}).sample()
    expect(s.errors).toHaveLength(1)
    expect(s.errors[0]).toBeInstanceOf(Error)
    expect(s.errors[0]!.message).toBe('not an error')
  })

  it.each([
    [undefined, 'keepalive: adaptive.signal() must return a number in [0, 1], got undefined'],
    [Number.NaN, 'keepalive: adaptive.signal() must return a number in [0, 1], got NaN'],
    [null, 'keepalive: adaptive.signal() must return a number in [0, 1], got null'],
  ])('reports a signal returning %s as a TypeError and counts it as 0', (value, message) => {
    const s = sources({ user: () => value as unknown as number })
    expect(createLoadMonitor(1000, s, () => {}).sample()).toBe(0)
    expect(s.errors).toHaveLength(1)
    expect(s.errors[0]).toBeInstanceOf(TypeError)
    expect(s.errors[0]!.message).toBe(message)
  })

  it('rejects a numeric string rather than coercing it', () => {
    const s = sources({ user: () => '0.9' as unknown as number })
    expect(createLoadMonitor(1000, s, () => {}).sample()).toBe(0)
    expect(s.errors[0]).toBeInstanceOf(TypeError)
  })

  it('keeps the other signals when the user signal fails', () => {
    const s = sources({
      user: () => {
        throw new Error('down')
      },
      open: () => 8,
      maxConnections: 10,
    })
    expect(createLoadMonitor(1000, s, () => {}).sample()).toBe(first(0.8))
  })

  it('clamps a user signal outside [0, 1] without reporting it', () => {
    const high = sources({ user: () => 7 })
    expect(createLoadMonitor(1000, high, () => {}).sample()).toBe(first(1))
    const low = sources({ user: () => -2 })
    expect(createLoadMonitor(1000, low, () => {}).sample()).toBe(0)
    expect([...high.errors, ...low.errors]).toEqual([])
  })

  it('calls onSample with each published load and exposes it as `load`', () => {
    const seen: number[] = []
    const monitor = createLoadMonitor(1000, sources({ user: () => 1 }), (load) => seen.push(load))
    monitor.sample()
    monitor.sample()
    expect(seen).toEqual([0.5, 0.75])
    expect(monitor.load).toBe(0.75)
  })

  describe('its timer', () => {
    afterEach(() => {
      vi.useRealTimers()
    })

    it('is one timer, re-armed after each sample and gone after stop()', () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
      const onSample = vi.fn()
      const monitor = createLoadMonitor(100, sources({ user: () => 0.5 }), onSample)
      expect(vi.getTimerCount()).toBe(0)
      monitor.start()
      monitor.start() // a second start adds nothing
      expect(vi.getTimerCount()).toBe(1)
      vi.advanceTimersByTime(99)
      expect(onSample).not.toHaveBeenCalled()
      vi.advanceTimersByTime(1)
      expect(onSample).toHaveBeenCalledTimes(1)
      expect(vi.getTimerCount()).toBe(1)
      vi.advanceTimersByTime(300)
      expect(onSample).toHaveBeenCalledTimes(4)
      monitor.stop()
      expect(vi.getTimerCount()).toBe(0)
      vi.advanceTimersByTime(1000)
      expect(onSample).toHaveBeenCalledTimes(4)
      monitor.stop() // stopping twice is harmless
    })

    it('does not keep the process alive and is destroyed by stop()', async () => {
      const timers = watchTimers()
      try {
        let sampled: () => void = () => {}
        const firstSample = new Promise<void>((resolve) => (sampled = resolve))
        const monitor = createLoadMonitor(20, sources(), () => sampled())
        const before = refTimers()
        timers.record(() => monitor.start())
        // One timer, unref()'d: it never holds the process open, so it is not an active resource.
        expect(timers.live).toBe(1)
        expect(refTimers()).toBe(before)
        await firstSample
        monitor.stop()
        await timers.destroyed
        expect(timers.live).toBe(0)
      } finally {
        timers.disable()
      }
    })
  })
})
