// The Keep-Alive header codec: parseKeepAlive and formatKeepAlive, pure, no I/O.
import type { KeepAliveParams } from './types.js'

// RFC 9110 §5.6.6 parameters: `name=value` or `name="value"`, separated by commas
// (some clients use semicolons). Only digit values count: delta-seconds is 1*DIGIT.
const PARAM = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"\s*(\d+)\s*"|(\d+))\s*$/

function readInteger(text: string): number | undefined {
  // Beyond 2^53 a value is garbage, not a timeout; ignore it rather than round it.
  if (text.length > 15) {
    const trimmed = text.replace(/^0+/, '')
    if (trimmed.length > 15) return undefined
    text = trimmed === '' ? '0' : trimmed
  }
  return Number(text)
}

/**
 * Parses a `Keep-Alive` header value into its `timeout` and `max` parameters.
 * Never throws: unknown, malformed or repeated parameters are ignored (the first valid one wins).
 * @example parseKeepAlive('timeout=5, max=999') // { timeout: 5, max: 999 }
 */
export function parseKeepAlive(header: string | readonly string[] | undefined | null): KeepAliveParams {
  const result: KeepAliveParams = {}
  if (header === undefined || header === null) return result
  const text = typeof header === 'string' ? header : Array.isArray(header) ? header.filter((h) => typeof h === 'string').join(',') : ''
  if (typeof text !== 'string' || text.length === 0) return result
  // A header far longer than any real one is not worth scanning in full.
  const parts = text.slice(0, 8192).split(/[,;]/)
  for (const part of parts) {
    const match = PARAM.exec(part)
    if (match === null) continue
    const name = match[1]!.toLowerCase()
    if (name !== 'timeout' && name !== 'max') continue
    if (result[name] !== undefined) continue
    const value = readInteger(match[2] ?? match[3]!)
    if (value !== undefined) result[name] = value
  }
  return result
}

/**
 * Formats `Keep-Alive` parameters: `timeout` is floored to whole seconds, `max` is omitted when
 * undefined or Infinity. Throws a RangeError for negative or non-numeric values.
 * @example formatKeepAlive({ timeout: 5, max: 999 }) // 'timeout=5, max=999'
 */
export function formatKeepAlive(params: Readonly<KeepAliveParams>): string {
  const { timeout, max } = params
  const parts: string[] = []
  if (timeout !== undefined) {
    if (typeof timeout !== 'number' || !(timeout >= 0) || timeout === Infinity) {
      throw new RangeError(`keepalive: Keep-Alive timeout must be a finite number of seconds >= 0, got ${String(timeout)}`)
    }
    parts.push(`timeout=${Math.floor(timeout)}`)
  }
  if (max !== undefined && max !== Infinity) {
    if (typeof max !== 'number' || !(max >= 0)) {
      throw new RangeError(`keepalive: Keep-Alive max must be a number >= 0 or Infinity, got ${String(max)}`)
    }
    parts.push(`max=${Math.floor(max)}`)
  }
  return parts.join(', ')
}
