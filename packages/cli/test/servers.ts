// Servers the probe is run against: ours (createKeepAlive on node:http or node:https), bare Node
// configured by the test, and raw TCP servers that answer with exact bytes to misbehave on purpose.
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createKeepAlive, type KeepAliveOptions } from '@keepalive/core'

export interface Running {
  url: string
  close(): Promise<void>
}

const running = new Set<Running>()

/** Closes every server started since the last call (for afterEach). */
export async function closeAll(): Promise<void> {
  const all = [...running]
  running.clear()
  await Promise.all(all.map((server) => server.close()))
}

async function listen(server: net.Server, protocol: 'http' | 'https', sockets: Set<net.Socket>): Promise<Running> {
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const entry: Running = {
    url: `${protocol}://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    async close() {
      for (const socket of sockets) socket.destroy()
      server.close()
      await once(server, 'close')
    },
  }
  running.add(entry)
  return entry
}

/** node:http (or node:https with `tls`) governed by createKeepAlive. */
export function ours(options: KeepAliveOptions = {}, tls?: { key: Buffer; cert: Buffer }): Promise<Running> {
  const controller = createKeepAlive(options)
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    controller.handle(req, res)
    res.end('hello\n')
  }
  const server = tls === undefined ? http.createServer(handler) : https.createServer(tls, handler)
  controller.attach(server)
  return listen(server, tls === undefined ? 'http' : 'https', new Set())
}

/** Bare node:http with no keepalive package: the test configures it. */
export function bare(configure: (server: http.Server) => void, handler: http.RequestListener): Promise<Running> {
  const server = http.createServer(handler)
  configure(server)
  return listen(server, 'http', new Set())
}

/** A raw request as the probe sends it: request line and header lines. */
export interface RawRequest {
  line: string
  headers: string[]
}

/**
 * A TCP server speaking just enough HTTP/1.x to misbehave exactly: `respond` gets each request
 * (the n-th on its connection, from 1) and writes whatever bytes it likes.
 */
export function raw(respond: (request: RawRequest, n: number, socket: net.Socket) => void): Promise<Running> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    let buffer = ''
    let n = 0
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      buffer += chunk
      let end: number
      while ((end = buffer.indexOf('\r\n\r\n')) !== -1) {
        const [line = '', ...headers] = buffer.slice(0, end).split('\r\n')
        buffer = buffer.slice(end + 4)
        respond({ line, headers }, ++n, socket)
      }
    })
    socket.on('error', () => socket.destroy())
  })
  return listen(server, 'http', sockets)
}

/** A throwaway self-signed certificate for 127.0.0.1, made with the openssl command. */
export function selfSigned(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'keepalive-cli-tls-'))
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'pipe' },
    )
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A port nothing listens on: bound once, then released. */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}
