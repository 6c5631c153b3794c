import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import http2, { type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2'
import { createKeepAlive, type KeepAliveController, type ShutdownReport } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { useResources } from '../helpers/resources.js'
import { fixture } from '../helpers/tls.js'

const resources = useResources()

interface Started {
  ka: KeepAliveController
  server: http2.Http2SecureServer
  url: string
  /** Resolves with the path of the next request whose handler starts. */
  next(): Promise<string>
}

/** An HTTP/2 (TLS) server: `/slow` answers after 300 ms, `/hang` never, anything else at once. */
async function start(): Promise<Started> {
  const ka = createKeepAlive({ grace: 0.2 })
  const waiting: ((path: string) => void)[] = []
  const server = http2.createSecureServer({ key: fixture.key, cert: fixture.cert }, (req, res) => {
    ka.handle(req, res)
    waiting.shift()?.(req.url)
    if (req.url === '/hang') return
    if (req.url === '/slow') setTimeout(() => res.end('slow'), 300)
    else res.end('ok')
  })
  ka.attach(server)
  const port = await resources.listen(server)
  return {
    ka,
    server,
    url: `https://127.0.0.1:${port}`,
    next: () => new Promise((resolve) => waiting.push(resolve)),
  }
}

async function connect(url: string): Promise<ClientHttp2Session> {
  const session = http2.connect(url, { ca: fixture.cert })
  resources.add(session, (s) => s.destroy())
  await once(session, 'connect')
  return session
}

interface StreamResult {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

function get(session: ClientHttp2Session, path: string): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path })
    let headers: IncomingHttpHeaders | null = null
    let ended = false
    let body = ''
    stream.setEncoding('utf8')
    stream.on('response', (h) => (headers = h))
    stream.on('data', (chunk: string) => (body += chunk))
    stream.on('end', () => (ended = true))
    stream.on('error', () => {}) // reported through 'close' below
    stream.on('close', () => {
      if (headers !== null && ended) resolve({ status: Number(headers[':status']), headers, body })
      else reject(new Error(`stream closed without a full response (rstCode ${stream.rstCode})`))
    })
  })
}

describe('shutdown() of an HTTP/2 server', () => {
  it('sends GOAWAY to a connected session and lets its open stream complete', async () => {
    const { ka, url, next } = await start()
    const session = await connect(url)
    const first = await get(session, '/')
    // Connection-specific headers are forbidden in HTTP/2.
    expect(first.headers).not.toHaveProperty('connection')
    expect(first.headers).not.toHaveProperty('keep-alive')
    expect(ka.stats()).toMatchObject({ connections: { open: 1, active: 0, idle: 1 }, requests: 1 })

    const started = next()
    const slow = get(session, '/slow')
    await started
    expect(ka.stats().connections).toMatchObject({ open: 1, active: 1 })
    const goaway = once(session, 'goaway')
    const sessionClosed = once(session, 'close')

    const report = await ka.shutdown({ timeout: 5 })
    const [errorCode] = (await goaway) as [number]
    expect(errorCode).toBe(http2.constants.NGHTTP2_NO_ERROR)
    const result = await slow
    expect(result).toMatchObject({ status: 200, body: 'slow' })
    await sessionClosed
    expect(report).toMatchObject({ closedIdle: 0, completed: 1, forced: 0 })
    expect(ka.stats()).toMatchObject({ connections: { open: 0 }, requests: 2, closes: { drain: 1, forced: 0 } })
  })

  it('sends GOAWAY to an idle session and closes it', async () => {
    const { ka, url } = await start()
    const session = await connect(url)
    await get(session, '/')
    const goaway = once(session, 'goaway')
    const sessionClosed = once(session, 'close')
    const report = await ka.shutdown()
    await goaway
    await sessionClosed
    expect(report).toMatchObject({ closedIdle: 1, completed: 0, forced: 0 })
  })

  it('destroys a session whose stream is still open at the deadline', async () => {
    const { ka, url, next } = await start()
    const session = await connect(url)
    session.on('error', () => {}) // destroyed under it, as expected
    const started = next()
    const hanging = get(session, '/hang').then(
      () => 'answered',
      () => 'failed',
    )
    await started
    const sessionClosed = once(session, 'close')
    const report = await ka.shutdown({ timeout: 0.3 })
    await sessionClosed
    expect(await hanging).toBe('failed')
    expect(report).toMatchObject({ closedIdle: 0, completed: 0, forced: 1 })
    expect(report.elapsed).toBeGreaterThanOrEqual(0.25)
    expect(report.elapsed).toBeLessThan(2)
  })

  it('sends GOAWAY to a session whose TLS handshake completes after the drain began', async () => {
    const { ka, server, url } = await start()
    let report: Promise<ShutdownReport> | null = null
    // The TCP connection is accepted, its TLS handshake not done yet: the drain starts now.
    server.once('connection', () => {
      report = ka.shutdown({ timeout: 5 })
    })
    const session = http2.connect(url, { ca: fixture.cert })
    resources.add(session, (s) => s.destroy())
    const begun = performance.now()
    await once(session, 'goaway')
    // At once: not left for the deadline (5 s), when the session would be destroyed.
    expect(performance.now() - begun).toBeLessThan(2000)
    await once(session, 'close')
    expect(report).not.toBeNull()
    expect(await report!).toMatchObject({ forced: 0 })
  })
})
