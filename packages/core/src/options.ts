// Option defaults and resolution: user options checked once, returned frozen, durations in milliseconds.
import { checkKeys, count, describe, fail, isPlainObject, MAX_SECONDS, number, seconds } from './check.js'

/** Every option resolved, durations in milliseconds. Internal; frozen once built. */
export interface ResolvedOptions {
  /** Advertised idle timeout; 0 = keep-alive off. */
  readonly timeoutMs: number
  /** Requests per connection; Infinity = unlimited. */
  readonly max: number
  readonly maxAgeMs: number
  /** Each connection's maxAge is scaled by a factor in [1 - maxAgeJitter, 1 + maxAgeJitter]. */
  readonly maxAgeJitter: number
  readonly graceMs: number
  /** The drain's and eviction's quiet period. */
  readonly drainQuietMs: number
  readonly maxConnections: number
  readonly maxConnectionsPerIp: number
  readonly adaptive: ResolvedAdaptive | null
}

export interface ResolvedAdaptive {
  readonly signal: (() => number) | null
  readonly from: number
  readonly shedAt: number
  readonly minTimeoutMs: number
  readonly minMax: number
  readonly intervalMs: number
}

/** Proxy preset: the server keeps idle connections this much longer than the proxy does. */
export const BEHIND_MARGIN_SECONDS = 5

const TOP_LEVEL = ['timeout', 'max', 'maxAge', 'maxAgeJitter', 'grace', 'drainQuiet', 'maxConnections', 'maxConnectionsPerIp', 'adaptive', 'behind'] as const
const ADAPTIVE_KEYS = ['signal', 'from', 'shedAt', 'minTimeout', 'minMax', 'interval'] as const
const BEHIND_KEYS = ['idleTimeout'] as const
const SHUTDOWN_KEYS = ['timeout', 'drainQuiet', 'gradual'] as const
/** Default quiet period of the drain and eviction, in seconds (docs/architecture.md §7). */
export const DRAIN_QUIET_SECONDS = 0.2
/** Node writes `max=` through a 32-bit integer: a larger count would be sent wrong. */
const MAX_COUNT = 0x7fffffff

const given = (value: unknown): boolean => value !== undefined
const countUpTo = (name: string, value: unknown): number =>
  number(name, value, { min: 1, max: MAX_COUNT, maxText: '2147483647 (2^31 - 1)', integer: true, infinity: true, unit: 'count' })

/** Guards against `app.use(keepAlive)` (the factory passed instead of its result). */
function looksLikeRequest(value: Record<string, unknown> | object): boolean {
  return 'socket' in value && 'headers' in value && 'method' in value
}

function objectOf(name: string, value: unknown): Record<string, unknown> {
  if (isPlainObject(value)) return value
  fail(TypeError, name, `"${name}" must be an object, got ${describe(value)}`)
}

/** Validates user options once, at construction, and returns them frozen, in milliseconds. */
export function resolveOptions(input: unknown): ResolvedOptions {
  if (input === undefined) input = {}
  if (typeof input === 'object' && input !== null && looksLikeRequest(input)) {
    fail(TypeError, 'options', 'options look like an HTTP request: call the factory, e.g. app.use(keepAlive()), not app.use(keepAlive)')
  }
  if (!isPlainObject(input)) fail(TypeError, 'options', `options must be an object, got ${describe(input)}`)
  checkKeys(input, TOP_LEVEL, '')
  // Typos first, nested ones too: a misspelt key explains more than any type or range error it causes.
  if (isPlainObject(input.behind)) checkKeys(input.behind, BEHIND_KEYS, 'behind.')
  if (isPlainObject(input.adaptive)) checkKeys(input.adaptive, ADAPTIVE_KEYS, 'adaptive.')

  const o = input
  let behindIdle: number | undefined
  if (given(o.behind)) {
    const behind = objectOf('behind', o.behind)
    if (!given(behind.idleTimeout))
      fail(TypeError, 'behind.idleTimeout', '"behind.idleTimeout" is required: the proxy\'s idle timeout in seconds, e.g. { idleTimeout: 60 }')
    behindIdle = seconds('behind.idleTimeout', behind.idleTimeout, { min: 0, above: true, max: MAX_SECONDS - BEHIND_MARGIN_SECONDS })
  }

  let timeout = given(o.timeout) ? seconds('timeout', o.timeout, { min: 0 }) : 5
  if (behindIdle !== undefined) {
    if (!given(o.timeout)) timeout = behindIdle + BEHIND_MARGIN_SECONDS
    else if (timeout <= behindIdle) {
      fail(RangeError, 'timeout', `"timeout" must be greater than behind.idleTimeout (${behindIdle}) so the server outlives the proxy, got ${timeout}`)
    }
  }
  const max = given(o.max) ? countUpTo('max', o.max) : 1000
  const maxAge = given(o.maxAge) ? seconds('maxAge', o.maxAge, { min: 0, above: true, infinity: true }) : Infinity
  // gRPC's MAX_CONNECTION_AGE jitters by ±10% so connections opened together do not all recycle together.
  const maxAgeJitter = given(o.maxAgeJitter) ? number('maxAgeJitter', o.maxAgeJitter, { min: 0, max: 0.5, unit: 'fraction' }) : 0.1
  const grace = given(o.grace) ? seconds('grace', o.grace, { min: 0 }) : 1
  const drainQuiet = given(o.drainQuiet) ? seconds('drainQuiet', o.drainQuiet, { min: 0, max: 60 }) : DRAIN_QUIET_SECONDS
  if (timeout + grace > MAX_SECONDS) {
    // Name the option that pushed the sum over: the one the user gave, or the preset that set timeout.
    const fromBehind = !given(o.timeout) && behindIdle !== undefined
    const sum = fromBehind ? `"behind.idleTimeout" + ${BEHIND_MARGIN_SECONDS} + "grace"` : '"timeout" + "grace"'
    const culprit = given(o.grace) ? 'grace' : fromBehind ? 'behind.idleTimeout' : 'timeout'
    fail(RangeError, culprit, `${sum} must be at most ${MAX_SECONDS} seconds, got ${timeout + grace}`)
  }
  const maxConnections = given(o.maxConnections) ? count('maxConnections', o.maxConnections) : Infinity
  const maxConnectionsPerIp = given(o.maxConnectionsPerIp) ? count('maxConnectionsPerIp', o.maxConnectionsPerIp) : Infinity
  if (behindIdle !== undefined && maxConnectionsPerIp !== Infinity) {
    // Behind a proxy every connection comes from the proxy's address: the cap would throttle the proxy itself.
    process.emitWarning(
      `keepalive: "maxConnectionsPerIp" (${maxConnectionsPerIp}) caps connections per remote address, and behind a proxy every connection ` +
        "comes from the proxy: it limits the proxy's connection pool, not its clients",
      { type: 'KeepAliveWarning', code: 'KEEPALIVE_PER_IP_BEHIND_PROXY' },
    )
  }

  let adaptive: ResolvedAdaptive | null = null
  if (given(o.adaptive) && o.adaptive !== false) {
    let a: Record<string, unknown> = {}
    if (o.adaptive !== true) {
      if (!isPlainObject(o.adaptive)) fail(TypeError, 'adaptive', `"adaptive" must be a boolean or an object, got ${describe(o.adaptive)}`)
      a = o.adaptive
    }
    if (given(a.signal) && typeof a.signal !== 'function') {
      fail(TypeError, 'adaptive.signal', `"adaptive.signal" must be a function returning a load in [0, 1], got ${describe(a.signal)}`)
    }
    const from = given(a.from) ? number('adaptive.from', a.from, { min: 0, max: 1, unit: 'fraction' }) : 0.5
    const shedAt = given(a.shedAt) ? number('adaptive.shedAt', a.shedAt, { min: 0, max: 1, unit: 'fraction' }) : 0.95
    if (shedAt < from) {
      // Blame the option the user actually gave: a lone `from` above the default shedAt is the `from` at fault.
      if (given(a.shedAt)) fail(RangeError, 'adaptive.shedAt', `"adaptive.shedAt" must be between adaptive.from (${from}) and 1, got ${shedAt}`)
      fail(RangeError, 'adaptive.from', `"adaptive.from" must be at most adaptive.shedAt (${shedAt}), got ${from}`)
    }
    // Behind a proxy the timeout never scales to or below the proxy's (the 502 race `behind`
    // prevents): by default it does not scale at all, and load lowers max= or sheds instead.
    let minTimeout = given(a.minTimeout) ? seconds('adaptive.minTimeout', a.minTimeout, { min: 0 }) : behindIdle !== undefined ? timeout : Math.min(1, timeout)
    if (minTimeout > timeout) {
      fail(RangeError, 'adaptive.minTimeout', `"adaptive.minTimeout" must be at most timeout (${timeout}), got ${minTimeout}`)
    }
    if (behindIdle !== undefined && minTimeout <= behindIdle) {
      fail(
        RangeError,
        'adaptive.minTimeout',
        `"adaptive.minTimeout" must be greater than behind.idleTimeout (${behindIdle}) so the server outlives the proxy under load too, got ${minTimeout}`,
      )
    }
    // A finite floor: scaling down to "unlimited" has no meaning (and would make max NaN).
    const minMax = given(a.minMax) ? count('adaptive.minMax', a.minMax, false) : Math.min(10, max)
    if (minMax > max) fail(RangeError, 'adaptive.minMax', `"adaptive.minMax" must be at most max (${max}), got ${minMax}`)
    const interval = given(a.interval) ? seconds('adaptive.interval', a.interval, { min: 0.01, max: 3600 }) : 0.5
    if (timeout === 0) minTimeout = 0
    adaptive = Object.freeze({
      signal: (a.signal as (() => number) | undefined) ?? null,
      from,
      shedAt,
      minTimeoutMs: minTimeout * 1000,
      minMax,
      intervalMs: interval * 1000,
    })
  }

  return Object.freeze({
    timeoutMs: timeout * 1000,
    max,
    maxAgeMs: maxAge * 1000,
    maxAgeJitter,
    graceMs: grace * 1000,
    drainQuietMs: drainQuiet * 1000,
    maxConnections,
    maxConnectionsPerIp,
    adaptive,
  })
}

/** A drain's settings, in milliseconds. */
export interface ShutdownSettings {
  readonly timeoutMs: number
  readonly quietMs: number
  /** Window over which connections are told to close, one at a random moment each; 0 = at once. */
  readonly gradualMs: number
}

/** Validates `shutdown()` options (also gracefulShutdown's, under `name`); durations in milliseconds. */
export function resolveShutdownOptions(input: unknown, options: Pick<ResolvedOptions, 'drainQuietMs'>, name = 'shutdown'): ShutdownSettings {
  if (input === undefined) return { timeoutMs: 10_000, quietMs: options.drainQuietMs, gradualMs: 0 }
  if (!isPlainObject(input)) fail(TypeError, name, `${name} options must be an object, got ${describe(input)}`)
  checkKeys(input, SHUTDOWN_KEYS, `${name}.`)
  const timeout = given(input.timeout) ? seconds(`${name}.timeout`, input.timeout, { min: 0 }) : 10
  const gradual = given(input.gradual) ? seconds(`${name}.gradual`, input.gradual, { min: 0 }) : 0
  if (gradual > timeout)
    fail(
      RangeError,
      `${name}.gradual`,
      `"${name}.gradual" must be at most ${name}.timeout (${timeout}) so every connection is told to close before the deadline, got ${gradual}`,
    )
  return {
    timeoutMs: timeout * 1000,
    quietMs: given(input.drainQuiet) ? seconds(`${name}.drainQuiet`, input.drainQuiet, { min: 0, max: 60 }) * 1000 : options.drainQuietMs,
    gradualMs: gradual * 1000,
  }
}
