/**
 * The wire behaviour every target must show, written once (the README's options, `max=` counting and
 * `stats()`, and the per-response decision of docs/architecture.md §4). Each `conformance.<target>.test.ts` runs it against one harness.
 */
import http from 'node:http'
import type { CloseReason, KeepAliveOptions } from '@keepalive/core'
import { Pool } from 'undici'
import { describe, expect, it } from 'vitest'
import type { Harness, RunningServer, StartConfig } from './harness/harness.js'
import { loadReached, nextClose, nextRequestStart } from './helpers/events.js'
import { FRESH_STATS } from './helpers/contract.js'
import { useResources } from './helpers/resources.js'
import {
  connect,
  expectCoherent,
  expectHeaders,
  fromHeaderObject,
  fromRawHeaders,
  header,
  rawRequest,
  saysClose,
  type HeaderLine,
  type RawClient,
} from './helpers/wire.js'

/** Headers of a response that keeps the connection, n-th on its connection, with the defaults. */
const keptAlive = (n: number, timeout = 5, max = 1000): Record<string, string> => ({
  connection: 'keep-alive',
  'keep-alive': `timeout=${timeout}, max=${max - n}`,
})
/** Headers of a response that closes its connection. */
const closing = { connection: 'close', 'keep-alive': null }

/** Upper bound for "closed at once" (Node's own behaviour would wait for the idle timer). */
const PROMPTLY_MS = 1000

export function runConformance(harness: Harness): void {
  describe(`${harness.name}: keep-alive on the wire`, () => {
    const resources = useResources()

    function serve(options?: KeepAliveOptions, config?: StartConfig): Promise<RunningServer> {
      return harness.start(options, config).then((server) => resources.add(server, (s) => s.close()))
    }

    async function client(server: RunningServer): Promise<RawClient> {
      return resources.add(await connect(server.port), (c) => c.destroy())
    }

    /** One request on a new connection: 200 with Connection: close, the socket closed, and a close event of `reason`. */
    async function closesAfterOneResponse(server: RunningServer, reason: CloseReason): Promise<void> {
      const closed = nextClose(server.controller)
      const c = await client(server)
      const response = await c.request('/')
      expect(response.status).toBe(200)
      expectHeaders(response, closing)
      await c.closed
      expect(await closed).toMatchObject({ reason })
    }

    describe('HTTP/1.1', () => {
      it('sends exactly one Connection: keep-alive and one Keep-Alive: timeout=5, max=999 by default', async () => {
        const server = await serve()
        const c = await client(server)
        const first = await c.request('/')
        expect(first.status).toBe(200)
        expect(first.body).toBe('ok')
        expectHeaders(first, keptAlive(1))
        expectHeaders(await c.request('/'), keptAlive(2))
        expect(c.isClosed).toBe(false)
      })

      it('counts max down and closes the connection on the max-th response when max is 3', async () => {
        const server = await serve({ max: 3 })
        const closed = nextClose(server.controller)
        const c = await client(server)
        expectHeaders(await c.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
        expectHeaders(await c.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
        const third = await c.request('/')
        expect(third.status).toBe(200)
        expectHeaders(third, closing)
        // The server closes the socket itself, right after the response (not at its idle timer).
        expect((await c.closed) - third.receivedAt).toBeLessThan(PROMPTLY_MS)
        expect(await closed).toMatchObject({ reason: 'maxRequests', requests: 3 })
        expect(server.controller.stats().closes.maxRequests).toBe(1)
      })

      it('chunks a streamed body of unknown length and keeps the connection', async () => {
        const server = await serve()
        const c = await client(server)
        const streamed = await c.request('/stream')
        expect(streamed.body).toBe('hello world')
        expectHeaders(streamed, { ...keptAlive(1), 'transfer-encoding': 'chunked', 'content-length': null })
        expectHeaders(await c.request('/'), keptAlive(2))
      })

      it('sends no Keep-Alive and closes when the client sends Connection: close', async () => {
        const server = await serve()
        const c = await client(server)
        const response = await c.request('/', { headers: [['Connection', 'close']] })
        expect(response.status).toBe(200)
        expectHeaders(response, closing)
        await c.closed
      })

      it('answers HEAD with the policy headers and no body, and keeps the connection', async () => {
        const server = await serve()
        const c = await client(server)
        const head = await c.request('/', { method: 'HEAD' })
        expect(head.status).toBe(200)
        expectHeaders(head, keptAlive(1))
        const get = await c.request('/')
        expect(get.body).toBe('ok')
        expectHeaders(get, keptAlive(2))
      })

      it('gives 404 and thrown-error responses the same policy headers', async () => {
        const server = await serve()
        const c = await client(server)
        const missing = await c.request('/no-such-route')
        expect(missing.status).toBe(404)
        expectHeaders(missing, keptAlive(1))
        const thrown = await c.request('/throw')
        expect(thrown.status).toBe(500)
        expectHeaders(thrown, keptAlive(2))
        expectHeaders(await c.request('/'), keptAlive(3))
      })

      it('counts max right over pipelined requests', async () => {
        const server = await serve()
        const c = await client(server)
        c.send(rawRequest('/') + rawRequest('/stream') + rawRequest('/') + rawRequest('/no-such-route'))
        expectHeaders(await c.read(), keptAlive(1))
        expectHeaders(await c.read(), keptAlive(2))
        expectHeaders(await c.read(), keptAlive(3))
        const fourth = await c.read()
        expect(fourth.status).toBe(404)
        expectHeaders(fourth, keptAlive(4))
        expect(server.controller.stats()).toMatchObject({ requests: 4, reuseRatio: 3 / 4 })
      })

      it('closes after the max-th of several pipelined requests and answers none after it', async () => {
        const server = await serve({ max: 2 })
        const c = await client(server)
        c.send(rawRequest('/') + rawRequest('/') + rawRequest('/'))
        expectHeaders(await c.read(), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
        expectHeaders(await c.read(), closing)
        await c.closed
        expect(c.unread).toBe('')
      })
    })

    describe('HTTP/1.0', () => {
      it('sends no Keep-Alive and closes when the client does not ask for keep-alive', async () => {
        const server = await serve()
        const c = await client(server)
        const response = await c.request('/', { version: '1.0' })
        expect(response.status).toBe(200)
        expect(response.body).toBe('ok')
        expectHeaders(response, { 'keep-alive': null })
        expect(saysClose(response)).toBe(true)
        await c.closed
      })

      it('keeps the connection with Keep-Alive params when the client asks and the length is known', async () => {
        const server = await serve()
        const c = await client(server)
        const keepAlive: HeaderLine[] = [['Connection', 'keep-alive']]
        const first = await c.request('/', { version: '1.0', headers: keepAlive })
        expect(first.body).toBe('ok')
        expectHeaders(first, keptAlive(1))
        const second = await c.request('/', { version: '1.0', headers: keepAlive })
        expect(second.body).toBe('ok')
        expectHeaders(second, keptAlive(2))
      })

      it('sends no Keep-Alive and closes for a streamed body of unknown length, even if the client asks', async () => {
        const server = await serve()
        const c = await client(server)
        const response = await c.request('/stream', { version: '1.0', headers: [['Connection', 'keep-alive']] })
        expect(response.status).toBe(200)
        expect(response.body).toBe('hello world')
        expectHeaders(response, { 'keep-alive': null, 'content-length': null, 'transfer-encoding': null })
        expect(header(response, 'connection')).not.toContain('keep-alive')
        await c.closed
      })
    })

    describe('what the application sets', () => {
      it('keeps the application’s own Keep-Alive as the only one, and the socket as long as it promises', async () => {
        const server = await serve({ timeout: 1, grace: 0.1 })
        const own = await client(server)
        const ours = await client(server)
        const response = await own.request('/app-keepalive')
        expectHeaders(response, { connection: 'keep-alive', 'keep-alive': 'timeout=30' })
        expectHeaders(await ours.request('/'), keptAlive(1, 1))
        // Our own default closes `ours` after 1.1 s; the application promised 30 s on `own`.
        await ours.closed
        expect(own.isClosed).toBe(false)
        expectHeaders(await own.request('/'), keptAlive(2, 1))
      })

      it('removes the application’s Keep-Alive from a response that closes the connection', async () => {
        const server = await serve({ max: 2 })
        const c = await client(server)
        expectHeaders(await c.request('/app-keepalive'), { connection: 'keep-alive', 'keep-alive': 'timeout=30' })
        expectHeaders(await c.request('/app-keepalive'), closing) // the max-th response
        await c.closed
        const leaving = await client(server)
        expectHeaders(await leaving.request('/app-keepalive', { headers: [['Connection', 'close']] }), closing)
        await leaving.closed
      })

      it('sends no Keep-Alive beside the application’s Connection: close, and closes', async () => {
        const server = await serve()
        const c = await client(server)
        const response = await c.request('/app-close')
        expect(response.status).toBe(200)
        expectHeaders(response, closing)
        await c.closed
      })
    })

    describe('options', () => {
      it('closes every connection after one response when timeout is 0', async () => {
        const server = await serve({ timeout: 0 })
        for (let i = 0; i < 2; i++) await closesAfterOneResponse(server, 'maxRequests')
        expect(server.controller.stats().closes.maxRequests).toBe(2)
      })

      it('closes a connection older than maxAge with its next response', async () => {
        const server = await serve({ maxAge: 0.5 })
        const closed = nextClose(server.controller)
        const c = await client(server)
        expectHeaders(await c.request('/'), keptAlive(1))
        // Answered after 0.6 s: the connection is past its age when this response's headers are decided.
        const late = await c.request('/slow?ms=600')
        expect(late.status).toBe(200)
        expectHeaders(late, closing)
        await c.closed
        expect(await closed).toMatchObject({ reason: 'maxAge', requests: 2 })
        expect(server.controller.stats().closes.maxAge).toBe(1)
      })

      it('keeps an idle socket for timeout + grace and closes it soon after', async () => {
        const server = await serve({ timeout: 1, grace: 0.3 })
        const closed = nextClose(server.controller)
        const c = await client(server)
        const response = await c.request('/')
        expectHeaders(response, keptAlive(1, 1))
        const idleMs = (await c.closed) - response.receivedAt
        // The server's timer starts as the response is written, a moment before we read it: allow 100 ms.
        expect(idleMs).toBeGreaterThanOrEqual(1300 - 100)
        expect(idleMs).toBeLessThan(1300 + 1500) // generous slack: a busy 2-core machine
        expect(await closed).toMatchObject({ reason: 'idleTimeout', requests: 1 })
        expect(server.controller.stats().closes.idleTimeout).toBe(1)
      })

      it('closes a connection that never sends a request like an idle one', async () => {
        const server = await serve({ timeout: 0.5, grace: 0.2 })
        const closed = nextClose(server.controller)
        const c = await client(server)
        const connectedAt = performance.now()
        const idleMs = (await c.closed) - connectedAt
        expect(c.received).toBe(0)
        expect(idleMs).toBeGreaterThanOrEqual(500)
        expect(idleMs).toBeLessThan(700 + 1500)
        expect(await closed).toMatchObject({ reason: 'idleTimeout', requests: 0 })
      })

      it('advertises no max= and reports max as null when max is Infinity', async () => {
        const server = await serve({ max: Infinity })
        const c = await client(server)
        expectHeaders(await c.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5' })
        expect(server.controller.stats().max).toBeNull()
        expect(JSON.parse(JSON.stringify(server.controller.stats()))).toStrictEqual(server.controller.stats())
      })

      it('sheds keep-alive once the load signal has risen, counting closes.shed', async () => {
        const server = await serve({ adaptive: { signal: () => 1, interval: 0.05 } })
        await loadReached(server.controller, 0.95)
        // Full load: the advertised numbers are at their floors too.
        expect(server.controller.stats()).toMatchObject({ load: 1, timeout: 1, max: 10 })
        await closesAfterOneResponse(server, 'shed')
        expect(server.controller.stats().closes.shed).toBe(1)
      })

      it('evicts the longest-idle connection when a client arrives over maxConnections', async () => {
        const server = await serve({ maxConnections: 3 })
        const idle: RawClient[] = []
        for (let i = 0; i < 3; i++) {
          const c = await client(server)
          expectHeaders(await c.request('/'), keptAlive(1))
          idle.push(c)
        }
        const evicted = nextClose(server.controller, 'evicted')
        const fourth = await client(server)
        await idle[0]!.closed
        expect(idle[0]!.unread).toBe('')
        expect(idle[1]!.isClosed || idle[2]!.isClosed).toBe(false)
        const served = await fourth.request('/')
        expect(served.status).toBe(200)
        expectHeaders(served, keptAlive(1))
        expect(await evicted).toMatchObject({ reason: 'evicted', requests: 1 })
        expect(server.controller.stats().closes.evicted).toBe(1)
        expect(server.controller.stats().connections.open).toBe(3)
      })

      it('closes a connection over maxConnectionsPerIp without a response, and frees the slot on close', async () => {
        const server = await serve({ maxConnectionsPerIp: 2 })
        const first = await client(server)
        const second = await client(server)
        expect((await first.request('/')).status).toBe(200)
        expect((await second.request('/')).status).toBe(200)

        const refused = nextClose(server.controller, 'perIp')
        const third = await client(server)
        third.send(rawRequest('/'))
        await third.closed
        expect(third.received).toBe(0)
        expect(await refused).toMatchObject({ reason: 'perIp', requests: 0 })
        expect(server.controller.stats().closes.perIp).toBe(1)

        const released = nextClose(server.controller, 'client')
        await first.end()
        await released
        const fourth = await client(server)
        const response = await fourth.request('/')
        expect(response.status).toBe(200)
        expectHeaders(response, keptAlive(1))
        expect(server.controller.stats().closes.perIp).toBe(1)
      })
    })

    describe('malformed request headers', () => {
      const hostile: [string, HeaderLine[], '1.0' | '1.1'][] = [
        ['garbage Connection', [['Connection', 'yes please; =;,,']], '1.1'],
        ['empty Connection', [['Connection', '']], '1.1'],
        ['Connection: close, keep-alive', [['Connection', 'close, keep-alive']], '1.1'],
        ['Connection: keep-alive, close on 1.0', [['Connection', 'keep-alive, close']], '1.0'],
        ['weird case of name and value on 1.0', [['cOnNeCtIoN', 'KeEp-AlIvE']], '1.0'],
        [
          'duplicate Connection headers',
          [
            ['Connection', 'keep-alive'],
            ['Connection', 'keep-alive'],
          ],
          '1.1',
        ],
        [
          'conflicting duplicate Connection headers',
          [
            ['Connection', 'keep-alive'],
            ['Connection', 'close'],
          ],
          '1.1',
        ],
        ['a huge Connection header', [['Connection', 'keep-alive, '.repeat(1000)]], '1.1'],
        ['garbage Keep-Alive', [['Keep-Alive', 'timeout=abc, max=-1, =, ;;']], '1.1'],
        ['huge Keep-Alive numbers', [['Keep-Alive', `timeout=${'9'.repeat(400)}, max=1e999`]], '1.1'],
        ['empty Keep-Alive', [['Keep-Alive', '']], '1.1'],
        [
          'duplicate Keep-Alive headers',
          [
            ['Keep-Alive', 'timeout=1'],
            ['Keep-Alive', 'timeout=2, max=3'],
          ],
          '1.1',
        ],
        [
          'a huge Keep-Alive header on 1.0',
          [
            ['Connection', 'keep-alive'],
            ['Keep-Alive', 'timeout=1, '.repeat(1000)],
          ],
          '1.0',
        ],
      ]

      it('never crash the server and never get Keep-Alive beside Connection: close', async () => {
        const server = await serve()
        for (const [, headers, version] of hostile) {
          const c = await client(server)
          const response = await c.request('/', { version, headers })
          expect(response.status).not.toBeGreaterThanOrEqual(500)
          expectCoherent(response)
          if (saysClose(response) || header(response, 'connection').length === 0) {
            expectHeaders(response, { 'keep-alive': null })
            await c.closed
          } else {
            expectHeaders(response, keptAlive(1))
          }
          await c.destroy()
        }
        // Still serving as before.
        const c = await client(server)
        expectHeaders(await c.request('/'), keptAlive(1))
      })
    })

    describe('stats()', () => {
      it('has exactly the documented shape, round-trips through JSON, and moves as requests are served', async () => {
        const server = await serve()
        const { controller } = server
        expect(controller.stats()).toStrictEqual(FRESH_STATS)

        const c = await client(server)
        const started = nextRequestStart(server.server)
        c.send(rawRequest('/slow?ms=100'))
        await started
        expect(controller.stats().connections).toStrictEqual({ open: 1, active: 1, idle: 0 })
        expect(controller.stats().requests).toBe(0)
        await c.read()
        expect(controller.stats()).toMatchObject({ connections: { open: 1, active: 0, idle: 1 }, requests: 1, reuseRatio: 0 })
        await c.request('/')
        expect(controller.stats()).toMatchObject({ connections: { open: 1, active: 0, idle: 1 }, requests: 2, reuseRatio: 0.5 })

        const closed = nextClose(controller, 'client')
        await c.end()
        expect(await closed).toMatchObject({ reason: 'client', requests: 2 })
        const after = controller.stats()
        expect(after).toMatchObject({ connections: { open: 0, active: 0, idle: 0 }, requests: 2, reuseRatio: 0.5 })
        expect(after.closes.client).toBe(1)
        expect(JSON.parse(JSON.stringify(after))).toStrictEqual(after)
      })
    })

    describe('real clients', () => {
      it('lets http.Agent({ keepAlive: true, maxSockets: 1 }) reuse one connection for 5 requests', async () => {
        const server = await serve()
        const agent = resources.add(new http.Agent({ keepAlive: true, maxSockets: 1 }), (a) => a.destroy())
        let connections = 0
        server.controller.on('connection', () => connections++)
        for (let n = 1; n <= 5; n++) {
          const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
            http.get(`${server.url}/`, { agent }, resolve).on('error', reject)
          })
          let body = ''
          for await (const chunk of response) body += String(chunk)
          expect(response.statusCode).toBe(200)
          expect(body).toBe('ok')
          expectHeaders(fromRawHeaders(response.rawHeaders), keptAlive(n))
        }
        expect(connections).toBe(1)
        expect(server.controller.stats()).toMatchObject({ connections: { open: 1 }, requests: 5, reuseRatio: 4 / 5 })
      })

      it('lets an undici Pool with one connection reuse it for 5 requests', async () => {
        const server = await serve()
        const pool = resources.add(new Pool(server.url, { connections: 1 }), (p) => p.destroy())
        let connections = 0
        server.controller.on('connection', () => connections++)
        for (let n = 1; n <= 5; n++) {
          const response = await pool.request({ path: '/', method: 'GET' })
          expect(response.statusCode).toBe(200)
          expect(await response.body.text()).toBe('ok')
          expectHeaders(fromHeaderObject(response.headers), keptAlive(n))
        }
        expect(connections).toBe(1)
        expect(server.controller.stats()).toMatchObject({ connections: { open: 1 }, requests: 5, reuseRatio: 4 / 5 })
      })
    })

    describe('setup', () => {
      it('throws a TypeError through the adapter for an unknown option', async () => {
        await expect(harness.start({ maxage: 1 } as KeepAliveOptions)).rejects.toThrow(TypeError)
        await expect(harness.start({ maxage: 1 } as KeepAliveOptions)).rejects.toThrow('unknown option "maxage"; did you mean "maxAge"?')
      })

      if (harness.lazyAttach) {
        it('applies the policy from the first request when the application never calls attach()', async () => {
          const server = await serve({ max: 3 }, { attach: false })
          const closed = nextClose(server.controller)
          const c = await client(server)
          expectHeaders(await c.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
          expectHeaders(await c.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
          expectHeaders(await c.request('/'), closing)
          expect(await closed).toMatchObject({ reason: 'maxRequests', requests: 3 })
          expect(server.controller.stats()).toMatchObject({ requests: 3, closes: { maxRequests: 1 } })
        })
      }

      if (harness.hijack) {
        it('gives a hijacked reply the same policy headers', async () => {
          const server = await serve()
          const c = await client(server)
          const hijacked = await c.request('/hijack')
          expect(hijacked.body).toBe('ok')
          expectHeaders(hijacked, keptAlive(1))
          expectHeaders(await c.request('/hijack'), keptAlive(2))
        })
      }
    })
  })
}
