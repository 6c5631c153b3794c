import { once } from 'node:events'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import tls from 'node:tls'
import { createKeepAlive, type CloseEvent, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { connect, saysClose, type RequestOptions } from './helpers/wire.js'
import { useResources } from './helpers/resources.js'
import { fixture } from './helpers/tls.js'
import { FRESH_STATS } from './helpers/contract.js'

const resources = useResources()

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void

/** Serves `/slow?ms=N` after N ms, `/hang` never, anything else at once; `next()` resolves as a handler starts. */
function routes(waiting: (() => void)[]): Handler {
  return (req, res) => {
    waiting.shift()?.()
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname === '/hang') return
    const ms = Number(url.searchParams.get('ms') ?? 0)
    if (ms > 0) setTimeout(() => res.end('slow'), ms)
    else res.end('ok')
  }
}

/** `routes` behind the controller's `handle()`, for servers built by hand. */
function handled(ka: KeepAliveController, handler: Handler): Handler {
  return (req, res) => {
    ka.handle(req, res)
    handler(req, res)
  }
}

async function startHttp(options: KeepAliveOptions = {}): Promise<{ ka: KeepAliveController; port: number; next(): Promise<void> }> {
  const waiting: (() => void)[] = []
  const { controller, port } = await resources.startServer(options, routes(waiting))
  return { ka: controller, port, next: () => new Promise((resolve) => waiting.push(resolve)) }
}

function nextClose(ka: KeepAliveController): Promise<CloseEvent> {
  return new Promise((resolve) => ka.once('close', resolve))
}

describe('stats()', () => {
  it('is a plain JSON-serialisable snapshot with every close reason and draining', () => {
    const ka = createKeepAlive()
    const stats = ka.stats()
    expect(stats).toEqual(FRESH_STATS)
    expect(JSON.parse(JSON.stringify(stats))).toEqual(stats)
    expect(createKeepAlive({ max: Infinity }).stats().max).toBeNull()
    // A snapshot: changing it changes nothing inside.
    stats.closes.client = 99
    expect(ka.stats().closes.client).toBe(0)
  })

  it('reports draining from drain() on', () => {
    const ka = createKeepAlive()
    ka.drain()
    expect(ka.stats().draining).toBe(true)
  })
})

describe('connection tracking (http)', () => {
  it('tracks a connection from the moment it is accepted, before it sends a byte', async () => {
    const { ka, port } = await startHttp()
    const connected = new Promise((resolve) => ka.once('connection', resolve))
    resources.add(await connect(port), (c) => c.destroy())
    await connected
    expect(ka.stats()).toMatchObject({ connections: { open: 1, active: 0, idle: 1 }, requests: 0 })
  })

  // Without caps the sweep releases closed sockets (every 500 ms with `grace: 2`). One known to
  // close must be let go as its socket closes: held until the sweep, recycled connections' sockets
  // outlived young-generation collections and cost major ones (docs/architecture.md §9).
  describe('a connection known to close is released as its socket closes, not at the next sweep', () => {
    const cases: [string, KeepAliveOptions, RequestOptions][] = [
      ['its last request under max', { max: 1, grace: 2 }, {}],
      ['the client asked to close', { grace: 2 }, { headers: [['Connection', 'close']] }],
    ]
    for (const [name, options, request] of cases) {
      it(name, async () => {
        const { controller: ka, server, port } = await resources.startServer(options)
        const accepted = once(server, 'connection') as Promise<[Socket]>
        const released = nextClose(ka)
        let releasedYet = false
        void released.then(() => (releasedYet = true))
        const raw = resources.add(await connect(port), (c) => c.destroy())
        const [socket] = await accepted
        const nodeListeners = socket.listenerCount('close')
        // Listening before the controller does: this runs first as the socket closes.
        const closed = new Promise<boolean>((resolve) => socket.once('close', () => setImmediate(() => resolve(releasedYet))))
        const response = await raw.request('/', request)
        expect(response.status).toBe(200)
        expect(saysClose(response)).toBe(true)
        await raw.end()
        expect(await closed).toBe(true)
        expect((await released).reason).toBe(options.max === 1 ? 'maxRequests' : 'client')
        // The controller's own listener is gone again; Node's stay.
        expect(socket.listenerCount('close')).toBe(nodeListeners)
      })
    }
  })

  describe('a connection the client closes', () => {
    async function closedByClient(): Promise<{ ka: KeepAliveController; serverSocketClosed: Promise<number> }> {
      const { controller: ka, server, port } = await resources.startServer()
      const accepted = once(server, 'connection') as Promise<[import('node:net').Socket]>
      const raw = resources.add(await connect(port), (c) => c.destroy())
      await raw.request('/')
      const [socket] = await accepted
      const serverSocketClosed = once(socket, 'close').then(() => performance.now())
      raw.socket.destroy()
      return { ka, serverSocketClosed }
    }

    it('is counted closed in stats() as soon as its socket has closed', async () => {
      const { ka, serverSocketClosed } = await closedByClient()
      await serverSocketClosed
      expect(ka.stats()).toMatchObject({ connections: { open: 0, active: 0, idle: 0 }, closes: { client: 1 } })
    })

    it('is reported by a close event within about one sweep interval', async () => {
      const { ka, serverSocketClosed } = await closedByClient()
      const event = nextClose(ka)
      const closedAt = await serverSocketClosed
      expect(await event).toMatchObject({ reason: 'client', requests: 1 })
      // The sweep runs every grace / 4 = 250 ms; generous bound for a busy machine.
      expect(performance.now() - closedAt).toBeLessThan(1500)
    })
  })

  it('counts a connection active while a request is in flight and idle after, with requests and reuse', async () => {
    const { ka, port, next } = await startHttp()
    const a = resources.add(await connect(port), (c) => c.destroy())
    const b = resources.add(await connect(port), (c) => c.destroy())
    const started = next()
    const slow = a.request('/slow?ms=150')
    await started
    expect(ka.stats().connections).toEqual({ open: 2, active: 1, idle: 1 })
    await slow
    expect(ka.stats().connections).toEqual({ open: 2, active: 0, idle: 2 })
    await a.request('/')
    await a.request('/')
    await b.request('/')
    // Four responses, two of them on an already-used connection.
    expect(ka.stats()).toMatchObject({ requests: 4, reuseRatio: 0.5 })
  })

  it('closes a connection that never sends a request after timeout + grace, like an idle one', async () => {
    const { ka, port } = await startHttp({ timeout: 0.3, grace: 0.1 })
    const closed = nextClose(ka)
    const raw = resources.add(await connect(port), (c) => c.destroy())
    const event = await closed
    await raw.closed
    expect(event).toMatchObject({ reason: 'idleTimeout', requests: 0 })
    expect(event.age).toBeGreaterThanOrEqual(0.35)
    expect(event.age).toBeLessThan(3)
  })

  it('does not cut a request whose first bytes arrived before the idle timeout, on a new or a used connection', async () => {
    const { ka, port } = await startHttp({ timeout: 0.3, grace: 0.1 })
    const raw = resources.add(await connect(port), (c) => c.destroy())
    // A first request typed slowly: its first line is in before the 0.4 s idle window ends, the rest 0.8 s later.
    raw.send('GET /first HTTP/1.1\r\n')
    await new Promise((resolve) => setTimeout(resolve, 800))
    raw.send('Host: localhost\r\n\r\n')
    expect((await raw.read()).body).toBe('ok')
    // The same after a response: bytes of the next request within the window keep the connection.
    await new Promise((resolve) => setTimeout(resolve, 200))
    raw.send('GET /second HTTP/1.1\r\n')
    await new Promise((resolve) => setTimeout(resolve, 800))
    raw.send('Host: localhost\r\n\r\n')
    expect((await raw.read()).body).toBe('ok')
    expect(ka.stats().closes.idleTimeout).toBe(0)
    // Then silence: the connection is closed as idle.
    expect(await nextClose(ka)).toMatchObject({ reason: 'idleTimeout', requests: 2 })
  })

  it('never idle-closes a connection while its request runs, and counts idle time from its last response', async () => {
    const { ka, port } = await startHttp({ timeout: 0.2, grace: 0.1 })
    const raw = resources.add(await connect(port), (c) => c.destroy())
    await raw.request('/')
    // Longer than the idle window: the connection is active, not idle, all along.
    const slow = await raw.request('/slow?ms=500')
    expect(slow.body).toBe('slow')
    const lastResponseAt = performance.now()
    const event = await nextClose(ka)
    const idleFor = (performance.now() - lastResponseAt) / 1000
    expect(event).toMatchObject({ reason: 'idleTimeout', requests: 2 })
    expect(idleFor).toBeGreaterThanOrEqual(0.25)
    expect(idleFor).toBeLessThan(3)
    // Its age covers the whole life of the connection, the slow request included.
    expect(event.age).toBeGreaterThanOrEqual(0.75)
  })

  it('tracks every server attached to one controller and stops tracking a server once it closes', async () => {
    const ka = createKeepAlive()
    const one = http.createServer(handled(ka, routes([])))
    const two = http.createServer(handled(ka, routes([])))
    const ownListeners = one.listenerCount('connection')
    ka.attach(one)
    ka.attach(two)
    ka.attach(one) // attaching twice is a no-op
    const [portOne, portTwo] = [await resources.listen(one), await resources.listen(two)]
    const a = resources.add(await connect(portOne), (c) => c.destroy())
    const b = resources.add(await connect(portTwo), (c) => c.destroy())
    await a.request('/')
    await b.request('/')
    expect(ka.stats()).toMatchObject({ connections: { open: 2 }, requests: 2 })
    const oneClosed = once(one, 'close')
    const released = nextClose(ka)
    one.close()
    a.socket.destroy()
    await oneClosed
    expect(await released).toMatchObject({ reason: 'client', requests: 1 })
    expect(ka.stats().connections.open).toBe(1)
    expect(one.listenerCount('connection')).toBe(ownListeners)
    expect(two.listenerCount('connection')).toBe(ownListeners + 1)
    await b.request('/')
    expect(ka.stats().requests).toBe(3)
  })

  it('refuses to attach a server that another controller already tracks', () => {
    const server = http.createServer()
    createKeepAlive().attach(server)
    expect(() => createKeepAlive().attach(server)).toThrow('already attached to another keepalive controller')
  })
})

describe('connection tracking (https and http2)', () => {
  it('tracks an https connection from its handshake, before any request', async () => {
    const ka = createKeepAlive()
    const server = https.createServer({ key: fixture.key, cert: fixture.cert }, handled(ka, routes([])))
    ka.attach(server)
    const port = await resources.listen(server)
    const connected = new Promise((resolve) => ka.once('connection', resolve))
    const socket = tls.connect({ host: '127.0.0.1', port, ca: fixture.cert, servername: 'localhost' })
    resources.add(socket, (s) => s.destroy())
    await connected
    expect(ka.stats()).toMatchObject({ connections: { open: 1, active: 0, idle: 1 }, requests: 0 })
    const agent = resources.add(new https.Agent({ keepAlive: true, maxSockets: 1, ca: fixture.cert }), (a) => a.destroy())
    for (let i = 0; i < 2; i++) {
      await new Promise<void>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
            res.resume()
            res.on('end', resolve)
          })
          .on('error', reject)
      })
    }
    expect(ka.stats()).toMatchObject({ connections: { open: 2 }, requests: 2, reuseRatio: 0.5 })
  })

  it('tracks an http2 session as one connection and its streams as its requests', async () => {
    const ka = createKeepAlive()
    const waiting: (() => void)[] = []
    const server = http2.createSecureServer({ key: fixture.key, cert: fixture.cert }, (req, res) => {
      ka.handle(req, res)
      waiting.shift()?.()
      if (req.url === '/slow') setTimeout(() => res.end('slow'), 150)
      else res.end('ok')
    })
    ka.attach(server)
    const port = await resources.listen(server)
    const connected = new Promise((resolve) => ka.once('connection', resolve))
    const session = http2.connect(`https://127.0.0.1:${port}`, { ca: fixture.cert })
    resources.add(session, (s) => s.destroy())
    await connected
    expect(ka.stats().connections).toEqual({ open: 1, active: 0, idle: 1 })

    const started = new Promise<void>((resolve) => waiting.push(resolve))
    const slow = session.request({ ':path': '/slow' })
    slow.resume()
    await started
    expect(ka.stats().connections).toEqual({ open: 1, active: 1, idle: 0 })
    await once(slow, 'close')
    const quick = session.request({ ':path': '/' })
    quick.resume()
    await once(quick, 'close')
    expect(ka.stats()).toMatchObject({ connections: { open: 1, active: 0, idle: 1 }, requests: 2, reuseRatio: 0.5 })

    const closed = nextClose(ka)
    session.close()
    expect(await closed).toMatchObject({ reason: 'client', requests: 2 })
    expect(ka.stats().connections.open).toBe(0)
  })
})
