import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'

type HeaderInput = OutgoingHttpHeaders | readonly unknown[]
type WriteHead = (this: ServerResponse, statusCode: number, reason?: string | HeaderInput, headers?: HeaderInput) => ServerResponse

/** What the writeHead hook finds on the socket: the owner of the connection's policy. */
export interface HeadersListener {
  /** Called once per response, just before its headers are written. */
  beforeHeaders(res: ServerResponse, statusCode: number): void
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

// Shared by every response: installing it is one property write, no closure per request.
function keepAliveWriteHead(this: ServerResponse, statusCode: number, reason?: string | HeaderInput, headers?: HeaderInput): ServerResponse {
  const original = (Object.getPrototypeOf(this) as { writeHead: WriteHead }).writeHead
  const listener = (this.req.socket as TrackedSocket | null)?.[kConnection]
  if (listener === undefined || this.headersSent) return original.call(this, statusCode, reason as string, headers)
  let message: string | undefined
  if (typeof reason === 'string') message = reason
  else headers = reason
  if (headers != null && !absorbHeaders(this, headers)) return original.call(this, statusCode, reason as string, headers)
  listener.beforeHeaders(this, statusCode)
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
