// The connection headers as text: the Keep-Alive codec, its cached values, what Node reads in a Connection header, and moving writeHead() headers into the header store (public API only); no I/O.
import type { OutgoingHttpHeaders } from 'node:http'
import type { KeepAliveParams } from './types.js'

/** Headers as `writeHead()` takes them: an object, a flat array or an array of pairs. */
export type HeaderInput = OutgoingHttpHeaders | readonly unknown[]

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

/** `Keep-Alive` values, built once per (timeout, remaining) value (docs/architecture.md §9). */
export class HeaderCache {
  private cache: (string | undefined)[] = []
  private prefix = ''
  private timeoutOnly = ''

  constructor(timeoutMs: number) {
    this.reset(timeoutMs)
  }

  /** The timeout changed: header values are built anew. */
  reset(timeoutMs: number): void {
    const seconds = Math.floor(timeoutMs / 1000)
    this.timeoutOnly = `timeout=${seconds}`
    this.prefix = `timeout=${seconds}, max=`
    this.cache = []
  }

  /** The value for `remaining` more requests (Infinity: no `max=`). */
  value(remaining: number): string {
    if (remaining === Infinity) return this.timeoutOnly
    const cached = this.cache[remaining]
    if (cached !== undefined) return cached
    return (this.cache[remaining] = this.prefix + remaining)
  }
}

// Node's own test for a closing Connection value (docs/architecture.md §4).
const CLOSE_TOKEN = /(?:^|\W)close(?:$|\W)/i

/** True if a `Connection` header value asks to close, as Node reads it. */
export function saysClose(value: unknown): boolean {
  if (value === undefined) return false
  return CLOSE_TOKEN.test(Array.isArray(value) ? value.join(',') : String(value))
}

/** True if the headers given to `writeHead()` include `Connection` or `Keep-Alive` (any case). */
export function namesConnectionHeaders(headers: HeaderInput): boolean {
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i++) {
      const entry: unknown = headers[i]
      const name = Array.isArray(entry) ? (entry[0] as unknown) : i % 2 === 0 ? entry : undefined
      if (typeof name === 'string' && isConnectionHeader(name)) return true
    }
    return false
  }
  for (const name in headers as OutgoingHttpHeaders) if (isConnectionHeader(name)) return true
  return false
}

// Both names are 10 characters long: most header names are rejected on their length alone.
function isConnectionHeader(name: string): boolean {
  if (name.length !== 10) return false
  const lower = name.toLowerCase()
  return lower === 'connection' || lower === 'keep-alive'
}

/** The part of a response's header store `absorbHeaders` writes to (public API only). */
export interface HeaderStore {
  removeHeader(name: string): void
  appendHeader(name: string, value: string): unknown
  setHeader(name: string, value: string): unknown
}

/**
 * Moves headers passed to `writeHead()` into the response's header store, as Node itself does
 * when headers were already set, so the decision sees every header in one place.
 * Returns false for input Node will reject (odd flat arrays); Node then throws its own error.
 */
export function absorbHeaders(res: HeaderStore, headers: HeaderInput): boolean {
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const entry of headers as readonly (readonly [string, string])[]) res.removeHeader(entry[0])
      for (const entry of headers as readonly (readonly [string, string])[]) res.appendHeader(entry[0], entry[1])
      return true
    }
    if (headers.length % 2 !== 0) return false
    for (let i = 0; i < headers.length; i += 2) res.removeHeader(String(headers[i]))
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string
      if (name) res.appendHeader(name, headers[i + 1] as string)
    }
    return true
  }
  const object = headers as OutgoingHttpHeaders
  for (const name in object) {
    if (name && Object.hasOwn(object, name)) res.setHeader(name, object[name] as string)
  }
  return true
}
