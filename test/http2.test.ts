/**
 * HTTP/2 (`http2.createSecureServer`, compat API, and Fastify 5 with `http2: true`): h2 responses
 * never carry connection-specific headers; HTTP/1.1 clients of an `allowHTTP1` server get the full policy.
 */
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import http2, { type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { createKeepAlive, type KeepAliveController } from '@keepalive/core'
import keepAlive from '@keepalive/fastify'
import fastify5 from 'fastify5'
import { describe, expect, it } from 'vitest'
import { nextClose } from './helpers/events.js'
import { useResources } from './helpers/resources.js'
import { fixture } from './helpers/tls.js'
import { connect, expectHeaders, fromHeaderObject, fromRawHeaders } from './helpers/wire.js'

const keptAlive = (n: number): Record<string, string> => ({ connection: 'keep-alive', 'keep-alive': `timeout=5, max=${1000 - n}` })
const noConnectionHeaders = { connection: null, 'keep-alive': null }

/** One h2 request on a session: its response headers and body. */
async function get(session: ClientHttp2Session, path: string): Promise<{ headers: IncomingHttpHeaders; body: string }> {
  const stream = session.request({ ':path': path })
  stream.setEncoding('utf8')
  const [headers] = (await once(stream, 'response')) as [IncomingHttpHeaders]
  let body = ''
  for await (const chunk of stream) body += String(chunk)
  return { headers, body }
}

/** An HTTP/1.1 request over TLS through `agent` (which offers ALPN `http/1.1`). */
async function getHttp1(port: number, agent: https.Agent): Promise<{ response: IncomingMessage; body: string; alpn: unknown }> {
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    https.get(`https://localhost:${port}/`, { agent }, resolve).on('error', reject)
  })
  const alpn = (response.socket as TLSSocket).alpnProtocol // read now: the socket returns to the agent once read
  let body = ''
  for await (const chunk of response) body += String(chunk)
  return { response, body, alpn }
}

describe('http2: keep-alive headers', () => {
  const resources = useResources()

  function h2client(port: number): ClientHttp2Session {
    const session = http2.connect(`https://localhost:${port}`, { ca: fixture.cert })
    return resources.add(session, async (s) => {
      if (s.closed) return
      const closed = once(s, 'close')
      s.close()
      await closed
    })
  }

  function http1Agent(): https.Agent {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: fixture.cert, ALPNProtocols: ['http/1.1'] })
    return resources.add(agent, (a) => a.destroy())
  }

  describe('http2.createSecureServer with the compat API', () => {
    async function serve(): Promise<{ port: number; controller: KeepAliveController; errors: unknown[] }> {
      const errors: unknown[] = []
      const controller = createKeepAlive()
      const server = http2.createSecureServer({ key: fixture.key, cert: fixture.cert, allowHTTP1: true }, (req, res) => {
        controller.handle(req, res)
        res.setHeader('Content-Type', 'text/plain')
        res.end('ok')
      })
      server.on('sessionError', (error) => errors.push(error))
      server.on('error', (error) => errors.push(error))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      controller.attach(server)
      resources.add(server, (s) => new Promise((resolve) => s.close(resolve)))
      return { port: (server.address() as AddressInfo).port, controller, errors }
    }

    it('sends no Connection or Keep-Alive on h2 responses, and nothing throws', async () => {
      const { port, controller, errors } = await serve()
      const session = h2client(port)
      session.on('error', (error) => errors.push(error))
      for (let n = 0; n < 3; n++) {
        const { headers, body } = await get(session, '/')
        expect(headers[':status']).toBe(200)
        expect(body).toBe('ok')
        expectHeaders(fromHeaderObject(headers), noConnectionHeaders)
      }
      const closed = nextClose(controller, 'client')
      session.close()
      await closed
      expect(controller.stats()).toMatchObject({ requests: 3, reuseRatio: 2 / 3, connections: { open: 0 } })
      expect(errors).toEqual([])
    })

    it('gives an HTTP/1.1 client of an allowHTTP1 server the full policy', async () => {
      const { port, controller, errors } = await serve()
      const raw = resources.add(await connect(port, { tls: { ca: fixture.cert, ALPNProtocols: ['http/1.1'] } }), (c) => c.destroy())
      expectHeaders(await raw.request('/'), keptAlive(1))
      expectHeaders(await raw.request('/'), keptAlive(2))

      const agent = http1Agent()
      for (let n = 1; n <= 2; n++) {
        const { response, body, alpn } = await getHttp1(port, agent)
        expect(alpn).toBe('http/1.1')
        expect(response.httpVersion).toBe('1.1')
        expect(body).toBe('ok')
        expectHeaders(fromRawHeaders(response.rawHeaders), keptAlive(n))
      }
      expect(controller.stats()).toMatchObject({ requests: 4, reuseRatio: 2 / 4, connections: { open: 2 } })
      expect(errors).toEqual([])
    })
  })

  describe('Fastify 5 with http2: true and allowHTTP1', () => {
    async function serve(): Promise<number> {
      const app = fastify5({ http2: true, https: { allowHTTP1: true, key: fixture.key, cert: fixture.cert } })
      resources.add(app, (a) => a.close())
      await app.register(keepAlive)
      app.get('/', async () => 'ok')
      await app.listen({ port: 0, host: '127.0.0.1' })
      return (app.server.address() as AddressInfo).port
    }

    it('answers an h2 request without connection headers', async () => {
      const port = await serve()
      const session = h2client(port)
      for (let n = 0; n < 2; n++) {
        const { headers, body } = await get(session, '/')
        expect(headers[':status']).toBe(200)
        expect(body).toBe('ok')
        expectHeaders(fromHeaderObject(headers), noConnectionHeaders)
      }
    })

    it('gives an HTTP/1.1 client the full policy', async () => {
      const port = await serve()
      const agent = http1Agent()
      for (let n = 1; n <= 2; n++) {
        const { response, body } = await getHttp1(port, agent)
        expect(body).toBe('ok')
        expectHeaders(fromRawHeaders(response.rawHeaders), keptAlive(n))
      }
    })
  })
})
