import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'

type HeaderInput = OutgoingHttpHeaders | readonly unknown[]
type WriteHead = (this: ServerResponse, statusCode: number, reason?: string | HeaderInput, headers?: HeaderInput) => ServerResponse

/** What the writeHead hook finds on the socket: the owner of the connection's policy. */
export interface HeadersListener {
  /**
   * Called once per response, just before its headers are written. `inStore` is true when the
   * application handles `Connection` or `Keep-Alive` itself: every header is then in the
   * response's header store and the decision must read and write them there.
   */
  beforeHeaders(res: ServerResponse, statusCode: number, inStore: boolean): void
}

/**
 * The fields of `OutgoingMessage` that `_storeHeader` (lib/_http_outgoing.js) reads to write the
 * connection headers itself, the same on Node 20, 22 and 24: with no `Connection` header set it
 * writes `Connection: keep-alive` and `Keep-Alive: timeout=<floor(_keepAliveTimeout / 1000)>`
 * (`, max=<_maxRequestsPerSocket>` when above 0) if `shouldKeepAlive` holds and the body's end is
 * known, else `Connection: close`, and sets `_last` when it will end the socket after the response.
 */
export interface NodeResponseFields {
  shouldKeepAlive: boolean
  _keepAliveTimeout: number
  _maxRequestsPerSocket: number
  _removedConnection: boolean
  _last: boolean
}

/** Where a tracked socket keeps its per-connection state. */
export const kConnection = Symbol('keepalive.connection')

interface TrackedSocket {
  [kConnection]?: HeadersListener
}

const CLOSE_TOKEN = /(?:^|[\s,])close(?:[\s,]|$)/i

/** True if a `Connection` header value asks to close. */
export function saysClose(value: unknown): boolean {
  if (value === undefined) return false
  return CLOSE_TOKEN.test(Array.isArray(value) ? value.join(',') : String(value))
}

/**
 * Moves headers passed to `writeHead()` into the response's header store, as Node itself does
 * when headers were already set, so the decision sees every header in one place.
 * Returns false for input Node will reject (odd flat arrays); Node then throws its own error.
 */
function absorbHeaders(res: ServerResponse, headers: HeaderInput): boolean {
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

/** True if the headers given to `writeHead()` include `Connection` or `Keep-Alive` (any case). */
function namesConnectionHeaders(headers: HeaderInput): boolean {
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

// Shared by every response: installing it is one property write, no closure per request.
function keepAliveWriteHead(this: ServerResponse, statusCode: number, reason?: string | HeaderInput, headers?: HeaderInput): ServerResponse {
  const original = (Object.getPrototypeOf(this) as { writeHead: WriteHead }).writeHead
  const listener = (this.req.socket as TrackedSocket | null)?.[kConnection]
  if (listener === undefined || this.headersSent) return original.call(this, statusCode, reason as string, headers)
  const message = typeof reason === 'string' ? reason : undefined
  const given = message === undefined ? (reason as HeaderInput | undefined) : headers
  // The common case: the application leaves the connection headers to us, Node writes them from
  // the fields the decision sets, and the headers given here pass through untouched.
  if (given == null || !namesConnectionHeaders(given)) {
    const inStore = this.hasHeader('connection') || this.hasHeader('keep-alive') || (this as unknown as NodeResponseFields)._removedConnection
    listener.beforeHeaders(this, statusCode, inStore)
    return original.call(this, statusCode, reason as string, headers)
  }
  if (!absorbHeaders(this, given)) return original.call(this, statusCode, reason as string, headers)
  listener.beforeHeaders(this, statusCode, true)
  return message === undefined ? original.call(this, statusCode) : original.call(this, statusCode, message)
}

/**
 * Makes the connection's listener run just before this response's headers are written, whether
 * the application calls `writeHead()` or Node writes them implicitly on the first `write()`/`end()`.
 */
export function hookHeaders(res: ServerResponse): void {
  res.writeHead = keepAliveWriteHead as ServerResponse['writeHead']
}

/** True if this response's message has a body (RFC 9112 §6.3: not HEAD, 1xx, 204 or 304). */
function hasBody(req: IncomingMessage, statusCode: number): boolean {
  return req.method !== 'HEAD' && statusCode !== 204 && statusCode !== 304 && !(statusCode >= 100 && statusCode < 200)
}

/**
 * Predicts whether Node will keep the connection open after this response, given the headers set
 * so far (mirrors `_storeHeader` in lib/_http_outgoing.js): the client asked to keep it, and the
 * body's end is known without closing the connection.
 */
export function nodeKeepsAlive(res: ServerResponse, statusCode: number): boolean {
  const connection = res.getHeader('connection')
  const hasLength = res.hasHeader('content-length')
  const chunkedByDefault = res.useChunkedEncodingByDefault
  if (connection !== undefined) {
    if (saysClose(connection)) return false
  } else if (!res.shouldKeepAlive || !(hasLength || chunkedByDefault)) {
    return false
  }
  const noLength = !hasLength && !chunkedByDefault
  // Transfer-Encoding only matters when the length is unknown or on a 204/304: skip the lookup otherwise.
  if (!noLength && statusCode !== 204 && statusCode !== 304) return true
  const te = res.getHeader('transfer-encoding')
  if (noLength && te === undefined && hasBody(res.req, statusCode)) return false
  // Node closes 204/304 responses that were given `Transfer-Encoding: chunked`.
  if (te !== undefined && (statusCode === 204 || statusCode === 304) && /chunked/i.test(String(te))) return false
  return true
}
