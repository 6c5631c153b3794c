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
  /** Told when the server sends more than the parser's limits allow; the connection is then destroyed. */
  onLimit: (error: LimitError) => void
}

/** Bytes one status, header, chunk-size or trailer line may take, its line end included (nginx's large header buffer). */
export const MAX_LINE = 8 * 1024
/** Bytes a response's status line and headers may take together; the same for its trailers. */
export const MAX_HEAD = 64 * 1024
/** Complete responses the probe may hold before it asked for them (a server answering requests never sent). */
export const MAX_QUEUED = 8

/** The server sent more than the probe is willing to hold: it stops, rather than grow without bound. */
export class LimitError extends Error {}

/**
 * Bytes received and not parsed yet, kept as the chunks they came in: the search for a line end
 * resumes where it stopped, and bytes are copied only once a whole line has arrived.
 */
class ByteQueue {
  private chunks: Buffer[] = []
  length = 0
  /** The search for LF resumes in chunks[scanChunk] at scanAt; scanBase bytes come before that chunk. */
  private scanChunk = 0
  private scanAt = 0
  private scanBase = 0

  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.length += chunk.length
  }

  /** Bytes up to and including the next LF, or -1 while none has arrived. */
  lineEnd(): number {
    while (this.scanChunk < this.chunks.length) {
      const chunk = this.chunks[this.scanChunk]!
      const at = chunk.indexOf(0x0a, this.scanAt)
      if (at !== -1) return this.scanBase + at + 1
      this.scanBase += chunk.length
      this.scanChunk++
      this.scanAt = 0
    }
    return -1
  }

  /** Removes the first `n` bytes and returns them; copied only when they span chunks. */
  take(n: number): Buffer {
    const first = this.chunks[0]
    if (first !== undefined && first.length >= n) {
      const out = first.subarray(0, n)
      this.skip(n)
      return out
    }
    const parts: Buffer[] = []
    let left = n
    for (const chunk of this.chunks) {
      if (left === 0) break
      const part = chunk.length <= left ? chunk : chunk.subarray(0, left)
      parts.push(part)
      left -= part.length
    }
    this.skip(n)
    return Buffer.concat(parts, n)
  }

  /** Drops the first `n` bytes (at most what is buffered). */
  skip(n: number): void {
    let left = Math.min(n, this.length)
    this.length -= left
    while (left > 0) {
      const first = this.chunks[0]!
      if (first.length <= left) {
        this.chunks.shift()
        left -= first.length
      } else {
        this.chunks[0] = first.subarray(left)
        left = 0
      }
    }
    // What is left starts right after a line end or a body: it has not been searched yet.
    this.scanChunk = 0
    this.scanAt = 0
    this.scanBase = 0
  }
}

type Head = Omit<WireResponse, 'bodyLength' | 'closeDelimited' | 'receivedAt'>

/**
 * Incremental HTTP/1.x response parser: exact bytes, repeated headers kept apart. Every line is
 * bounded (MAX_LINE) and so is each head and trailer section (MAX_HEAD); body bytes are counted,
 * never kept.
 */
class ResponseParser {
  private readonly queue = new ByteQueue()
  private state: 'head' | 'body' | 'chunkSize' | 'chunkData' | 'trailers' | 'close' = 'head'
  private lines: string[] = []
  /** Bytes of the current head or trailer section so far. */
  private sectionBytes = 0
  private head: Head | null = null
  /** Body bytes still expected: of the Content-Length, or of the current chunk. */
  private left = 0
  private received = 0

  constructor(private readonly onResponse: (response: WireResponse) => void) {}

  push(chunk: Buffer): void {
    this.queue.push(chunk)
    while (this.step()) {
      // keep parsing: a chunk may carry the end of one response and the start of the next
    }
  }

  /** The connection ended: a close-delimited body is complete now. */
  end(): boolean {
    if (this.head !== null && this.state === 'close') {
      this.finish(true)
      return true
    }
    return false
  }

  private step(): boolean {
    switch (this.state) {
      case 'head': {
        const line = this.line(true)
        if (line === null) return false
        if (line !== '') this.lines.push(line)
        else if (this.lines.length > 0) this.startBody()
        return true
      }
      case 'body':
      case 'chunkData': {
        const take = Math.min(this.left, this.queue.length)
        this.queue.skip(take)
        this.left -= take
        this.received += take
        if (this.left > 0) return false
        if (this.state === 'body') this.finish(false)
        else this.state = 'chunkSize' // the CRLF after the data comes as an empty line
        return true
      }
      case 'chunkSize': {
        const line = this.line(false)
        if (line === null) return false
        if (line === '') return true
        const size = /^[0-9a-fA-F]+/.exec(line.split(';')[0]!.trim())
        if (size === null) throw new Error(`bad chunk size line: ${JSON.stringify(line.slice(0, 40))}`)
        this.left = Number.parseInt(size[0], 16)
        if (this.left === 0) {
          this.state = 'trailers'
          this.sectionBytes = 0
        } else this.state = 'chunkData'
        return true
      }
      case 'trailers': {
        const line = this.line(true)
        if (line === null) return false
        if (line === '') this.finish(false)
        return true
      }
      case 'close':
        this.received += this.queue.length
        this.queue.skip(this.queue.length)
        return false
    }
  }

  /** The next line without its line end (LF, or CRLF: RFC 9112 §2.2), or null until it has arrived. */
  private line(inSection: boolean): string | null {
    const end = this.queue.lineEnd()
    if (end === -1 ? this.queue.length > MAX_LINE : end > MAX_LINE) {
      throw new LimitError(`a response line (status, header, chunk-size or trailer) longer than ${MAX_LINE} bytes`)
    }
    if (end === -1) return null
    if (inSection) {
      this.sectionBytes += end
      if (this.sectionBytes > MAX_HEAD) throw new LimitError(`response headers (or trailers) larger than ${MAX_HEAD} bytes`)
    }
    const bytes = this.queue.take(end)
    return bytes.toString('latin1', 0, end >= 2 && bytes[end - 2] === 0x0d ? end - 2 : end - 1)
  }

  private startBody(): void {
    const [statusLine = '', ...fields] = this.lines
    this.lines = []
    this.sectionBytes = 0
    const status = /^HTTP\/(\d\.\d) (\d{3})/.exec(statusLine)
    if (status === null) throw new Error(`not an HTTP/1.x response: ${JSON.stringify(statusLine.slice(0, 80))}`)
    const headers: [string, string][] = []
    for (const field of fields) {
      const colon = field.indexOf(':')
      if (colon > 0) headers.push([field.slice(0, colon).trim().toLowerCase(), field.slice(colon + 1).trim()])
    }
    const statusCode = Number(status[2])
    // Interim responses (100 Continue, 103 Early Hints) precede the real one.
    if (statusCode >= 100 && statusCode < 200 && statusCode !== 101) return
    this.head = { version: status[1]!, statusCode, headers }
    this.received = 0
    const encoding = headers.filter(([name]) => name === 'transfer-encoding').map(([, value]) => value.toLowerCase())
    const length = headers.find(([name]) => name === 'content-length')
    if (statusCode === 204 || statusCode === 304) this.finish(false)
    else if (encoding.some((value) => value.split(',').some((token) => token.trim() === 'chunked'))) this.state = 'chunkSize'
    else if (length !== undefined && /^\d+$/.test(length[1])) {
      this.left = Number(length[1])
      this.state = 'body'
      if (this.left === 0) this.finish(false)
    } else this.state = 'close'
  }

  private finish(closeDelimited: boolean): void {
    const head = this.head!
    this.head = null
    this.state = 'head'
    this.sectionBytes = 0
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
    onLimit: (error: LimitError) => void,
  ) {
    this.parser = new ResponseParser((response) => {
      if (this.responses.length >= MAX_QUEUED) throw new LimitError(`more than ${MAX_QUEUED} responses to requests the probe did not send`)
      this.responses.push(response)
      this.wake()
    })
    socket.on('data', (chunk: Buffer) => {
      try {
        this.parser.push(chunk)
      } catch (error) {
        this.error = error as Error
        // Told before the socket closes, so a limit ends the probe rather than timing a close.
        if (error instanceof LimitError) onLimit(error)
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
        resolve(new WireConnection(socket, options.timeoutMs, options.onLimit))
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
      const timer = setTimeout(
        () => {
          this.socket.off('end', onClosed)
          this.socket.off('close', onClosed)
          resolve(null)
        },
        Math.max(0, ms),
      )
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
