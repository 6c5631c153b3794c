import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { resolveOptions } from '../src/options.js'
import { applyLoad, closeReason, initialPolicy, nextShedding, scaleMax, scaleTimeoutMs, SHED_HYSTERESIS, type PolicyState } from '../src/policy.js'
import type { KeepAliveOptions } from '../src/types.js'

const options = (input: KeepAliveOptions) => resolveOptions(input)

function state(overrides: Partial<PolicyState> = {}): PolicyState {
  return { timeoutMs: 5000, max: 1000, shedding: false, draining: false, drainStartMs: 0, drainWindowMs: 0, overCap: false, ...overrides }
}

describe('closeReason', () => {
  const o = options({ max: 3, maxAge: 10 })

  it('keeps a connection that is under every limit', () => {
    expect(closeReason(1, 0, state({ max: 3 }), o)).toBeNull()
    expect(closeReason(2, 9_999, state({ max: 3 }), o)).toBeNull()
  })

  it('closes on the max-th response, counting requests in total', () => {
    expect(closeReason(2, 0, state({ max: 3 }), o)).toBeNull()
    expect(closeReason(3, 0, state({ max: 3 }), o)).toBe('maxRequests')
    expect(closeReason(4, 0, state({ max: 3 }), o)).toBe('maxRequests')
  })

  it('uses the current, load-scaled max rather than the configured one', () => {
    const big = options({ max: 1000 })
    expect(closeReason(10, 0, state({ max: 10 }), big)).toBe('maxRequests')
    expect(closeReason(10, 0, state({ max: 1000 }), big)).toBeNull()
  })

  it('closes every response when the timeout is 0 (keep-alive off), counted as maxRequests', () => {
    expect(closeReason(1, 0, state({ timeoutMs: 0 }), options({ timeout: 0 }))).toBe('maxRequests')
  })

  it('closes once the connection has reached maxAge', () => {
    expect(closeReason(1, 9_999, state(), o)).toBeNull()
    expect(closeReason(1, 10_000, state(), o)).toBe('maxAge')
    expect(closeReason(1, 60_000, state(), o)).toBe('maxAge')
    expect(closeReason(1, Number.MAX_SAFE_INTEGER, state(), options({}))).toBeNull()
  })

  it('closes while shedding (shed) and while over the connection cap (evicted)', () => {
    expect(closeReason(1, 0, state({ shedding: true }), o)).toBe('shed')
    expect(closeReason(1, 0, state({ overCap: true }), o)).toBe('evicted')
  })

  it('closes every response while draining', () => {
    expect(closeReason(1, 0, state({ draining: true }), o)).toBe('drain')
  })

  it('orders the reasons: drain, then maxRequests, then maxAge, then evicted, then shed', () => {
    const all = { draining: true, max: 3, shedding: true, overCap: true }
    expect(closeReason(3, 10_000, state(all), o)).toBe('drain')
    expect(closeReason(3, 10_000, state({ ...all, draining: false }), o)).toBe('maxRequests')
    expect(closeReason(2, 10_000, state({ ...all, draining: false }), o)).toBe('maxAge')
    expect(closeReason(2, 0, state({ ...all, draining: false }), o)).toBe('evicted')
    expect(closeReason(2, 0, state({ ...all, draining: false, overCap: false }), o)).toBe('shed')
    expect(closeReason(1, 0, state({ timeoutMs: 0, shedding: true }), o)).toBe('maxRequests')
  })
})

describe('scaleTimeoutMs and scaleMax', () => {
  const o = options({ timeout: 5, max: 1000, adaptive: { from: 0.5, minTimeout: 1, minMax: 10 } })

  it('keep the configured values up to `from`', () => {
    for (const load of [0, 0.25, 0.5]) {
      expect(scaleTimeoutMs(load, o)).toBe(5000)
      expect(scaleMax(load, o)).toBe(1000)
    }
  })

  it('reach the floors at load 1 and stay there above it', () => {
    expect(scaleTimeoutMs(1, o)).toBe(1000)
    expect(scaleMax(1, o)).toBe(10)
    expect(scaleTimeoutMs(1.5, o)).toBe(1000)
    expect(scaleMax(1.5, o)).toBe(10)
  })

  it('are linear in between', () => {
    expect(scaleTimeoutMs(0.75, o)).toBe(3000)
    expect(scaleMax(0.75, o)).toBe(505)
    expect(scaleTimeoutMs(0.625, o)).toBe(4000)
    expect(scaleTimeoutMs(0.875, o)).toBe(2000)
  })

  it('round max to a whole number of requests', () => {
    const small = options({ max: 100, adaptive: { minMax: 10 } })
    expect(scaleMax(0.75, small)).toBe(55)
    expect(scaleMax(0.51, small)).toBe(98)
    expect(Number.isInteger(scaleMax(0.6123, small))).toBe(true)
  })

  it('follow a custom `from`', () => {
    const late = options({ timeout: 10, adaptive: { from: 0.8, shedAt: 0.9, minTimeout: 2 } })
    expect(scaleTimeoutMs(0.8, late)).toBe(10_000)
    expect(scaleTimeoutMs(0.9, late)).toBeCloseTo(6000, 6)
    expect(scaleTimeoutMs(1, late)).toBe(2000)
  })

  it('with from = 1 never scale', () => {
    const never = options({ adaptive: { from: 1, shedAt: 1 } })
    expect(scaleTimeoutMs(1, never)).toBe(5000)
    expect(scaleMax(1, never)).toBe(1000)
  })

  it('leave the configured values alone without the adaptive policy', () => {
    const fixed = options({ timeout: 5, max: 7 })
    expect(scaleTimeoutMs(1, fixed)).toBe(5000)
    expect(scaleMax(1, fixed)).toBe(7)
  })

  it('keep a timeout of 0 at 0 at any load', () => {
    const off = options({ timeout: 0, adaptive: true })
    for (const load of [0, 0.75, 1]) expect(scaleTimeoutMs(load, off)).toBe(0)
  })

  it('scale an unlimited max from 1000 (or 100 × minMax) once load passes `from`', () => {
    const unlimited = options({ max: Infinity, adaptive: { minMax: 10 } })
    expect(scaleMax(0.5, unlimited)).toBe(Infinity)
    expect(scaleMax(0.75, unlimited)).toBe(505)
    expect(scaleMax(1, unlimited)).toBe(10)
    const wide = options({ max: Infinity, adaptive: { minMax: 20 } })
    expect(scaleMax(0.75, wide)).toBe(1010)
    expect(scaleMax(1, wide)).toBe(20)
  })

  it('never rise with load and stay between floor and configured value', () => {
    const load = fc.double({ min: 0, max: 1.5, noNaN: true })
    const config = fc.record({
      timeout: fc.integer({ min: 1, max: 600 }),
      max: fc.oneof(fc.integer({ min: 1, max: 100_000 }), fc.constant(Infinity)),
      from: fc.double({ min: 0, max: 1, noNaN: true }),
    })
    fc.assert(
      fc.property(config, load, load, ({ timeout, max, from }, a, b) => {
        const o2 = options({ timeout, max, adaptive: { from, shedAt: 1, minTimeout: 0.5, minMax: 1 } })
        const [low, high] = a <= b ? [a, b] : [b, a]
        expect(scaleTimeoutMs(high, o2)).toBeLessThanOrEqual(scaleTimeoutMs(low, o2))
        expect(scaleMax(high, o2)).toBeLessThanOrEqual(scaleMax(low, o2))
        for (const x of [a, b]) {
          expect(scaleTimeoutMs(x, o2)).toBeGreaterThanOrEqual(500)
          expect(scaleTimeoutMs(x, o2)).toBeLessThanOrEqual(timeout * 1000)
          expect(scaleMax(x, o2)).toBeGreaterThanOrEqual(1)
          expect(scaleMax(x, o2)).toBeLessThanOrEqual(max)
          expect(Number.isNaN(scaleMax(x, o2))).toBe(false)
        }
      }),
    )
  })
})

describe('behind a proxy with the adaptive policy', () => {
  // Regression: behind { idleTimeout: 60 } at load 0.9 used to advertise timeout=14, under the
  // proxy's own idle timeout: the 502 race `behind` exists to prevent (ALB and nginx ignore the header).
  it('never scales the timeout to or below behind.idleTimeout, at any load, by default', () => {
    const o = options({ behind: { idleTimeout: 60 }, adaptive: true })
    for (const load of [0, 0.5, 0.9, 0.95, 1]) expect(scaleTimeoutMs(load, o)).toBe(65_000)
    expect(scaleMax(0.9, o)).toBeLessThan(1000) // load lowers max= instead
  })

  it('scales down to a minTimeout above the proxy and no further', () => {
    const o = options({ behind: { idleTimeout: 60 }, timeout: 120, adaptive: { minTimeout: 61 } })
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1.5, noNaN: true }), (load) => {
        expect(scaleTimeoutMs(load, o)).toBeGreaterThan(60_000)
      }),
    )
    expect(scaleTimeoutMs(1, o)).toBe(61_000)
  })
})

describe('nextShedding', () => {
  const adaptive = options({ adaptive: { shedAt: 0.95 } }).adaptive

  it('starts at shedAt', () => {
    expect(nextShedding(0.94, false, adaptive)).toBe(false)
    expect(nextShedding(0.95, false, adaptive)).toBe(true)
    expect(nextShedding(1, false, adaptive)).toBe(true)
  })

  it(`stays on until load falls below shedAt - ${SHED_HYSTERESIS}`, () => {
    expect(nextShedding(0.94, true, adaptive)).toBe(true)
    expect(nextShedding(0.9, true, adaptive)).toBe(true)
    expect(nextShedding(0.899, true, adaptive)).toBe(false)
  })

  it('does not flap for a load walking around shedAt', () => {
    const loads = [0.5, 0.94, 0.95, 0.93, 0.96, 0.91, 0.9, 0.89, 0.94, 0.95]
    const seen: boolean[] = []
    let shedding = false
    for (const load of loads) seen.push((shedding = nextShedding(load, shedding, adaptive)))
    expect(seen).toEqual([false, false, true, true, true, true, true, false, false, true])
  })

  it('never sheds without the adaptive policy', () => {
    expect(nextShedding(1, false, null)).toBe(false)
    expect(nextShedding(1, true, null)).toBe(false)
  })
})

describe('applyLoad', () => {
  const o = options({ timeout: 5, max: 1000, adaptive: { from: 0.5, shedAt: 0.95, minTimeout: 1, minMax: 10 } })

  it('updates timeout, max and shedding in place', () => {
    const s = initialPolicy(o)
    expect(s).toEqual({ timeoutMs: 5000, max: 1000, shedding: false, draining: false, drainStartMs: 0, drainWindowMs: 0, overCap: false })
    applyLoad(s, 0.75, o)
    expect(s).toEqual({ timeoutMs: 3000, max: 505, shedding: false, draining: false, drainStartMs: 0, drainWindowMs: 0, overCap: false })
    applyLoad(s, 0.96, o)
    expect(s.shedding).toBe(true)
    applyLoad(s, 0.92, o)
    expect(s.shedding).toBe(true)
    applyLoad(s, 0, o)
    expect(s).toEqual({ timeoutMs: 5000, max: 1000, shedding: false, draining: false, drainStartMs: 0, drainWindowMs: 0, overCap: false })
  })

  it('returns true only when the advertised whole-second timeout changes', () => {
    const s = initialPolicy(o)
    expect(applyLoad(s, 0.3, o)).toBe(false) // still 5 s
    expect(applyLoad(s, 0.75, o)).toBe(true) // 5 s -> 3 s
    expect(applyLoad(s, 0.74, o)).toBe(false) // 3.08 s: still timeout=3
    expect(s.max).toBe(525) // max moved all the same
    expect(applyLoad(s, 0.76, o)).toBe(true) // 2.92 s: timeout=2
    expect(applyLoad(s, 0.76, o)).toBe(false)
  })

  it('leaves draining and overCap to their owners', () => {
    const s = initialPolicy(o)
    s.draining = true
    s.overCap = true
    applyLoad(s, 1, o)
    expect(s).toMatchObject({ draining: true, overCap: true, timeoutMs: 1000, max: 10, shedding: true })
  })

  it('changes nothing without the adaptive policy', () => {
    const fixed = options({ timeout: 5, max: 7 })
    const s = initialPolicy(fixed)
    expect(applyLoad(s, 1, fixed)).toBe(false)
    expect(s).toEqual({ timeoutMs: 5000, max: 7, shedding: false, draining: false, drainStartMs: 0, drainWindowMs: 0, overCap: false })
  })
})
