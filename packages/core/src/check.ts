// The kit the packages share (internal, as @keepalive/core/check): one way to check, describe and
// reject an option value, and what both metrics exporters name and bucket alike.

import type { CloseReason } from './types.js'

/** Node's timers hold at most 2^31 - 1 ms; a longer duration in seconds would fire at once. */
export const MAX_SECONDS = Math.floor(0x7fffffff / 1000) - 1

/** Error thrown for invalid options; `code` is stable, `option` names the offending path. */
export interface OptionError extends Error {
  code: 'ERR_KEEPALIVE_UNKNOWN_OPTION' | 'ERR_KEEPALIVE_INVALID_OPTION'
  option: string
}

export function fail(
  Kind: TypeErrorConstructor | RangeErrorConstructor,
  option: string,
  message: string,
  code: OptionError['code'] = 'ERR_KEEPALIVE_INVALID_OPTION',
): never {
  const error = new Kind(`keepalive: ${message}`) as OptionError
  error.code = code
  error.option = option
  throw error
}

export function describe(value: unknown): string {
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

export function checkKeys(input: object, known: readonly string[], prefix: string): void {
  for (const key of Object.keys(input)) {
    if (known.includes(key)) continue
    const lower = key.toLowerCase()
    const guess = known.find((k) => k.toLowerCase() === lower) ?? known.find((k) => distance(k.toLowerCase(), lower) <= 2)
    const hint = guess === undefined ? `; known options: ${known.join(', ')}` : `; did you mean "${prefix}${guess}"?`
    fail(TypeError, prefix + key, `unknown option "${prefix}${key}"${hint}`, 'ERR_KEEPALIVE_UNKNOWN_OPTION')
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

export interface NumberRule {
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
export function number(name: string, value: unknown, rule: NumberRule): number {
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
  const floor = rule.above ? `greater than ${rule.min}` : `at least ${rule.min}`
  const range = `${floor}${rule.max !== undefined ? ` and at most ${rule.maxText ?? rule.max}${unit}` : ''}`
  if (low || high || value === -Infinity) fail(RangeError, name, `"${name}" must be ${range}, got ${describe(value)}`)
  if (rule.integer && !Number.isInteger(value)) fail(RangeError, name, `"${name}" must be a whole number${rule.infinity ? ' or Infinity' : ''}, got ${value}`)
  return value
}

export const seconds = (name: string, value: unknown, rule: Omit<NumberRule, 'unit'>): number =>
  number(name, value, { max: MAX_SECONDS, ...rule, unit: 'seconds' })
export const count = (name: string, value: unknown, infinity = true): number => number(name, value, { min: 1, integer: true, infinity, unit: 'count' })

/**
 * Checks histogram bucket bounds: a non-empty, increasing array of numbers at least 0 (seconds when
 * `unit` is 'seconds'); `undefined` gives `fallback`. Returns a copy.
 */
export function buckets(name: string, value: unknown, fallback: readonly number[], unit: 'seconds' | 'count'): readonly number[] {
  if (value === undefined) return fallback
  if (!Array.isArray(value) || value.length === 0) fail(TypeError, name, `"${name}" must be a non-empty array of finite numbers, got ${describe(value)}`)
  value.forEach((bound: unknown, i) => {
    if (unit === 'seconds') seconds(`${name}[${i}]`, bound, { min: 0 })
    else number(`${name}[${i}]`, bound, { min: 0, unit: 'count' })
  })
  for (let i = 1; i < value.length; i++) {
    if ((value[i] as number) <= (value[i - 1] as number)) fail(RangeError, name, `"${name}" must be increasing, got ${value[i - 1]} then ${value[i]}`)
  }
  return [...(value as number[])]
}

/** Checks an object handed in by the one method the package calls on it; `what` says what it must be. */
export function objectWith<T extends object>(name: string, value: unknown, method: string, what: string): T {
  if (typeof value !== 'object' || value === null || typeof (value as Record<string, unknown>)[method] !== 'function') {
    fail(TypeError, name, `"${name}" must be ${what}, got ${describe(value)}`)
  }
  return value as T
}

/** The histogram options both exporters take, checked: `buckets` in requests, `durationBuckets` in seconds; the defaults where absent. */
export function histogramBuckets(options: { buckets?: unknown; durationBuckets?: unknown }): {
  buckets: readonly number[]
  durationBuckets: readonly number[]
} {
  return {
    buckets: buckets('buckets', options.buckets, REQUESTS_BUCKETS, 'count'),
    durationBuckets: buckets('durationBuckets', options.durationBuckets, DURATION_BUCKETS, 'seconds'),
  }
}

/**
 * Checks a metric name prefix: a string, empty or the start of a name that `pattern` accepts
 * (`what` names those names in the message); `undefined` or `null` gives `fallback`.
 */
export function namePrefix(name: string, value: unknown, fallback: string, pattern: RegExp, what: string): string {
  const prefix = value ?? fallback
  if (typeof prefix !== 'string') fail(TypeError, name, `"${name}" must be a string, got ${describe(prefix)}`)
  if (prefix !== '' && !pattern.test(prefix)) fail(RangeError, name, `"${name}" must start a valid ${what}, got ${JSON.stringify(prefix)}`)
  return prefix
}

/** Close reasons as metric label and attribute values: snake_case, as Prometheus and OpenTelemetry both write them. */
export const SNAKE_CASE_REASONS: Readonly<Record<CloseReason, string>> = Object.freeze({
  client: 'client',
  idleTimeout: 'idle_timeout',
  maxRequests: 'max_requests',
  maxAge: 'max_age',
  shed: 'shed',
  evicted: 'evicted',
  perIp: 'per_ip',
  drain: 'drain',
  forced: 'forced',
})

/** Default buckets of the requests-per-connection histograms. */
export const REQUESTS_BUCKETS: readonly number[] = Object.freeze([0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000])
/** Default buckets of the connection-duration histograms, in seconds: from a request's round trip to the hour a long-lived keep-alive connection may last. */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600])
