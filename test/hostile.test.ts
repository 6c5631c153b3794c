// Hostile and unusual clients and applications against the lifecycle promise: every connection of
// an attached server ends right after a closing response, within its advertised timeout + grace
// (+ one sweep tick) of going idle, or at the shutdown deadline (docs/architecture.md §3).
// Each test here failed before the fix it pins.
import { once } from 'node:events'
import http from 'node:http'
import { constants } from 'node:os'
import { performance } from 'node:perf_hooks'
import { createKeepAlive, gracefulShutdown } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { useResources } from './helpers/resources.js'
import { connect, expectHeaders, header, rawRequest, type RawClient } from './helpers/wire.js'

const resources = useResources()

async function open(port: number): Promise<RawClient> {
  return resources.add(await connect(port), (c) => c.destroy())
}

/** Seconds from `since` (performance.now() ms) until the client's socket closed. */
async function closedAfter(client: RawClient, since: number): Promise<number> {
  return ((await client.closed) - since) / 1000
}

function at(ms: number, action: () => void): void {
  const timer = setTimeout(action, ms)
  resources.add(timer, clearTimeout)
}

describe('bytes that are not a request', () => {
  // Regression: a bare CRLF sent after a keep-alive response marked the socket "request arriving"
  // for good; neither the idle sweep nor the drain closed it, and Node's headersTimeout never started.
  it('a bare CRLF while idle neither resets nor suspends the idle timeout (RFC 9112 §2.2)', async () => {
    const { controller: ka, port } = await resources.startServer({ timeout: 1, grace: 0.2 })
    const client = await open(port)
    const first = await client.request('/')
    expectHeaders(first, { connection: 'keep-alive', 'keep-alive': 'timeout=1, max=999' })
    const idleAt = performance.now()
    at(500, () => client.send('\r\n'))
    const seconds = await closedAfter(client, idleAt)
    // Promised 1 s + 0.2 s grace; the sweep ticks every 50 ms.
    expect(seconds).toBeGreaterThanOrEqual(1.15)
    expect(seconds).toBeLessThan(2)
    expect(ka.stats().closes.idleTimeout).toBe(1)
  })

  it('empty lines sent over and over cannot keep a socket open past its idle bound', async () => {
    const { port } = await resources.startServer({ timeout: 0.5, grace: 0.1 })
    const client = await open(port)
    await client.request('/')
    const idleAt = performance.now()
    const timer = setInterval(() => client.send('\r\n\r\n'), 100)
    resources.add(timer, clearInterval)
    const seconds = await closedAfter(client, idleAt)
    expect(seconds).toBeLessThan(1.5)
  })

  it('the drain closes a socket that sent only empty lines once it is quiet, well before the deadline', async () => {
    const { controller: ka, port } = await resources.startServer({ timeout: 30, drainQuiet: 0.1 })
    const client = await open(port)
    await client.request('/')
    client.send('\r\n')
    await new Promise<void>((resolve) => setImmediate(resolve))
    const report = await ka.shutdown({ timeout: 5 })
    expect(report).toMatchObject({ closedIdle: 1, forced: 0 })
    expect(report.elapsed).toBeLessThan(2)
    await client.closed
  })

  it('a request line begun while idle is left to Node, and answered once it is whole', async () => {
    const { controller: ka, port } = await resources.startServer({ timeout: 0.3, grace: 0.1 })
    const client = await open(port)
    await client.request('/')
    client.send('GET /late HT')
    // Well past the 0.4 s idle bound before the request is whole: a request in progress is not cut.
    await new Promise((resolve) => setTimeout(resolve, 900))
    expect(client.isClosed).toBe(false)
    client.send('TP/1.1\r\nHost: localhost\r\n\r\n')
    const late = await client.read()
    expect(late.status).toBe(200)
    expect(ka.stats().requests).toBe(2)
  })
})

describe('what Node did corrects what was predicted', () => {
  // Regression (a): predicted to close (the Content-Length passed to writeHead was not seen), Node
  // kept it alive, and the socket was never idle-closed.
  it('HTTP/1.0 keep-alive with the application setting Connection: keep-alive and writeHead(200, { Content-Length })', async () => {
    const { controller: ka, port } = await resources.startServer({ timeout: 1, grace: 0.1 }, (_req, res) => {
      res.setHeader('Connection', 'keep-alive')
      res.writeHead(200, { 'Content-Length': '2' })
      res.end('ok')
    })
    const client = await open(port)
    const response = await client.request('/', { version: '1.0', headers: [['Connection', 'keep-alive']] })
    expectHeaders(response, { connection: 'keep-alive', 'keep-alive': 'timeout=1, max=999' })
    expect(ka.stats().connections).toEqual({ open: 1, active: 0, idle: 1 })
    const seconds = await closedAfter(client, response.receivedAt)
    expect(seconds).toBeLessThan(2)
    expect(ka.stats().closes.idleTimeout).toBe(1)
  })

  // Regression (b): writeHead(status, undefined, headers) was not recognised, so with max: 1 the
  // decision said close while the application's Connection: keep-alive made Node keep the socket.
  it('writeHead(200, undefined, headers) with the application saying keep-alive, at max: 1', async () => {
    const { controller: ka, port } = await resources.startServer({ max: 1 }, (_req, res) => {
      res.writeHead(200, undefined, { Connection: 'keep-alive', 'Content-Length': '2' })
      res.end('ok')
    })
    const client = await open(port)
    const response = await client.request('/')
    expectHeaders(response, { connection: 'close', 'keep-alive': null })
    const seconds = await closedAfter(client, response.receivedAt)
    expect(seconds).toBeLessThan(0.5)
    expect(ka.stats().closes.maxRequests).toBe(1)
  })

  it('the drain closes a connection whose predicted close Node did not carry out, and counts it', async () => {
    const { controller: ka, port } = await resources.startServer({ timeout: 30, drainQuiet: 0.1 }, (_req, res) => {
      res.setHeader('Connection', 'keep-alive')
      res.writeHead(200, { 'Content-Length': '2' })
      res.end('ok')
    })
    const client = await open(port)
    await client.request('/', { version: '1.0', headers: [['Connection', 'keep-alive']] })
    const report = await ka.shutdown({ timeout: 5 })
    expect(report).toMatchObject({ closedIdle: 1, completed: 0, forced: 0 })
    expect(report.elapsed).toBeLessThan(2)
  })

  it('a client that asked to close gets Connection: close and no Keep-Alive, whatever the application set', async () => {
    const { port } = await resources.startServer({}, (_req, res) => {
      res.setHeader('Connection', 'keep-alive')
      res.end('ok')
    })
    const client = await open(port)
    const response = await client.request('/', { headers: [['Connection', 'close']] })
    expectHeaders(response, { connection: 'close', 'keep-alive': null })
    await client.closed
  })

  it('reads a closing Connection value as Node does (token boundaries), so no Keep-Alive stands beside it', async () => {
    const { controller: ka, port } = await resources.startServer({}, (_req, res) => {
      // Node ends the socket for any value with "close" between non-word characters.
      res.setHeader('Connection', 'x-close')
      res.end('ok')
    })
    const client = await open(port)
    const response = await client.request('/')
    expect(header(response, 'keep-alive')).toEqual([])
    await client.closed
    expect(ka.stats().connections.open).toBe(0)
  })
})

describe('eviction over maxConnections', () => {
  // Regression: eviction destroyed an idle socket synchronously as a newcomer was accepted, and a
  // pooled client that sent its next request at that moment got ECONNRESET.
  it('never resets a request sent on the idle connection as a newcomer arrives', async () => {
    for (let round = 0; round < 5; round++) {
      const { controller: ka, port } = await resources.startServer({ maxConnections: 1 })
      const pooled = await open(port)
      await pooled.request('/')
      // The newcomer's handshake first, the pooled request right behind it: the server accepts the
      // one while the other is in flight.
      const connecting = open(port)
      await new Promise<void>((resolve) => setImmediate(resolve))
      pooled.send(rawRequest('/next'))
      const newcomer = await connecting
      const next = await pooled.read()
      expect(next.status).toBe(200)
      expect(pooled.error).toBeNull()
      const answer = await newcomer.request('/')
      expect(answer.status).toBe(200)
      expect(ka.stats().closes.evicted).toBeGreaterThanOrEqual(1)
    }
  })

  it('closes the connection that has been quiet longest, once it has been quiet for drainQuiet', async () => {
    const { controller: ka, port } = await resources.startServer({ maxConnections: 2, drainQuiet: 0.05 })
    const oldest = await open(port)
    await oldest.request('/')
    const younger = await open(port)
    await younger.request('/')
    await new Promise((resolve) => setTimeout(resolve, 100))
    const newcomer = await open(port)
    await oldest.closed
    expect(younger.isClosed).toBe(false)
    expect((await newcomer.request('/')).status).toBe(200)
    expect(ka.stats().closes.evicted).toBe(1)
  })

  // Regression: the "leaving" count grew per decided response and shrank per connection, so two
  // closing responses on one connection left it one too high: the cap went unenforced afterwards.
  it('two closing responses on one pipelined connection do not loosen the cap', async () => {
    const held: http.ServerResponse[] = []
    let allHeld!: () => void
    const holding = new Promise<void>((resolve) => (allHeld = resolve))
    const { controller: ka, port } = await resources.startServer({ maxConnections: 1, max: 2 }, (_req, res) => {
      if (held.push(res) === 5) allHeld()
    })
    const a = await open(port)
    a.send(rawRequest('/a1') + rawRequest('/a2') + rawRequest('/a3'))
    const b = await open(port)
    b.send(rawRequest('/b'))
    const c = await open(port)
    c.send(rawRequest('/c'))
    await holding
    const [a1, a2, a3, bRes, cRes] = held as [http.ServerResponse, http.ServerResponse, http.ServerResponse, http.ServerResponse, http.ServerResponse]
    // Three busy connections against a cap of one: nothing idle to evict, so responses close.
    a1.end('ok')
    a2.end('ok') // the 2nd of max 2: closes a
    a3.end('ok') // decided closing too, on the same connection: a still leaves once
    expectHeaders(await a.read(), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
    expectHeaders(await a.read(), { connection: 'close', 'keep-alive': null })
    await a.closed
    bRes.end('ok')
    expectHeaders(await b.read(), { connection: 'close', 'keep-alive': null })
    cRes.end('ok')
    expectHeaders(await c.read(), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
    await b.closed
    expect(ka.stats().connections.open).toBe(1)
    expect(ka.stats().closes).toMatchObject({ maxRequests: 1, evicted: 1 })
  })
})

describe('attach() at every moment', () => {
  // Regression: a request in flight when attach() ran advertised Node's timeout, then Node's idle
  // timer was off and the socket untracked: it stayed open for good.
  it('adopts a connection whose request was in flight at attach(), and closes it when idle', async () => {
    let respond: (() => void) | null = null
    const server = http.createServer((_req, res) => {
      respond = () => res.end('ok')
    })
    server.keepAliveTimeout = 1000
    const port = await resources.listen(server)
    const client = await open(port)
    const started = once(server, 'request')
    client.send(rawRequest('/'))
    await started
    const ka = createKeepAlive({ timeout: 0.3, grace: 0.2 })
    ka.attach(server)
    respond!()
    const response = await client.read()
    expect(header(response, 'keep-alive')).toEqual(['timeout=1']) // Node's own value, as it stood at the request
    const seconds = await closedAfter(client, response.receivedAt)
    // Kept what Node advertised (1 s) plus grace, then closed by us.
    expect(seconds).toBeGreaterThanOrEqual(1.1)
    expect(seconds).toBeLessThan(2.5)
    expect(ka.stats().closes.idleTimeout).toBe(1)
  })

  it('governs a connection that was idle when attach() ran from its next request on', async () => {
    const server = http.createServer((_req, res) => res.end('ok'))
    const port = await resources.listen(server)
    const client = await open(port)
    await client.request('/')
    const ka = createKeepAlive({ timeout: 1, grace: 0.1, max: 3 })
    ka.attach(server)
    const second = await client.request('/')
    expectHeaders(second, { connection: 'keep-alive', 'keep-alive': 'timeout=1, max=2' })
    expect(await closedAfter(client, second.receivedAt)).toBeLessThan(2.5)
  })
})

describe('one controller per server', () => {
  it('a second attach() throws, naming the fix', async () => {
    const { server } = await resources.startServer({})
    expect(() => createKeepAlive().attach(server)).toThrow(/already attached to another keepalive controller/)
  })

  // Regression: gracefulShutdown(server) without keepAlive created a second controller and the
  // middleware's options silently did nothing.
  it('gracefulShutdown without keepAlive drains the controller already attached', async () => {
    const { controller: ka, server, port } = await resources.startServer({ timeout: 65 })
    const graceful = resources.add(gracefulShutdown(server, { exit: false, signals: [], logger: () => {} }), (g) => g.dispose())
    const client = await open(port)
    expectHeaders(await client.request('/'), { 'keep-alive': 'timeout=65, max=999' })
    const report = await graceful.shutdown()
    expect(ka.stats().draining).toBe(true)
    expect(report.closedIdle).toBe(1)
  })

  it('a middleware that finds its server governed by another controller says so, once', async () => {
    const middleware = createKeepAlive({ timeout: 65 })
    const errors: Error[] = []
    middleware.on('error', (error) => errors.push(error))
    const server = http.createServer((req, res) => {
      middleware.handle(req, res)
      res.end('ok')
    })
    const graceful = resources.add(gracefulShutdown(server, { exit: false, signals: [], logger: () => {} }), (g) => g.dispose())
    const port = await resources.listen(server)
    const client = await open(port)
    await client.request('/')
    await client.request('/')
    expect(errors).toHaveLength(1)
    expect(errors[0]!.message).toMatch(/already governed by another keepalive controller/)
    expect((errors[0] as Error & { code?: string }).code).toBe('ERR_KEEPALIVE_ALREADY_ATTACHED')
    await graceful.shutdown()
  })
})

describe('application wrappers around writeHead', () => {
  // Regression: the first request's lazy attach replaced res.writeHead and called the prototype's,
  // dropping wrappers installed before it (on-headers: compression, express-session, response-time).
  it('a writeHead wrapper installed before the middleware still runs on the first response', async () => {
    const ka = createKeepAlive()
    const server = http.createServer((req, res) => {
      const inner = res.writeHead
      res.writeHead = function (this: http.ServerResponse, ...args: Parameters<typeof inner>) {
        this.setHeader('Set-Cookie', 'session=1')
        return inner.apply(this, args)
      } as typeof inner
      ka.handle(req, res)
      res.end('ok')
    })
    const port = await resources.listen(server)
    const client = await open(port)
    for (let i = 0; i < 2; i++) {
      const response = await client.request('/')
      expect(header(response, 'set-cookie')).toEqual(['session=1'])
      expect(header(response, 'keep-alive')).toEqual([`timeout=5, max=${999 - i}`])
    }
  })
})

describe('gracefulShutdown signals', () => {
  it('removes its signal handlers once the shutdown has completed (exit: false)', async () => {
    const { server, controller: ka } = await resources.startServer({})
    const before = process.listenerCount('SIGTERM')
    const beforeInt = process.listenerCount('SIGINT')
    const graceful = gracefulShutdown(server, { keepAlive: ka, exit: false, logger: () => {} })
    expect(process.listenerCount('SIGTERM')).toBe(before + 1)
    await graceful.shutdown()
    expect(process.listenerCount('SIGTERM')).toBe(before)
    expect(process.listenerCount('SIGINT')).toBe(beforeInt)
  })

  it.each([
    [['SIGTREM'], RangeError, 'keepalive: "signals" has an unknown signal "SIGTREM" (string)'],
    [['sigterm'], RangeError, 'keepalive: "signals" has an unknown signal "sigterm" (string); did you mean "SIGTERM"?'],
    [['SIGKILL'], RangeError, 'keepalive: "signals" cannot include SIGKILL: a process cannot catch it'],
    [['SIGSTOP'], RangeError, 'keepalive: "signals" cannot include SIGSTOP: a process cannot catch it'],
    [[15], TypeError, 'keepalive: "signals" must hold signal names such as "SIGTERM", got 15'],
  ])('rejects signals %j at the call', async (signals, Kind, message) => {
    const { server, controller: ka } = await resources.startServer({})
    expect(Object.hasOwn(constants.signals, 'SIGTERM')).toBe(true)
    expect(() => gracefulShutdown(server, { keepAlive: ka, signals: signals as NodeJS.Signals[], exit: false })).toThrow(Kind)
    expect(() => gracefulShutdown(server, { keepAlive: ka, signals: signals as NodeJS.Signals[], exit: false })).toThrow(message)
  })
})

describe('listeners that throw', () => {
  it("a 'close' listener that throws breaks neither the sweep nor the request path; its error is reported", async () => {
    const { controller: ka, port } = await resources.startServer({ timeout: 0.2, grace: 0.1 })
    const errors: Error[] = []
    ka.on('error', (error) => errors.push(error))
    ka.on('close', () => {
      throw new Error('listener bug')
    })
    ka.on('connection', () => {
      throw new Error('listener bug')
    })
    const clients = [await open(port), await open(port), await open(port)]
    for (const client of clients) expect((await client.request('/')).status).toBe(200)
    await Promise.all(clients.map((client) => client.closed))
    expect(ka.stats().closes.idleTimeout).toBe(3)
    expect(errors.length).toBe(6)
    expect(errors.every((error) => error.message === 'listener bug')).toBe(true)
  })
})

describe('behind a proxy with the adaptive policy', () => {
  // Regression: behind { idleTimeout: 60 } at load 0.9 advertised timeout=14.
  it('advertises a timeout above the proxy at high load, and lowers max= instead', async () => {
    const { controller: ka, port } = await resources.startServer({ behind: { idleTimeout: 60 }, adaptive: { signal: () => 0.9, interval: 0.02 } })
    await new Promise<void>((resolve) => {
      const onLoad = (load: number): void => {
        if (load < 0.85) return
        ka.off('load', onLoad)
        resolve()
      }
      ka.on('load', onLoad)
    })
    const client = await open(port)
    const response = await client.request('/')
    const keepAlive = header(response, 'keep-alive')[0] ?? ''
    expect(keepAlive).toMatch(/^timeout=65, max=\d+$/)
    expect(Number(/max=(\d+)/.exec(keepAlive)![1])).toBeLessThan(999)
    expect(ka.stats().timeout).toBe(65)
  })
})
