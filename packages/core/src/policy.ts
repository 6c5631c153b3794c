// The per-response close reasons and the load scaling: pure functions of state and load (docs/architecture.md §4, §8).
import type { ResolvedAdaptive, ResolvedOptions } from './options.js'
import type { CloseReason } from './types.js'

/** The policy's current numbers, recomputed per load sample, never per response. */
export interface PolicyState {
  /** Advertised idle timeout now, in ms (0 = keep-alive off). */
  timeoutMs: number
  /** Requests per connection now. */
  max: number
  /** Keep-alive is shed: every response closes its connection. */
  shedding: boolean
  draining: boolean
  /**
   * When the drain's closing began (whole ms, see `now()`; Infinity while a shutdown waits for its
   * listeners to close), and the window a gradual drain spreads its closes over (0: at once).
   */
  drainStartMs: number
  drainWindowMs: number
  /** More connections are open than `maxConnections` and none was idle to evict: close after responses. */
  overCap: boolean
}

/**
 * The per-response decision (docs/architecture.md §4, step 4): why the `n`-th response (1-based) on a connection
 * `ageMs` old must close it, or `null` to keep it alive. Returns interned strings: allocates nothing.
 */
export function closeReason(
  n: number,
  ageMs: number,
  state: Readonly<PolicyState>,
  options: Readonly<ResolvedOptions>,
  /** This connection's age limit (maxAge, jittered per connection). */
  maxAgeMs: number = options.maxAgeMs,
  /** This connection's turn to close in the drain has come. */
  draining: boolean = state.draining,
): CloseReason | null {
  if (draining) return 'drain'
  // `timeout: 0` turns keep-alive off: each connection serves one request.
  if (state.timeoutMs === 0 || n >= state.max) return 'maxRequests'
  if (ageMs >= maxAgeMs) return 'maxAge'
  if (state.overCap) return 'evicted'
  if (state.shedding) return 'shed'
  return null
}

function lerp(high: number, low: number, load: number, from: number): number {
  if (load <= from) return high
  if (load >= 1 || from >= 1) return low
  return high - ((high - low) * (load - from)) / (1 - from)
}

/** Advertised idle timeout at this load: `timeout` up to `from`, then linearly down to `minTimeout` at 1. */
export function scaleTimeoutMs(load: number, options: Readonly<ResolvedOptions>): number {
  const a = options.adaptive
  if (a === null || options.timeoutMs === 0) return options.timeoutMs
  return lerp(options.timeoutMs, a.minTimeoutMs, load, a.from)
}

/** Requests per connection at this load: `max` up to `from`, then linearly down to `minMax` at 1. */
export function scaleMax(load: number, options: Readonly<ResolvedOptions>): number {
  const a = options.adaptive
  if (a === null) return options.max
  // An unlimited max scales down from 1000 (or 100 × minMax) once load passes `from`.
  const top = options.max === Infinity ? Math.max(1000, a.minMax * 100) : options.max
  if (load <= a.from) return options.max
  return Math.max(a.minMax, Math.round(lerp(top, a.minMax, load, a.from)))
}

/** Hysteresis band below `shedAt` that load must fall under before keep-alive comes back. */
export const SHED_HYSTERESIS = 0.05

/** Shedding starts at `shedAt` and stops only below `shedAt - SHED_HYSTERESIS`, so it does not flap. */
export function nextShedding(load: number, wasShedding: boolean, adaptive: Readonly<ResolvedAdaptive> | null): boolean {
  if (adaptive === null) return false
  if (wasShedding) return load >= adaptive.shedAt - SHED_HYSTERESIS
  return load >= adaptive.shedAt
}

/** Recomputes the policy's numbers for a load; `state` is updated in place. Returns true if the timeout changed. */
export function applyLoad(state: PolicyState, load: number, options: Readonly<ResolvedOptions>): boolean {
  const before = state.timeoutMs
  state.timeoutMs = scaleTimeoutMs(load, options)
  state.max = scaleMax(load, options)
  state.shedding = nextShedding(load, state.shedding, options.adaptive)
  return Math.floor(before / 1000) !== Math.floor(state.timeoutMs / 1000)
}

/** The policy state before any load sample. */
export function initialPolicy(options: Readonly<ResolvedOptions>): PolicyState {
  return { timeoutMs: options.timeoutMs, max: options.max, shedding: false, draining: false, drainStartMs: 0, drainWindowMs: 0, overCap: false }
}
