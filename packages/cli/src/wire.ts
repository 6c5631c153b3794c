import net from 'node:net'
import { performance } from 'node:perf_hooks'
import tls from 'node:tls'

/** One HTTP/1.x response as it came off the wire. */
export interface WireResponse {
  /** `1.1` or `1.0`, from the status line. */
  version: string
  statusCode: number
  /** Header fields in the order received; names lower-cased, values trimmed. */
  headers: [string, string][]
  /** Body bytes received. */
  bodyLength: number
  /** The body ended with the connection (no Content-Length, not chunked). */
  closeDelimited: boolean
  /** `performance.now()` when the response's last byte arrived. */
  receivedAt: number
}

/** What {@link WireConnection.send} resolves with. */
export type Exchange =
  | { kind: 'response'; response: WireResponse }
  /** The connection ended before a complete response; `error` when what came was not HTTP/1.x. */
  | { kind: 'closed'; at: number; error: string | null }
  | { kind: 'timeout' }

/** Options of {@link WireConnection.open}. */
export interface OpenOptions {
  /** Accept a certificate that does not verify (self-signed, wrong name). */
  insecure: boolean
  /** Ms to wait for the connection and for each response. */
  timeoutMs: number
}

const MAX_HEAD = 64 * 1024

/** Incremental HTTP/1.x response parser: exact bytes, repeated headers kept apart. */
class ResponseParser {
  private buffer: Buffer = Buffer.alloc(0)
  private head: Omit<WireResponse, 'bodyLength' | 'closeDelimited' | 'receivedAt'> | null = null
  /** Body bytes still expected (Content-Length), 'chunked', or 'close'. */
  private framing: number | 'chunked' | 'close' = 0
  private received = 0
  /** Inside a chunked body: bytes left of the current chunk (+2 for its CRLF), or -1 for trailers. */
  private chunkLeft = 0
  private inTrailers = false

  constructor(private readonly onResponse: (response: WireResponse) => void) {}

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    while (this.step()) {
      // keep parsing: a chunk may carry the end of one response and the start of the next
    }
  }

  /** The connection ended: a close-delimited body is complete now. */
  end(): boolean {
    if (this.head !== null && this.framing === 'close') {
      this.finish(true)
      return true
    }
    return false
  }

  private step(): boolean {
    if (this.head === null) return this.readHead()
    if (this.framing === 'close') {
      this.received += this.buffer.length
      this.buffer = Buffer.alloc(0)
      return false
    }
    if (this.framing === 'chunked') return this.readChunked()
    const take = Math.min(this.framing - this.received, this.buffer.length)
    this.received += take
    this.buffer = this.buffer.subarray(take)
    if (this.received === this.framing) {
      this.finish(false)
      return this.buffer.length > 0
    }
    return false
  }

  private readHead(): boolean {
    const end = this.buffer.indexOf('\r\n\r\n')
    if (end === -1) {
      if (this.buffer.length > MAX_HEAD) throw new Error(`response head larger than ${MAX_HEAD} bytes`)
      return false
    }
    const lines = this.buffer.subarray(0, end).toString('latin1').split('\r\n')
    this.buffer = this.buffer.subarray(end + 4)
    const status = /^HTTP\/(\d\.\d) (\d{3})/.exec(lines[0] ?? '')
    if (status === null) throw new Error(`not an HTTP/1.x response: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`)
    const headers: [string, string][] = []
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      if (colon > 0) headers.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()])
    }
    const statusCode = Number(status[2])
    // Interim responses (100 Continue, 103 Early Hints) precede the real one.
    if (statusCode >= 100 && statusCode < 200 && statusCode !== 101) return this.buffer.length > 0
    this.head = { version: status[1]!, statusCode, headers }
    this.received = 0
    const encoding = headers.filter(([name]) => name === 'transfer-encoding').map(([, value]) => value.toLowerCase())
    const length = headers.find(([name]) => name === 'content-length')
    if (statusCode === 204 || statusCode === 304) this.framing = 0
    else if (encoding.some((value) => value.split(',').some((token) => token.trim() === 'chunked'))) {
      this.framing = 'chunked'
      this.chunkLeft = 0
      this.inTrailers = false
    } else if (length !== undefined && /^\d+$/.test(length[1])) this.framing = Number(length[1])
    else this.framing = 'close'
    if (this.framing === 0) {
      this.finish(false)
      return this.buffer.length > 0
    }
    return this.buffer.length > 0
  }

  private readChunked(): boolean {
    for (;;) {
      if (this.inTrailers) {
        const end = this.buffer.indexOf('\r\n')
        if (end === -1) return false
        this.buffer = this.buffer.subarray(end + 2)
        if (end === 0) {
          this.finish(false)
          return this.buffer.length > 0
        }
        continue
      }
      if (this.chunkLeft > 0) {
        const take = Math.min(this.chunkLeft, this.buffer.length)
        this.chunkLeft -= take
        this.received += take
        this.buffer = this.buffer.subarray(take)
        if (this.chunkLeft > 0) return false
        continue
      }
      const end = this.buffer.indexOf('\r\n')
      if (end === -1) return false
      const line = this.buffer.subarray(0, end).toString('latin1')
      this.buffer = this.buffer.subarray(end + 2)
      if (line === '') continue // the CRLF after a chunk's data
      const size = Number.parseInt(line.split(';')[0]!.trim(), 16)
      if (!Number.isFinite(size)) throw new Error(`bad chunk size line: ${JSON.stringify(line.slice(0, 40))}`)
      if (size === 0) this.inTrailers = true
      else this.chunkLeft = size
    }
  }

  private finish(closeDelimited: boolean): void {
    const head = this.head!
    this.head = null
    this.onResponse({ ...head, bodyLength: this.received, closeDelimited, receivedAt: performance.now() })
  }
}

/** A raw HTTP/1.x connection: one request at a time, responses parsed exactly, close time recorded. */
export class WireConnection {
  /** `performance.now()` when the server's FIN or reset arrived; null while open. */
  closedAt: number | null = null
  private readonly responses: WireResponse[] = []
  private waiter: (() => void) | null = null
  private readonly parser: ResponseParser
  private error: Error | null = null

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    this.parser = new ResponseParser((response) => {
      this.responses.push(response)
      this.wake()
    })
    socket.on('data', (chunk: Buffer) => {
      try {
        this.parser.push(chunk)
      } catch (error) {
        this.error = error as Error
        socket.destroy()
      }
    })
    const onClosed = (): void => {
      if (this.closedAt !== null) return
      this.closedAt = performance.now()
      this.parser.end()
      this.wake()
    }
    socket.on('end', onClosed)
    socket.on('close', onClosed)
    // A reset counts as the server's close; the time is what matters here.
    socket.on('error', onClosed)
  }

  /** Connects over TCP (`http:`) or TLS (`https:`, offering only HTTP/1.1 by ALPN). */
  static open(url: URL, options: Readonly<OpenOptions>): Promise<WireConnection> {
    const https = url.protocol === 'https:'
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
    const port = Number(url.port || (https ? 443 : 80))
    return new Promise((resolve, reject) => {
      const socket = https
        ? tls.connect({
            host,
            port,
            servername: net.isIP(host) === 0 ? host : undefined,
            rejectUnauthorized: !options.insecure,
            ALPNProtocols: ['http/1.1'],
          })
        : net.connect({ host, port })
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`no connection within ${options.timeoutMs / 1000} s`))
      }, options.timeoutMs)
      socket.once(https ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer)
        socket.off('error', onError)
        socket.setNoDelay(true)
        resolve(new WireConnection(socket, options.timeoutMs))
      })
      function onError(error: Error): void {
        clearTimeout(timer)
        reject(error)
      }
      socket.once('error', onError)
    })
  }

  /** Writes a request and resolves with its response, the server's close, or a timeout. */
  async send(request: string): Promise<Exchange> {
    if (this.closedAt === null) this.socket.write(request)
    return this.next()
  }

  /** The next response, or the close if it comes first. */
  private next(): Promise<Exchange> {
    return new Promise((resolve) => {
      const settle = (): boolean => {
        const response = this.responses.shift()
        if (response !== undefined) resolve({ kind: 'response', response })
        else if (this.error !== null) resolve({ kind: 'closed', at: this.closedAt ?? performance.now(), error: this.error.message })
        else if (this.closedAt !== null) resolve({ kind: 'closed', at: this.closedAt, error: null })
        else return false
        return true
      }
      if (settle()) return
      const timer = setTimeout(() => {
        this.waiter = null
        resolve({ kind: 'timeout' })
      }, this.timeoutMs)
      this.waiter = () => {
        if (!settle()) return
        clearTimeout(timer)
        this.waiter = null
      }
    })
  }

  /** Resolves with the close time once the server closes, or null if it is still open after `ms`. */
  waitClose(ms: number): Promise<number | null> {
    if (this.closedAt !== null) return Promise.resolve(this.closedAt)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.socket.off('end', onClosed)
        this.socket.off('close', onClosed)
        resolve(null)
      }, Math.max(0, ms))
      const onClosed = (): void => {
        clearTimeout(timer)
        this.socket.off('end', onClosed)
        this.socket.off('close', onClosed)
        resolve(this.closedAt ?? performance.now())
      }
      this.socket.once('end', onClosed)
      this.socket.once('close', onClosed)
    })
  }

  destroy(): void {
    this.socket.destroy()
  }

  private wake(): void {
    this.waiter?.()
  }
}
