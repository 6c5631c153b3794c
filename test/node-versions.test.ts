// Where Node.js versions differ in their keep-alive internals, core must make them behave alike.
// These run on every version of the matrix (scripts/test.mjs): Node 20, 22, 24 and 26.
import http from 'node:http'
import { once } from 'node:events'
import net, { type AddressInfo } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { createKeepAlive } from '@keepalive/core'
import { connect, expectHeaders } from './helpers/wire.js'
import { useResources } from './helpers/resources.js'
import { checkHeaderStore, checkNodeFields, headerStoreOf, nodeFields, PINNED_MAJORS as pinnedMajors } from '../packages/core/src/response.js'

const resources = useResources()
const major = Number(process.versions.node.split('.')[0])

async function serve(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  resources.add(server, (s) => {
    s.closeAllConnections()
    s.close()
  })
  return (server.address() as AddressInfo).port
}

describe(`Node ${process.version}`, () => {
  it("closes an idle socket at timeout + grace whatever Node's own keepAliveTimeout and keepAliveTimeoutBuffer say", async () => {
    const ka = createKeepAlive({ timeout: 0.4, grace: 0.2 })
    // keepAliveTimeoutBuffer exists from Node 24 on (older versions ignore the option); Node 20
    // adds a fixed 1 s. Neither may stretch or shorten what we advertise.
    const server = http.createServer({ keepAliveTimeout: 3000, keepAliveTimeoutBuffer: 3000 } as http.ServerOptions, (req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    ka.attach(server)
    const port = await serve(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    const response = await client.request('/')
    expectHeaders(response, { connection: 'keep-alive', 'keep-alive': 'timeout=0, max=999' })
    const idleFor = (await client.closed) - response.receivedAt
    expect(idleFor).toBeGreaterThanOrEqual(550)
    expect(idleFor).toBeLessThan(2000)
    expect(server.keepAliveTimeout).toBe(0)
  })

  // The hook reads this store once per response to see whether the application set Connection or
  // Keep-Alive (response.ts); where it is missing or shaped otherwise, hasHeader() answers instead.
  it("keeps a response's headers in the store the hook reads: kOutHeaders, null until set, keyed by lower-case name", () => {
    const res = new http.ServerResponse(new http.IncomingMessage(new net.Socket()))
    const symbol = Object.getOwnPropertySymbols(res).find((s) => s.description === 'kOutHeaders')
    expect(symbol).toBeDefined()
    const store = (): Record<string, unknown> | null | undefined => (res as unknown as Record<symbol, Record<string, unknown> | null | undefined>)[symbol!]
    expect(store()).toBeNull()
    res.setHeader('Keep-Alive', 'timeout=1')
    expect(store()?.['keep-alive']).toEqual(['Keep-Alive', 'timeout=1'])
    expect(store()?.connection).toBeUndefined()
  })

  // The request hook calls a server's one 'request' listener itself where Node's emit would do just
  // that (server.ts): it reads the emitter's own kCapture flag and EventEmitter.usingDomains to know.
  it("keeps an emitter's captureRejections in an own kCapture field, and usingDomains a boolean until node:domain loads", async () => {
    const { EventEmitter } = await import('node:events')
    const captureOf = (server: http.Server): unknown => {
      const symbol = Object.getOwnPropertySymbols(server).find((s) => s.description === 'kCapture')
      return symbol === undefined ? 'missing' : (server as unknown as Record<symbol, unknown>)[symbol]
    }
    expect(captureOf(http.createServer())).toBe(false)
    const before = EventEmitter.captureRejections
    EventEmitter.captureRejections = true
    try {
      expect(captureOf(http.createServer())).toBe(true)
    } finally {
      EventEmitter.captureRejections = before
    }
    expect((EventEmitter as unknown as { usingDomains?: unknown }).usingDomains).toBe(false)
    expect(http.Server.prototype.emit).toBe(EventEmitter.prototype.emit)
  })

  // On Node 20 to 26 core takes both as pinned and probes nothing at load (response.ts): these are the pins.
  it('writes the connection headers from the response fields, as core takes it on this Node', () => {
    expect(pinnedMajors.min <= major && major <= pinnedMajors.max).toBe(true)
    expect(checkNodeFields()).toBe(true)
    expect(nodeFields).toBe(true)
    expect(checkHeaderStore()?.description).toBe('kOutHeaders')
    expect(headerStoreOf(new http.ServerResponse(new http.IncomingMessage(new net.Socket())))).toBe(checkHeaderStore())
  })

  it("sends one Keep-Alive of ours, never Node's own beside it", async () => {
    const ka = createKeepAlive()
    const server = http.createServer({ keepAliveTimeout: 7000 }, (req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    ka.attach(server)
    const port = await serve(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
  })

  it('takes over maxRequestsPerSocket: no 503 past it, max= counts down, the socket closes after Connection: close', async () => {
    const ka = createKeepAlive({ max: 3 })
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    server.maxRequestsPerSocket = 2
    ka.attach(server)
    const port = await serve(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    expectHeaders(await client.request('/'), { 'keep-alive': 'timeout=5, max=2' })
    expectHeaders(await client.request('/'), { 'keep-alive': 'timeout=5, max=1' })
    const last = await client.request('/')
    expect(last.status).toBe(200)
    expectHeaders(last, { connection: 'close', 'keep-alive': null })
    const closedAfter = (await client.closed) - last.receivedAt
    expect(closedAfter).toBeLessThan(1000)
  })

  it("keeps an idle socket open when the drain stops the listener, unlike Node's own server.close()", async () => {
    const ka = createKeepAlive({ grace: 0.5 })
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    ka.attach(server)
    const port = await serve(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    await client.request('/')
    const report = ka.shutdown({ timeout: 5 })
    // The listener closes from the check phase of this turn, after its last poll.
    await new Promise<void>((resolve) => setImmediate(resolve))
    expect(server.listening).toBe(false)
    // The socket is idle but was used just now: a request already on its way is still answered.
    const late = await client.request('/')
    expect(late.status).toBe(200)
    expectHeaders(late, { connection: 'close', 'keep-alive': null })
    await client.closed
    expect(await report).toMatchObject({ completed: 1, forced: 0 })
  })

  it("keeps each connection's own Keep-Alive values across servers and connections (Node 26 caches the last line it rendered)", async () => {
    // Node 26's _storeHeader keeps the last `Keep-Alive` line in a module-level cache keyed on
    // _keepAliveTimeout and _maxRequestsPerSocket, which keepalive sets per response.
    const short = createKeepAlive({ timeout: 2.5 })
    const long = createKeepAlive({ behind: { idleTimeout: 60 } })
    const serverOf = (ka: typeof short): http.Server => {
      const server = http.createServer((req, res) => {
        ka.handle(req, res)
        res.end('ok')
      })
      ka.attach(server)
      return server
    }
    const shortPort = await serve(serverOf(short))
    const longPort = await serve(serverOf(long))
    const a = resources.add(await connect(shortPort), (c) => c.destroy())
    const b = resources.add(await connect(shortPort), (c) => c.destroy())
    const c = resources.add(await connect(longPort), (c) => c.destroy())
    expectHeaders(await a.request('/'), { 'keep-alive': 'timeout=2, max=999' })
    expectHeaders(await a.request('/'), { 'keep-alive': 'timeout=2, max=998' })
    expectHeaders(await c.request('/'), { 'keep-alive': 'timeout=65, max=999' })
    expectHeaders(await b.request('/'), { 'keep-alive': 'timeout=2, max=999' })
    expectHeaders(await a.request('/'), { 'keep-alive': 'timeout=2, max=997' })
    expectHeaders(await c.request('/'), { 'keep-alive': 'timeout=65, max=998' })
  })

  // Node 26 hands the 'upgrade' listener a stream wrapping the socket while the upgrade request's
  // body is still arriving, and keeps the HTTP parser on the socket until that body has ended;
  // Node 20 to 24 free the parser at once and hand over the socket itself. The tracker takes a
  // socket without a parser as upgraded (`detached`), so on Node 26 such a socket still looks
  // like an idle HTTP/1 connection unless the request handed over as an upgrade marks it too
  // (response.ts isDetached).
  it('leaves an upgrade alone while its request body is still arriving, on a reused connection', async () => {
    const ka = createKeepAlive({ timeout: 0.2, grace: 0.2 })
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    let handedOver = ''
    server.on('upgrade', (req: http.IncomingMessage, stream: net.Socket) => {
      handedOver = stream instanceof net.Socket ? 'socket' : (stream as object).constructor.name
      stream.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n')
    })
    ka.attach(server)
    const port = await serve(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    // One write: the upgrade's head and the start of its body arrive with the first request.
    client.send(
      'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n' +
        'POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 10\r\n\r\nabc',
    )
    expectHeaders(await client.read(), { 'keep-alive': 'timeout=0, max=999' })
    expect((await client.read()).status).toBe(101)
    expect(handedOver).toBe(major >= 26 ? 'UpgradeStream' : 'socket')
    // Well past timeout + grace (0.4 s) and a few sweep ticks: an idle HTTP/1 socket would be closed by now.
    const deadline = new AbortController()
    const closed = await Promise.race([client.closed.then(() => true), delay(1200, false, { signal: deadline.signal })])
    deadline.abort()
    expect(closed, `closes: ${JSON.stringify(ka.stats().closes)}`).toBe(false)
  })

  // `res.writeHeader()`, the alias of writeHead deprecated since Node 8 (DEP0063), exists up to
  // Node 24 as the prototype's original writeHead, so it would bypass the writeHead hook: the hook
  // is installed under that name too. Node 26 removed the alias.
  if (major >= 26) {
    it('has no res.writeHeader any more: writeHead is the only way to write a head', () => {
      expect(Object.hasOwn(http.ServerResponse.prototype, 'writeHeader')).toBe(false)
    })
  } else {
    it('applies the policy to a response written through res.writeHeader()', async () => {
      const ka = createKeepAlive({ max: 3 })
      const server = http.createServer((req, res) => {
        ka.handle(req, res)
        ;(res as unknown as { writeHeader: http.ServerResponse['writeHead'] }).writeHeader(200, { 'content-length': '2' })
        res.end('ok')
      })
      ka.attach(server)
      const port = await serve(server)
      const client = resources.add(await connect(port), (c) => c.destroy())
      expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
    })
  }
})
