
/** Every option resolved, durations in milliseconds. Internal; frozen once built. */
export interface ResolvedOptions {
  /** Advertised idle timeout; 0 = keep-alive off. */
  readonly timeoutMs: number
  /** Requests per connection; Infinity = unlimited. */
  readonly max: number
  readonly maxAgeMs: number
  readonly graceMs: number
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

// Node's timers hold at most 2^31 - 1 ms; a longer idle timeout would fire at once.
const MAX_SECONDS = Math.floor(0x7fffffff / 1000) - 1

const TOP_LEVEL = [
  'timeout',
  'max',
  'maxAge',
  'grace',
  'maxConnections',
  'maxConnectionsPerIp',
  'adaptive',
  'behind',
] as const
const ADAPTIVE_KEYS = ['signal', 'from', 'shedAt', 'minTimeout', 'minMax', 'interval'] as const
const BEHIND_KEYS = ['idleTimeout'] as const
const SHUTDOWN_KEYS = ['timeout'] as const

/** Error thrown for invalid options; `code` is stable, `option` names the offending path. */
export interface OptionError extends Error {
  code: 'ERR_KEEPALIVE_UNKNOWN_OPTION' | 'ERR_KEEPALIVE_INVALID_OPTION'
  option: string
}

function fail(Kind: TypeErrorConstructor | RangeErrorConstructor, option: string, message: string, code: OptionError['code'] = 'ERR_KEEPALIVE_INVALID_OPTION'): never {
  const error = new Kind(`keepalive: ${message}`) as OptionError
  error.code = code
  error.option = option
  throw error
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`
  if (typeof value === 'function') return 'a function'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') {
    // "must be an object, got an object" helps nobody: name what it is instead.
    const proto: unknown = Object.getPrototypeOf(value)
    if (proto === Object.prototype || proto === null) return 'an object'
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name
    return typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'an object with a custom prototype'
  }
  if (typeof value === 'bigint') return `${String(value)}n (bigint)`
  return `${String(value)}${typeof value === 'number' ? '' : ` (${typeof value})`}`
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return row[b.length]!
}

function checkKeys(input: object, known: readonly string[], prefix: string): void {
  for (const key of Object.keys(input)) {
    if (known.includes(key)) continue
    const lower = key.toLowerCase()
    const guess = known.find((k) => k.toLowerCase() === lower) ?? known.find((k) => distance(k.toLowerCase(), lower) <= 2)
    const hint = guess === undefined ? `; known options: ${known.join(', ')}` : `; did you mean "${prefix}${guess}"?`
    fail(TypeError, prefix + key, `unknown option "${prefix}${key}"${hint}`, 'ERR_KEEPALIVE_UNKNOWN_OPTION')
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

interface NumberRule {
  min: number
  /** Lower bound excluded. */
  above?: boolean
  max?: number
  maxText?: string
  integer?: boolean
  infinity?: boolean
  unit: 'seconds' | 'count' | 'fraction'
}

/** One checker per kind of value keeps every message the same shape. */
function number(name: string, value: unknown, rule: NumberRule): number {
  const kind =
    rule.unit === 'seconds'
      ? 'a number of seconds'
      : rule.unit === 'fraction'
        ? `a number between ${rule.min} and ${rule.max ?? 1}`
        : rule.integer
          ? 'a whole number'
          : 'a number'
  const allowed = `${kind}${rule.infinity ? ' or Infinity' : ''}`
  if (typeof value !== 'number' || Number.isNaN(value)) fail(TypeError, name, `"${name}" must be ${allowed}, got ${describe(value)}`)
  if (value === Infinity) {
    if (rule.infinity) return value
    fail(RangeError, name, `"${name}" must be finite, got Infinity`)
  }
  const low = rule.above ? value <= rule.min : value < rule.min
  const high = rule.max !== undefined && value > rule.max
  const unit = rule.unit === 'seconds' ? ' seconds' : ''
  const range = `${rule.above ? `greater than ${rule.min}` : `at least ${rule.min}`}${rule.max !== undefined ? ` and at most ${rule.maxText ?? rule.max}${unit}` : ''}`
  if (low || high || value === -Infinity) fail(RangeError, name, `"${name}" must be ${range}, got ${describe(value)}`)
  if (rule.integer && !Number.isInteger(value)) fail(RangeError, name, `"${name}" must be a whole number${rule.infinity ? ' or Infinity' : ''}, got ${value}`)
  return value
}

const seconds = (name: string, value: unknown, rule: Omit<NumberRule, 'unit'>): number =>
  number(name, value, { max: MAX_SECONDS, ...rule, unit: 'seconds' })
const count = (name: string, value: unknown, infinity = true): number => number(name, value, { min: 1, integer: true, infinity, unit: 'count' })

const given = (value: unknown): boolean => value !== undefined

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
    if (!given(behind.idleTimeout)) fail(TypeError, 'behind.idleTimeout', '"behind.idleTimeout" is required: the proxy\'s idle timeout in seconds, e.g. { idleTimeout: 60 }')
    behindIdle = seconds('behind.idleTimeout', behind.idleTimeout, { min: 0, above: true, max: MAX_SECONDS - BEHIND_MARGIN_SECONDS })
  }

  let timeout = given(o.timeout) ? seconds('timeout', o.timeout, { min: 0 }) : 5
  if (behindIdle !== undefined) {
    if (!given(o.timeout)) timeout = behindIdle + BEHIND_MARGIN_SECONDS
    else if (timeout <= behindIdle) {
      fail(RangeError, 'timeout', `"timeout" must be greater than behind.idleTimeout (${behindIdle}) so the server outlives the proxy, got ${timeout}`)
    }
  }
  const max = given(o.max) ? count('max', o.max) : 1000
  const maxAge = given(o.maxAge) ? seconds('maxAge', o.maxAge, { min: 0, above: true, infinity: true }) : Infinity
  const grace = given(o.grace) ? seconds('grace', o.grace, { min: 0 }) : 1
  if (timeout + grace > MAX_SECONDS) {
    // Name the option that pushed the sum over: the one the user gave, or the preset that set timeout.
    const fromBehind = !given(o.timeout) && behindIdle !== undefined
    const sum = fromBehind ? `"behind.idleTimeout" + ${BEHIND_MARGIN_SECONDS} + "grace"` : '"timeout" + "grace"'
    const culprit = given(o.grace) ? 'grace' : fromBehind ? 'behind.idleTimeout' : 'timeout'
    fail(RangeError, culprit, `${sum} must be at most ${MAX_SECONDS} seconds, got ${timeout + grace}`)
  }
  const maxConnections = given(o.maxConnections) ? count('maxConnections', o.maxConnections) : Infinity
  const maxConnectionsPerIp = given(o.maxConnectionsPerIp) ? count('maxConnectionsPerIp', o.maxConnectionsPerIp) : Infinity

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
    const shedAt = given(a.shedAt)
      ? number('adaptive.shedAt', a.shedAt, { min: 0, max: 1, unit: 'fraction' })
      : 0.95
    if (shedAt < from) {
      // Blame the option the user actually gave: a lone `from` above the default shedAt is the `from` at fault.
      if (given(a.shedAt)) fail(RangeError, 'adaptive.shedAt', `"adaptive.shedAt" must be between adaptive.from (${from}) and 1, got ${shedAt}`)
      fail(RangeError, 'adaptive.from', `"adaptive.from" must be at most adaptive.shedAt (${shedAt}), got ${from}`)
    }
    let minTimeout = given(a.minTimeout) ? seconds('adaptive.minTimeout', a.minTimeout, { min: 0 }) : Math.min(1, timeout)
    if (minTimeout > timeout) {
      fail(RangeError, 'adaptive.minTimeout', `"adaptive.minTimeout" must be at most timeout (${timeout}), got ${minTimeout}`)
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
    graceMs: grace * 1000,
    maxConnections,
    maxConnectionsPerIp,
    adaptive,
  })
}

/** Validates `shutdown()` options; returns the deadline in milliseconds. */
export function resolveShutdownTimeout(input: unknown, name = 'shutdown'): number {
  if (input === undefined) return 10_000
  if (!isPlainObject(input)) fail(TypeError, name, `${name} options must be an object, got ${describe(input)}`)
  checkKeys(input, SHUTDOWN_KEYS, `${name}.`)
  return given(input.timeout) ? seconds(`${name}.timeout`, input.timeout, { min: 0 }) * 1000 : 10_000
}

export { checkKeys, describe, fail, isPlainObject, number, seconds }
