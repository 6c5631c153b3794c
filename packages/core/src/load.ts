// The load sampler: event-loop utilisation, loop delay, connections and a user signal, smoothed into one load factor (docs/architecture.md §8).
import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from 'node:perf_hooks'

/** Weight of the newest sample in the moving average. */
export const SMOOTHING = 0.5
/** The published load moves only when the smoothed value has moved at least this far. */
export const LOAD_STEP = 0.05
/** Event-loop delay (p99, ms) that counts as no load, and the span up to full load. */
export const DELAY_FLOOR_MS = 10
export const DELAY_SPAN_MS = 190

const clamp01 = (x: number): number => (x > 1 ? 1 : x > 0 ? x : 0)

/** Smooths raw load samples (EWMA) and publishes them with a dead band, so a value oscillating in place does not flap. */
export interface LoadSmoother {
  /** Feed one raw sample in [0, 1]; returns the published load. */
  update(raw: number): number
  readonly load: number
}

/** Creates a {@link LoadSmoother}; pure, no timers. */
export function createLoadSmoother(alpha = SMOOTHING, step = LOAD_STEP): LoadSmoother {
  let smoothed = 0
  let published = 0
  return {
    update(raw) {
      smoothed = alpha * clamp01(raw) + (1 - alpha) * smoothed
      // Ends of the range are always reachable, so a fully idle or saturated server is reported exactly.
      const target = smoothed < step / 2 ? 0 : smoothed > 1 - step / 2 ? 1 : smoothed
      if (Math.abs(target - published) >= step || target === 0 || target === 1) published = target
      return published
    },
    get load() {
      return published
    },
  }
}

/** Maps the p99 event-loop delay in ms onto [0, 1]. */
export function delayToLoad(p99Ms: number): number {
  return clamp01((p99Ms - DELAY_FLOOR_MS) / DELAY_SPAN_MS)
}

/** Inputs of one sample of the real signals. */
export interface SignalSources {
  /** Open connections right now. */
  open(): number
  /** The cap the connections signal is measured against (Infinity = no signal). */
  readonly maxConnections: number
  /** The user's signal, if any. */
  readonly user: (() => number) | null
  /** Called when the user's signal throws or returns a non-number. */
  onSignalError(error: Error): void
}

/** Samples event-loop utilisation, event-loop delay, connections and the user's signal on one unref'd timer. */
export interface LoadMonitor {
  start(): void
  stop(): void
  /** Take one sample now (also what the timer does); returns the published load. */
  sample(): number
  readonly load: number
}

/** Creates a {@link LoadMonitor}; `onSample` runs after every sample with the published load. */
export function createLoadMonitor(intervalMs: number, sources: SignalSources, onSample: (load: number) => void): LoadMonitor {
  const smoother = createLoadSmoother()
  let timer: NodeJS.Timeout | null = null
  let histogram: IntervalHistogram | null = null
  let lastElu: EventLoopUtilization | null = null

  function readUser(): number {
    if (sources.user === null) return 0
    let value: unknown
    try {
      value = sources.user()
    } catch (error) {
      sources.onSignalError(error instanceof Error ? error : new Error(String(error)))
      return 0
    }
    if (typeof value !== 'number' || Number.isNaN(value)) {
      sources.onSignalError(new TypeError(`keepalive: adaptive.signal() must return a number in [0, 1], got ${String(value)}`))
      return 0
    }
    return clamp01(value)
  }

  function sample(): number {
    let raw = readUser()
    if (lastElu !== null) {
      const now = performance.eventLoopUtilization()
      raw = Math.max(raw, performance.eventLoopUtilization(now, lastElu).utilization)
      lastElu = now
    }
    if (histogram !== null && histogram.count > 0) {
      raw = Math.max(raw, delayToLoad(histogram.percentile(99) / 1e6))
      histogram.reset()
    }
    if (sources.maxConnections !== Infinity) raw = Math.max(raw, sources.open() / sources.maxConnections)
    const load = smoother.update(raw)
    onSample(load)
    return load
  }

  function tick(): void {
    sample()
    timer?.refresh()
  }

  return {
    start() {
      if (timer !== null) return
      lastElu = performance.eventLoopUtilization()
      histogram = monitorEventLoopDelay({ resolution: 10 })
      histogram.enable()
      timer = setTimeout(tick, intervalMs)
      timer.unref()
    },
    stop() {
      if (timer !== null) clearTimeout(timer)
      timer = null
      histogram?.disable()
      histogram = null
      lastElu = null
    },
    sample,
    get load() {
      return smoother.load
    },
  }
}
