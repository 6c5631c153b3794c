// Adversarial review of the lifecycle promise (docs/architecture.md §3, §6, §7): every connection of
// an attached server ends right after a closing response, within its advertised timeout + grace
// (+ one sweep tick) of going idle, or at the shutdown deadline; no request fully written before a
// close decision is lost; stats() stays consistent. `defects` fail today; `holds` pin attacks that held.
import { once } from 'node:events'
import http from 'node:http'
import http2 from 'node:http2'
import { performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createKeepAlive, type KeepAliveController, type KeepAliveStats } from '@keepalive/core'
import { describe, expect, it, vi } from 'vitest'
import { useResources, type Handler } from './helpers/resources.js'
import { fixture } from './helpers/tls.js'
import { connect, connectionHeaders, expectCoherent, expectHeaders, rawRequest, type ConnectOptions, type RawClient, type RawResponse } from './helpers/wire.js'

const resources = useResources()

async function open(port: number, options: ConnectOptions = {}): Promise<RawClient> {
  return resources.add(await connect(port, options), (c) => c.destroy())
}

/** A node:http server attached to `ka` that switches protocols on any upgrade, and a client it switched: no longer HTTP. */
async function upgradedTunnel(ka: KeepAliveController): Promise<{ tunnel: RawClient; switched: RawResponse }> {
  const server = http.createServer((_req, res) => res.end('ok'))
  server.on('upgrade', (_req, socket) => socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n'))
  ka.attach(server)
  const tunnel = await open(await resources.listen(server))
  tunnel.send(
    rawRequest('/', {
      headers: [
        ['Connection', 'Upgrade'],
        ['Upgrade', 'x-test'],
      ],
    }),
  )
  const switched = await tunnel.read()
  expect(switched.status).toBe(101)
  return { tunnel, switched }
}

/** Resolves with the value, or with 'timeout' after `ms`. */
function within<T>(ms: number, promise: Promise<T>): Promise<T | 'timeout'> {
  return Promise.race([
    promise,
    new Promise<'timeout'>((resolve) =>
      resources.add(
        setTimeout(() => resolve('timeout'), ms),
        clearTimeout,
      ),
    ),
  ])
}

/** Seconds from `since` until the client's socket closed, or 'timeout' after `ms`. */
async function closedWithin(client: RawClient, since: number, ms: number): Promise<number | 'timeout'> {
  const at = await within(ms, client.closed)
  return at === 'timeout' ? at : (at - since) / 1000
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => resources.add(setTimeout(resolve, ms), clearTimeout))

/** Every accepted connection is either open or closed for exactly one reason. */
function expectConsistent(stats: KeepAliveStats, accepted: number): void {
  const closed = Object.values(stats.closes).reduce((a, b) => a + b, 0)
  expect(closed + stats.connections.open, JSON.stringify(stats)).toBe(accepted)
  expect(stats.connections.active + stats.connections.idle).toBe(stats.connections.open)
  expect(stats.connections.active).toBeGreaterThanOrEqual(0)
}

/** Resolves once `count` requests have reached the handler, holding their responses. */
function holdResponses(count: number) {
  const held: http.ServerResponse[] = []
  let all!: () => void
  const arrived = new Promise<void>((resolve) => (all = resolve))
  const handler: Handler = (_req, res) => {
    if (held.push(res) === count) all()
  }
  return { held, arrived, handler }
}

describe('defects', () => {
  // A fresh connection is in Node's connection list from its accept (its headersTimeout runs from
  // there), and llhttp skips empty lines without beginning a message: the list is no evidence of a
  // request on a `new` connection. sweep.ts requestArriving() takes it as one, so an empty line
  // pins the socket until Node's headersTimeout (60 s, checked every 30 s).
  it('a fresh connection that sends only an empty line is closed within timeout + grace, like a silent one', async () => {
    const { controller: ka, port, accepted } = await resources.startServer({ timeout: 0.5, grace: 0.2 })
    const client = await open(port)
    const since = performance.now()
    client.send('\r\n')
    const seconds = await closedWithin(client, since, 4000)
    // Promised 0.5 s + 0.2 s grace to send a first request; the sweep ticks every 50 ms.
    expect(seconds).not.toBe('timeout')
    expect(seconds).toBeLessThan(1.5)
    expect(ka.stats().closes.idleTimeout).toBe(1)
    expectConsistent(ka.stats(), accepted())
  })

  it('the drain closes a fresh connection that sent only an empty line once quiet, not at the deadline', async () => {
    const { controller: ka, port } = await resources.startServer({ timeout: 30, drainQuiet: 0.1 })
    const client = await open(port)
    client.send('\r\n')
    await sleep(50)
    const report = await ka.shutdown({ timeout: 4 })
    expect(report.forced).toBe(0)
    expect(report.closedIdle).toBe(1)
    expect(report.elapsed).toBeLessThan(1.5)
    await client.closed
  })

  // tracker.ts decide(): a close of ours (drain, maxAge, shed, evicted) goes on whichever response
  // is written next, even when later requests of a pipelined burst were already received and
  // handed to the application. Node ends the socket after that response (`_last`), and the
  // responses the application writes for the rest are thrown away.
  it('shutdown() during a pipelined burst answers every request already received; only the last closes', async () => {
    const { held, arrived, handler } = holdResponses(3)
    const { controller: ka, port } = await resources.startServer({}, handler)
    const client = await open(port)
    client.send(rawRequest('/1') + rawRequest('/2') + rawRequest('/3'))
    await arrived
    const shutdown = ka.shutdown({ timeout: 5 })
    // Responses close from the listener's close on, in the check phase of this turn (§7).
    await new Promise(setImmediate)
    for (const res of held) res.end('ok')
    const answers = []
    for (let i = 0; i < 3; i++) answers.push(await client.read())
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200])
    expectHeaders(answers[2]!, { connection: 'close', 'keep-alive': null })
    const report = await shutdown
    expect(report).toMatchObject({ completed: 3, forced: 0 })
    expect(ka.stats().requests).toBe(3)
  })

  // Requests Node has parsed when the closing decision is taken are answered (the drain test
  // above); a request still unparsed in the same packet is not yet received, and Node discards it
  // after a closing response, as it does at max=. RFC 9112 §9.3.2: a pipelining client retries it.
  it('a connection past maxAge closes with the response decided first; an unparsed pipelined request is left to the client', async () => {
    const { controller: ka, port } = await resources.startServer({ maxAge: 0.3, maxAgeJitter: 0 })
    const client = await open(port)
    await client.request('/')
    await sleep(450)
    client.send(rawRequest('/a') + rawRequest('/b'))
    const a = await client.read()
    expectHeaders(a, { connection: 'close', 'keep-alive': null })
    await client.closed
    expect(ka.stats().requests).toBe(2)
    expect(ka.stats().closes.maxAge).toBe(1)
  })

  // server.ts adopt(): the first response that ends on an unseen socket is taken as its only
  // request (started = finished = 1), so the connection turns idle while the rest of the pipelined
  // burst, received before attach(), is still being answered. The idle sweep then destroys the
  // socket under those responses (sweep.ts expired() does not look at socket._httpMessage).
  it('attach() during a pipelined burst does not idle-close the socket while its later responses are pending', async () => {
    let arrivedCount = 0
    let allArrived!: () => void
    const arrived = new Promise<void>((resolve) => (allArrived = resolve))
    const server = http.createServer((req, res) => {
      if (++arrivedCount === 3) allArrived()
      resources.add(
        setTimeout(() => res.end('ok'), req.url === '/slow' ? 2500 : 100),
        clearTimeout,
      )
    })
    server.keepAliveTimeout = 1000
    const port = await resources.listen(server)
    const client = await open(port)
    client.send(rawRequest('/1') + rawRequest('/slow') + rawRequest('/3'))
    await arrived
    const ka = createKeepAlive({ timeout: 1, grace: 0.2 })
    ka.attach(server)
    const statuses: number[] = []
    for (let i = 0; i < 3; i++) statuses.push((await client.read()).status)
    expect(statuses).toEqual([200, 200, 200])
    expect(client.error).toBeNull()
    expect(ka.stats().closes.idleTimeout).toBe(0)
  })

  // server.ts stopAccepting() returns early when the server is not listening yet (listen() with a
  // host name is still resolving it), the drain resolves at once, and attachments.stop() turns the
  // sweep and the request channels off while the server stays attached with Node's idle timer at 0.
  // The listener then opens: its connections get Connection: keep-alive and are never closed.
  it('shutdown() while listen() is still resolving its host leaves no connection that never ends', async () => {
    const ka = createKeepAlive({ timeout: 0.5, grace: 0.2 })
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    ka.attach(server)
    server.listen(0, 'localhost')
    resources.add(server, (s) => {
      s.closeAllConnections()
      s.close()
    })
    const closed = once(server, 'close')
    await ka.shutdown({ timeout: 1 })
    // Shut down before it listened: the listener closes as soon as it opens, accepting nothing.
    expect(await within(2000, closed)).not.toBe('timeout')
    expect(server.listening).toBe(false)
    expect(ka.stats().connections.open).toBe(0)
  })

  // docs/architecture.md §7: maxAge is jittered per connection (default ±10%) so
  // recycled clients do not reconnect in one burst. tracker.ts reasonToClose() compares the exact
  // age with options.maxAgeMs: every connection opened together is recycled at the same instant.
  it('maxAge is jittered per connection: connections opened together are not all recycled at once', async () => {
    const { port } = await resources.startServer({ maxAge: 2 })
    const clients = await Promise.all(Array.from({ length: 16 }, () => open(port)))
    const recycledAt: number[] = []
    await Promise.all(
      clients.map(async (client) => {
        for (;;) {
          const response = await client.request('/')
          if (connectionHeaders(response).connection === 'close') return void recycledAt.push(response.receivedAt)
          await sleep(20)
        }
      }),
    )
    // ±10% of 2 s is a 0.4 s window: 16 connections spread over well more than 0.1 s of it.
    expect((Math.max(...recycledAt) - Math.min(...recycledAt)) / 1000).toBeGreaterThan(0.1)
  })

  // With both Content-Length and Transfer-Encoding removed, Node frames the body by closing the
  // connection (`_last`), after writing the Connection: keep-alive and Keep-Alive it was given by
  // keepByFields(). response.ts nodeKeepsAlive() and the fields path ignore `_removedContLen` /
  // `_removedTE`, so the client is promised a reuse that cannot happen.
  it('a response whose body only the close can end does not advertise keep-alive', async () => {
    const { controller: ka, port } = await resources.startServer({}, (_req, res) => {
      res.removeHeader('Content-Length')
      res.removeHeader('Transfer-Encoding')
      res.write('o')
      res.end('k')
    })
    const client = await open(port)
    const response = await client.request('/')
    expect(response.body).toBe('ok')
    await client.closed
    expectHeaders(response, { connection: 'close', 'keep-alive': null })
    expect(ka.stats().connections.open).toBe(0)
  })

  // response.ts checkParser() runs on a controller's first HTTP/1 socket and clears the
  // module-wide `parserKnown` if that socket has no parser. On an allowHTTP1 http2 server the
  // tracker's connection listener is prepended, so it runs before Node's httpConnectionListener has
  // given the socket its parser: from then on isDetached() is false for every socket of the
  // process, and upgraded sockets (WebSocket) on any server are closed as idle.
  it('an HTTP/1.1 client of an allowHTTP1 http2 server does not make upgraded sockets elsewhere time out', async () => {
    vi.resetModules() // a fresh copy of core: the module-wide flag must not leak into other tests
    const core = await import('@keepalive/core')
    const h2 = http2.createSecureServer({ key: fixture.key, cert: fixture.cert, allowHTTP1: true }, (_req, res) => res.end('ok'))
    core.createKeepAlive({ timeout: 0.5, grace: 0.2 }).attach(h2)
    const h2port = await resources.listen(h2 as never)
    const h1 = await open(h2port, { tls: { ca: fixture.cert, ALPNProtocols: ['http/1.1'] } })
    expect((await h1.request('/')).status).toBe(200)

    const ka = core.createKeepAlive({ timeout: 0.5, grace: 0.2 })
    const { tunnel, switched } = await upgradedTunnel(ka)
    // Upgraded sockets are not HTTP any more: no idle timeout of ours applies (well past 0.7 s here).
    expect(await closedWithin(tunnel, switched.receivedAt, 2500)).toBe('timeout')
    expect(ka.stats().closes.idleTimeout).toBe(0)
  })
})

describe('holds', () => {
  it('empty lines inside a pipelined burst and after it neither suspend nor reset the idle time', async () => {
    const { controller: ka, port, accepted } = await resources.startServer({ timeout: 0.5, grace: 0.2 })
    const client = await open(port)
    client.send(rawRequest('/1') + '\r\n' + rawRequest('/2') + '\r\n\r\n')
    await client.read()
    const second = await client.read()
    const seconds = await closedWithin(client, second.receivedAt, 3000)
    expect(seconds).not.toBe('timeout')
    expect(seconds).toBeLessThan(1.5)
    expect(ka.stats().requests).toBe(2)
    expectConsistent(ka.stats(), accepted())
  })

  it('bytes that are not a request get Node’s 400 and the socket ends, on a fresh and on a used connection', async () => {
    const { controller: ka, port, accepted } = await resources.startServer({ timeout: 30 })
    const fresh = await open(port)
    fresh.send('\x16\x03\x01garbage\r\n\r\n')
    await within(3000, fresh.closed)
    expect(fresh.isClosed).toBe(true)
    const used = await open(port)
    await used.request('/')
    used.send('NOT A REQUEST\r\n\r\n')
    await within(3000, used.closed)
    expect(used.isClosed).toBe(true)
    await sleep(100)
    expect(ka.stats().connections.open).toBe(0)
    expectConsistent(ka.stats(), accepted())
  })

  it('a request begun during the drain is waited for and answered with Connection: close', async () => {
    const { controller: ka, port } = await resources.startServer({ timeout: 30, drainQuiet: 0.1 })
    const client = await open(port)
    await client.request('/')
    client.send('GET /late HTTP/1.1\r\nHost: x\r\n')
    await sleep(50)
    const shutdown = ka.shutdown({ timeout: 5 })
    await sleep(400)
    client.send('\r\n')
    expectHeaders(await client.read(), { connection: 'close', 'keep-alive': null })
    expect(await shutdown).toMatchObject({ completed: 1, forced: 0 })
  })

  it('HEAD, 204 and 304 with chunked Transfer-Encoding, and HTTP/1.0 variants, close coherently', async () => {
    const { controller, port, accepted } = await resources.startServer({ timeout: 0.5, grace: 0.2 }, (req, res) => {
      const [, code = '200', mode = ''] = req.url!.split('/')
      if (mode === 'te') res.writeHead(Number(code), { 'Transfer-Encoding': 'chunked' })
      else if (mode === 'nolength') res.writeHead(Number(code))
      res.end(mode === 'nolength' ? 'body' : undefined)
    })
    const cases = [
      { path: '/204/te', version: '1.1' },
      { path: '/304/te', version: '1.1' },
      { path: '/200/te', version: '1.0', headers: [['Connection', 'keep-alive']] },
      { path: '/200/nolength', version: '1.0', headers: [['Connection', 'keep-alive']] },
      { path: '/200/', version: '1.0' },
      { path: '/200/', version: '1.1', method: 'HEAD' },
    ] as const
    for (const c of cases) {
      const client = await open(port)
      const response = await client.request(c.path, { version: c.version, method: 'method' in c ? c.method : 'GET', headers: 'headers' in c ? c.headers : [] })
      expectCoherent(response)
      const seconds = await closedWithin(client, response.receivedAt, 2500)
      expect(seconds, c.path).not.toBe('timeout')
      expect(seconds as number, c.path).toBeLessThan(1.5)
    }
    expectConsistent(controller.stats(), accepted())
  })

  it('every writeHead signature and flushHeaders keep max= counting and close at max', async () => {
    const { controller, port, accepted } = await resources.startServer({ max: 2 }, (req, res) => {
      if (req.url === '/flush') {
        res.flushHeaders()
        res.end('ok')
      } else if (req.url === '/pairs') {
        res.writeHead(200, [
          ['Connection', 'keep-alive'],
          ['Content-Length', '2'],
        ])
        res.end('ok')
      } else if (req.url === '/flat') {
        res.writeHead(200, 'OK', ['connection', 'keep-alive', 'content-length', '2'])
        res.end('ok')
      } else {
        res.writeHead(200, undefined, { 'Keep-Alive': 'timeout=1', 'Content-Length': '2' })
        res.end('ok')
      }
    })
    for (const path of ['/flush', '/pairs', '/flat', '/own']) {
      const client = await open(port)
      const first = await client.request(path)
      expect(connectionHeaders(first).connection, path).toBe('keep-alive')
      const second = await client.request(path)
      expectHeaders(second, { connection: 'close', 'keep-alive': null })
      expect(await closedWithin(client, second.receivedAt, 1500), path).not.toBe('timeout')
    }
    expect(controller.stats().closes.maxRequests).toBe(4)
    expectConsistent(controller.stats(), accepted())
  })

  it('res.destroy() mid-response, and a client that hangs up mid-request, leave stats consistent', async () => {
    const { controller, port, accepted } = await resources.startServer({}, (req, res) => {
      if (req.url === '/destroy') {
        res.write('x')
        res.destroy()
      } else if (req.url === '/hang') {
        // never answered: the client goes away
      } else res.end('ok')
    })
    const a = await open(port)
    await a.request('/')
    a.send(rawRequest('/destroy'))
    await a.closed
    const b = await open(port)
    b.send(rawRequest('/hang'))
    await sleep(100)
    expect(controller.stats().connections).toEqual({ open: 1, active: 1, idle: 0 })
    await b.destroy()
    await sleep(100)
    expect(controller.stats().connections).toEqual({ open: 0, active: 0, idle: 0 })
    expect(controller.stats().requests).toBe(1)
    expectConsistent(controller.stats(), accepted())
  })

  it('Expect: 100-continue answered with a final status closes the connection', async () => {
    const ka = createKeepAlive({ timeout: 0.5, grace: 0.2 })
    const server = http.createServer((_req, res) => res.end('ok'))
    server.on('checkContinue', (req, res) => {
      ka.handle(req, res)
      res.writeHead(417)
      res.end()
    })
    ka.attach(server)
    const port = await resources.listen(server)
    const client = await open(port)
    client.send('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n')
    const response = await client.read()
    expect(response.status).toBe(417)
    expectCoherent(response)
    expect(await closedWithin(client, response.receivedAt, 2000)).not.toBe('timeout')
  })

  it('an upgraded socket is left alone by the idle sweep (no allowHTTP1 server involved)', async () => {
    const ka = createKeepAlive({ timeout: 0.5, grace: 0.2 })
    const { tunnel, switched } = await upgradedTunnel(ka)
    expect(await closedWithin(tunnel, switched.receivedAt, 1500)).toBe('timeout')
    const report = await ka.shutdown({ timeout: 0.3 })
    // Left to the deadline, counted apart from forced: not a failure of the drain.
    expect(report).toMatchObject({ forced: 0, upgraded: 1 })
    await tunnel.closed
  })

  it('shutdown() twice returns one promise; two servers on one controller drain together', async () => {
    const ka: KeepAliveController = createKeepAlive({ drainQuiet: 0.05 })
    const servers = [0, 1].map(() => {
      const s = http.createServer((_req, res) => res.end('ok'))
      ka.attach(s)
      return s
    })
    const ports = await Promise.all(servers.map((s) => resources.listen(s)))
    const clients = await Promise.all(ports.map((p) => open(p)))
    for (const c of clients) await c.request('/')
    const first = ka.shutdown({ timeout: 3 })
    expect(ka.shutdown({ timeout: 9 })).toBe(first)
    expect(await first).toMatchObject({ closedIdle: 2, forced: 0 })
    await Promise.all(clients.map((c) => c.closed))
    expect(ka.stats().closes.drain).toBe(2)
  })
})

describe('references', () => {
  // The hook and the middleware remember the response whose request started last; one that never
  // goes out (its client gone first) must not be held past its connection.
  it('holds no response that never went out once its client has gone', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    let ref: WeakRef<object> | null = null
    let resolveSeen = (): void => {}
    const seen = new Promise<void>((resolve) => (resolveSeen = resolve))
    const { port, controller } = await resources.startServer({}, (_req, res) => {
      ref = new WeakRef(res) // never answered
      resolveSeen()
    })
    const client = await connect(port)
    client.send(rawRequest('/'))
    await seen
    const released = once(controller as unknown as NodeJS.EventEmitter, 'close')
    await client.destroy()
    await released
    for (let i = 0; i < 5; i++) {
      gc()
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(ref!.deref()).toBeUndefined()
  })
})
