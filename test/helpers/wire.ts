/**
 * Raw-socket HTTP/1.x for the wire tests: exact request bytes out, exact header lines back
 * (names as sent, duplicates kept), bodies framed by Content-Length, chunked encoding or close.
 */
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import tls from 'node:tls'
import { expect } from 'vitest'

/** One header line as it came off the wire. */
export type HeaderLine = readonly [name: string, value: string]

/** Anything with header lines: a raw response, or one built from a client's raw headers. */
export interface HasHeaders {
  readonly headers: readonly HeaderLine[]
}

/** A parsed HTTP/1.x response. */
export interface RawResponse extends HasHeaders {
  /** `1.1` or `1.0`. */
  readonly version: string
  readonly status: number
  readonly reason: string
  /** The body after de-chunking, as latin1 text. */
  readonly body: string
  /** `performance.now()` when the last byte of this response had arrived. */
  readonly receivedAt: number
}

export interface RequestOptions {
  method?: string
  /** `1.1` (default) or `1.0`. */
  version?: '1.0' | '1.1'
  /** Header lines after `Host`, sent exactly as given and in order. */
  headers?: readonly HeaderLine[]
}

/** The bytes of one request without a body. */
export function rawRequest(path: string, options: RequestOptions = {}): string {
  const { method = 'GET', version = '1.1', headers = [] } = options
  let text = `${method} ${path} HTTP/${version}\r\nHost: localhost\r\n`
  for (const [name, value] of headers) text += `${name}: ${value}\r\n`
  return `${text}\r\n`
}

const CRLF = Buffer.from('\r\n')
const HEAD_END = Buffer.from('\r\n\r\n')

interface Parsed {
  response: RawResponse
  consumed: number
}

function headerValues(headers: readonly HeaderLine[], name: string): string[] {
  const lower = name.toLowerCase()
  return headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v)
}

/** Reads one chunked body from `start`; returns the body and where it ends, or null if incomplete. */
function parseChunked(buffer: Buffer, start: number): { body: Buffer; end: number } | null {
  const parts: Buffer[] = []
  let at = start
  for (;;) {
    const lineEnd = buffer.indexOf(CRLF, at)
    if (lineEnd === -1) return null
    const size = Number.parseInt(buffer.subarray(at, lineEnd).toString('latin1').split(';')[0]!.trim(), 16)
    if (Number.isNaN(size)) throw new Error(`bad chunk size line: ${JSON.stringify(buffer.subarray(at, lineEnd).toString('latin1'))}`)
    at = lineEnd + 2
    if (size === 0) {
      // No trailers: the final CRLF follows at once; otherwise trailer lines end with an empty line.
      if (buffer.length < at + 2) return null
      if (buffer[at] === 13 && buffer[at + 1] === 10) return { body: Buffer.concat(parts), end: at + 2 }
      const trailersEnd = buffer.indexOf(HEAD_END, at)
      return trailersEnd === -1 ? null : { body: Buffer.concat(parts), end: trailersEnd + 4 }
    }
    if (buffer.length < at + size + 2) return null
    parts.push(buffer.subarray(at, at + size))
    at += size + 2
  }
}

/** Parses one response from the start of `buffer`; null while it is incomplete. */
function parseResponse(buffer: Buffer, ended: boolean, method: string): Parsed | null {
  const headEnd = buffer.indexOf(HEAD_END)
  if (headEnd === -1) return null
  const [statusLine = '', ...lines] = buffer.subarray(0, headEnd).toString('latin1').split('\r\n')
  const match = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine)
  if (match === null) throw new Error(`bad status line: ${JSON.stringify(statusLine)}`)
  const status = Number(match[2])
  const headers: HeaderLine[] = lines.map((line) => {
    const colon = line.indexOf(':')
    if (colon === -1) throw new Error(`bad header line: ${JSON.stringify(line)}`)
    return [line.slice(0, colon), line.slice(colon + 1).trim()] as const
  })
  const bodyStart = headEnd + 4
  const response = (body: Buffer, consumed: number): Parsed => ({
    response: { version: match[1]!, status, reason: match[3] ?? '', headers, body: body.toString('latin1'), receivedAt: performance.now() },
    consumed,
  })
  // RFC 9112 §6.3: these responses end with their header section.
  if (method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) {
    return response(Buffer.alloc(0), bodyStart)
  }
  const encoding = headerValues(headers, 'transfer-encoding')
  if (encoding.some((v) => /chunked/i.test(v))) {
    const chunked = parseChunked(buffer, bodyStart)
    return chunked === null ? null : response(chunked.body, chunked.end)
  }
  const length = headerValues(headers, 'content-length')
  if (length.length > 0) {
    const end = bodyStart + Number(length[0])
    return buffer.length < end ? null : response(buffer.subarray(bodyStart, end), end)
  }
  // Neither: the body runs until the server closes the connection.
  return ended ? response(buffer.subarray(bodyStart), buffer.length) : null
}

export interface ConnectOptions {
  /** The address to connect to. @default '127.0.0.1' */
  host?: string
  /** Speak TLS; the options are passed to `tls.connect` (give `ca`, `servername`, `ALPNProtocols`). */
  tls?: tls.ConnectionOptions
}

/** A client socket speaking raw HTTP/1.x, reading responses as they arrive. */
export class RawClient {
  /** Bytes received and not yet read as a response. */
  private pending: Buffer = Buffer.alloc(0)
  private ended = false
  private wake: (() => void) | null = null
  /** Resolves with `performance.now()` when the socket has closed (for whatever reason). */
  readonly closed: Promise<number>
  /** True once the socket has closed. */
  isClosed = false
  /** Total bytes received. */
  received = 0
  /** A socket error (a reset by the server shows up here); never thrown. */
  error: Error | null = null

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.length
      this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
      this.notify()
    })
    socket.on('end', () => {
      this.ended = true
      this.notify()
    })
    socket.on('error', (error) => {
      this.error = error
    })
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true
        this.ended = true
        this.notify()
        resolve(performance.now())
      })
    })
  }

  private notify(): void {
    const wake = this.wake
    this.wake = null
    wake?.()
  }

  /** Writes raw bytes (one or more requests, so pipelining is a single `send`). */
  send(bytes: string): void {
    this.socket.write(bytes, 'latin1')
  }

  /** Reads the next complete response; `method` is the request's, since a HEAD response has no body. */
  async read(method = 'GET'): Promise<RawResponse> {
    for (;;) {
      const parsed = parseResponse(this.pending, this.ended, method)
      if (parsed !== null) {
        this.pending = this.pending.subarray(parsed.consumed)
        return parsed.response
      }
      if (this.ended) {
        const left = this.pending.toString('latin1')
        throw new Error(`connection closed before a complete response${left ? `; received ${JSON.stringify(left.slice(0, 200))}` : ''}`)
      }
      await new Promise<void>((resolve) => (this.wake = resolve))
    }
  }

  /** Sends one request and reads its response. */
  async request(path = '/', options: RequestOptions = {}): Promise<RawResponse> {
    this.send(rawRequest(path, options))
    return this.read(options.method)
  }

  /** Bytes received that no response read so far has consumed. */
  get unread(): string {
    return this.pending.toString('latin1')
  }

  /** Closes our side and waits for the socket to close. */
  async end(): Promise<number> {
    this.socket.end()
    return this.closed
  }

  /** Destroys the socket at once and waits for it to close. */
  async destroy(): Promise<number> {
    this.socket.destroy()
    return this.closed
  }
}

/**
 * Opens a raw client to `port` on 127.0.0.1 (or `options.host`); resolves once connected (for TLS:
 * once the handshake is done), rejects with the socket's error (e.g. ECONNREFUSED) if it cannot.
 */
export async function connect(port: number, options: ConnectOptions = {}): Promise<RawClient> {
  const host = options.host ?? '127.0.0.1'
  const socket = options.tls ? tls.connect({ host, port, servername: 'localhost', ...options.tls }) : net.connect({ host, port })
  const client = new RawClient(socket)
  await new Promise<void>((resolve, reject) => {
    const connected = (): void => {
      socket.off('close', failed)
      resolve()
    }
    const failed = (): void => {
      socket.off(options.tls ? 'secureConnect' : 'connect', connected)
      reject(client.error ?? new Error('socket closed before it connected'))
    }
    socket.once(options.tls ? 'secureConnect' : 'connect', connected)
    socket.once('close', failed)
  })
  return client
}

/** Header lines from a Node client's `rawHeaders` (flat name/value list, duplicates kept). */
export function fromRawHeaders(rawHeaders: readonly string[]): HasHeaders {
  const headers: HeaderLine[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) headers.push([rawHeaders[i]!, rawHeaders[i + 1]!])
  return { headers }
}

/** Header lines from a header object where repeated headers are arrays (undici, http2). */
export function fromHeaderObject(object: Readonly<Record<string, string | string[] | number | undefined>>): HasHeaders {
  const headers: HeaderLine[] = []
  for (const [name, value] of Object.entries(object)) {
    if (value === undefined) continue
    for (const one of Array.isArray(value) ? value : [value]) headers.push([name, String(one)])
  }
  return { headers }
}

/** Every value of a header, matched case-insensitively, in wire order. */
export function header(response: HasHeaders, name: string): string[] {
  return headerValues(response.headers, name)
}

/** The connection-management headers of a response; `null` means the header is absent. */
export interface ConnectionHeaders {
  connection: string | null
  keepAlive: string | null
}

/**
 * `Connection` and `Keep-Alive`, each as one value (repeated lines joined with `, `, as Node joins
 * them), for a whole-value `toEqual`. Header objects (Node's, undici's) go through `fromHeaderObject`.
 */
export function connectionHeaders(response: HasHeaders): ConnectionHeaders {
  const pick = (name: string): string | null => {
    const values = header(response, name)
    return values.length === 0 ? null : values.join(', ')
  }
  return { connection: pick('connection'), keepAlive: pick('keep-alive') }
}

/** True if the response's `Connection` header asks to close the connection. */
export function saysClose(response: HasHeaders): boolean {
  return header(response, 'connection').some((value) => /(?:^|,)\s*close\s*(?:,|$)/i.test(value))
}

function show(response: HasHeaders): string {
  return response.headers.map(([name, value]) => `${name}: ${value}`).join('\n')
}

/**
 * Checks headers against a map: `null` means "must be absent", a string means "exactly one header
 * with exactly this value". Always also checks that no `Keep-Alive` stands beside `Connection: close`.
 */
export function expectHeaders(response: HasHeaders, expected: Readonly<Record<string, string | null>>): void {
  for (const [name, value] of Object.entries(expected)) {
    expect(header(response, name), `${name} in:\n${show(response)}`).toEqual(value === null ? [] : [value])
  }
  expectCoherent(response)
}

/** A `Keep-Alive` header beside `Connection: close` is a bug, whoever set it. */
export function expectCoherent(response: HasHeaders): void {
  if (saysClose(response)) {
    expect(header(response, 'keep-alive'), `Keep-Alive beside Connection: close in:\n${show(response)}`).toEqual([])
  }
}
