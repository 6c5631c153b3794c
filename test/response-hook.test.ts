/**
 * The `writeHead` hook on `ServerResponse.prototype` (docs/architecture.md §5): in place while a
 * controller is attached and gone after the last one stops, inert for responses keepalive did not
 * see start, kept in a chain that wrapped it, and writing nothing on the responses it hooks.
 */
import { spawnSync } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { createKeepAlive } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { useResources } from './helpers/resources.js'
import { connect, expectHeaders, rawRequest } from './helpers/wire.js'

const resources = useResources()
const prototype = http.ServerResponse.prototype as http.ServerResponse & { writeHeader?: unknown }
/** What Node has there before any controller attaches (this file's tests each stop theirs). */
const nodeWriteHead = prototype.writeHead
const nodeWriteHeader = prototype.writeHeader

/** A plain node:http server answering `ok`, listening, no controller. */
async function plainServer(configure: (server: http.Server) => void = () => {}): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((_req, res) => {
    res.end('ok')
  })
  configure(server)
  return { server, port: await resources.listen(server) }
}

/** Closes a server and waits for its `close`, which detaches its controller. */
async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections()
  server.close()
  if (server.listening) await once(server, 'close')
  else await new Promise((resolve) => setImmediate(resolve))
}

describe('the writeHead hook on ServerResponse.prototype', () => {
  it('is in place while a controller is attached and gone when the last one stops', async () => {
    expect(prototype.writeHead).toBe(nodeWriteHead)
    const one = await resources.startServer()
    const two = await resources.startServer()
    expect(prototype.writeHead).not.toBe(nodeWriteHead)
    if (nodeWriteHeader !== undefined) expect(prototype.writeHeader).toBe(prototype.writeHead)

    await closeServer(one.server)
    // The second controller still needs it, and still gets its headers.
    expect(prototype.writeHead).not.toBe(nodeWriteHead)
    const client = resources.add(await connect(two.port), (c) => c.destroy())
    expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
    await client.destroy()

    await closeServer(two.server)
    expect(prototype.writeHead).toBe(nodeWriteHead)
    expect(prototype.writeHeader).toBe(nodeWriteHeader)
  })

  it('leaves the responses of a server with no controller as Node writes them', async () => {
    const tracked = await resources.startServer({ timeout: 9, max: 50 })
    const plain = await plainServer((server) => {
      server.keepAliveTimeout = 3000
      server.maxRequestsPerSocket = 7
    })
    const a = resources.add(await connect(tracked.port), (c) => c.destroy())
    const b = resources.add(await connect(plain.port), (c) => c.destroy())
    expectHeaders(await a.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=9, max=49' })
    expectHeaders(await b.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=3, max=7' })
    expectHeaders(await b.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=3, max=7' })
    await a.destroy()
    await b.destroy()
    await closeServer(tracked.server)
  })

  it('leaves alone a response whose request was in flight at attach(), and keeps the request pipelined behind it', async () => {
    let release: () => void = () => {}
    let slowStarted: () => void = () => {}
    let fastStarted: () => void = () => {}
    const slow = new Promise<void>((resolve) => (slowStarted = resolve))
    const fast = new Promise<void>((resolve) => (fastStarted = resolve))
    const server = http.createServer((req, res) => {
      if (req.url === '/slow') {
        release = () => res.end('slow')
        slowStarted()
        return
      }
      res.end('ok')
      fastStarted()
    })
    const port = await resources.listen(server)
    const controller = createKeepAlive({ max: 1 })
    const client = resources.add(await connect(port), (c) => c.destroy())
    client.send(rawRequest('/slow'))
    await slow
    controller.attach(server)
    client.send(rawRequest('/'))
    await fast
    release()
    // The first response is Node's, as it began before attach(): were it decided as this
    // connection's first request (max: 1), it would close the socket and lose the second.
    const first = await client.read()
    expect(first.body).toBe('slow')
    expectHeaders(first, { connection: 'keep-alive', 'keep-alive': 'timeout=5' })
    const second = await client.read()
    expect(second.body).toBe('ok')
    expectHeaders(second, { connection: 'close', 'keep-alive': null })
    await client.closed
    await closeServer(server)
  })

  it('stays in a chain that wrapped it, passing everything through, and a later controller reuses it', async () => {
    const first = await resources.startServer()
    // Something (an APM agent, say) wraps writeHead on the prototype after keepalive did.
    const hook = prototype.writeHead
    let wrapperCalls = 0
    function wrapper(this: http.ServerResponse, ...args: Parameters<http.ServerResponse['writeHead']>): http.ServerResponse {
      wrapperCalls++
      return hook.apply(this, args)
    }
    prototype.writeHead = wrapper as http.ServerResponse['writeHead']
    try {
      await closeServer(first.server)
      expect(prototype.writeHead).toBe(wrapper)
      const plain = await plainServer()
      const b = resources.add(await connect(plain.port), (c) => c.destroy())
      expectHeaders(await b.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5' })
      await b.destroy()

      // A new controller: its headers exactly once per response, through the one hook in the chain.
      const second = await resources.startServer({ max: 3 })
      expect(prototype.writeHead).toBe(wrapper)
      const a = resources.add(await connect(second.port), (c) => c.destroy())
      wrapperCalls = 0
      expectHeaders(await a.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
      expectHeaders(await a.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
      expectHeaders(await a.request('/'), { connection: 'close', 'keep-alive': null })
      expect(wrapperCalls).toBe(3)
      await a.closed
      await closeServer(second.server)
      expect(prototype.writeHead).toBe(wrapper)
    } finally {
      // Unwrap, as the agent would: the hook is back on the prototype, to be taken away as usual.
      prototype.writeHead = hook
    }
    const third = await resources.startServer()
    await closeServer(third.server)
    expect(prototype.writeHead).toBe(nodeWriteHead)
  })

  it('writes nothing on a response it hooks: it keeps the hidden class of a response of a bare server', () => {
    // %HaveSameMap needs --allow-natives-syntax, so this runs in a child process against the build.
    const core = fileURLToPath(new URL('../packages/core/dist/index.js', import.meta.url))
    const script = `
      import http from 'node:http'
      const { createKeepAlive } = await import(${JSON.stringify(core)})
      const seen = {}
      const serve = (name) => http.createServer((req, res) => { res.end('ok'); seen[name] = res })
      const tracked = serve('tracked'), bare = serve('bare')
      createKeepAlive().attach(tracked)
      await Promise.all([tracked, bare].map((s) => new Promise((r) => s.listen(0, '127.0.0.1', r))))
      const get = (s) => new Promise((r, j) => http.get({ port: s.address().port, host: '127.0.0.1', agent: false }, (res) => { res.resume(); res.on('end', r) }).on('error', j))
      await get(tracked)
      await get(bare)
      const extra = Object.getOwnPropertyNames(seen.tracked).filter((k) => !Object.hasOwn(seen.bare, k))
      console.log(JSON.stringify({ sameMap: %HaveSameMap(seen.tracked, seen.bare), extra, keepAlive: seen.tracked.getHeader('keep-alive') ?? null }))
      tracked.close(); bare.close()
    `
    const child = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 })
    expect(child.stderr).toBe('')
    expect(JSON.parse(child.stdout)).toEqual({ sameMap: true, extra: [], keepAlive: null })
  })

  it("builds no Node response as it loads: V8's caches in Node's HTTP code see only the server's own", () => {
    // A probe response built at load counts in the inline caches of Node's response code beside the
    // server's, and turned several of them megamorphic for good (docs/architecture.md §5).
    const core = fileURLToPath(new URL('../packages/core/dist/index.js', import.meta.url))
    const script = `
      import http from 'node:http'
      const calls = []
      for (const name of ['setHeader', 'writeHead', 'getHeader', 'hasHeader']) {
        const original = http.ServerResponse.prototype[name]
        http.ServerResponse.prototype[name] = function (...args) { calls.push(name); return original.apply(this, args) }
      }
      const { createKeepAlive } = await import(${JSON.stringify(core)})
      const atLoad = calls.length
      const ka = createKeepAlive({ timeout: 7 })
      const server = http.createServer((req, res) => {
        if (req.url === '/close') res.setHeader('Connection', 'close')
        res.end('ok')
      })
      ka.attach(server)
      await new Promise((r) => server.listen(0, '127.0.0.1', r))
      const agent = new http.Agent({ keepAlive: true })
      const get = (path) => new Promise((r, j) => http.get({ port: server.address().port, host: '127.0.0.1', path, agent }, (res) => { res.resume(); res.on('end', () => r(res.headers)) }).on('error', j))
      const first = await get('/close')
      const second = await get('/')
      console.log(JSON.stringify({ atLoad, first: [first.connection, first['keep-alive'] ?? null], second: [second.connection, second['keep-alive'] ?? null] }))
      agent.destroy()
      server.close()
    `
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 })
    expect(child.stderr).toBe('')
    // The header store is found on the first response the hook reads: an application's own close holds there.
    expect(JSON.parse(child.stdout)).toEqual({ atLoad: 0, first: ['close', null], second: ['keep-alive', 'timeout=7, max=999'] })
  })
})

/** What Node has on the prototype before any controller attaches. */
const nodeDetachSocket = prototype.detachSocket

describe("the request hook in front of a server's emit, and the finish hook on detachSocket", () => {
  it('are in place while attached and leave the server and the prototype as they were', async () => {
    const { server, port } = await plainServer()
    const ownEmit = Object.hasOwn(server, 'emit')
    const emit = server.emit
    const controller = createKeepAlive()
    controller.attach(server)
    expect(server.emit).not.toBe(emit)
    expect(prototype.detachSocket).not.toBe(nodeDetachSocket)
    const client = resources.add(await connect(port), (c) => c.destroy())
    await client.request('/')
    await client.request('/')
    expect(controller.stats()).toMatchObject({ requests: 2, connections: { open: 1, active: 0, idle: 1 } })
    await client.destroy()
    await closeServer(server)
    expect(server.emit).toBe(emit)
    expect(Object.hasOwn(server, 'emit')).toBe(ownEmit)
    expect(prototype.detachSocket).toBe(nodeDetachSocket)
  })

  it('counts a request Node answers itself (417 to an unknown Expect) like any other', async () => {
    const { server, port, controller } = await resources.startServer({ max: 3 }, () => {
      throw new Error('the handler must not run for a 417')
    })
    const client = resources.add(await connect(port), (c) => c.destroy())
    client.send(rawRequest('/', { headers: [['Expect', 'something-else']] }))
    const refused = await client.read()
    expect(refused.status).toBe(417)
    expectHeaders(refused, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
    expect(controller.stats()).toMatchObject({ requests: 1, connections: { active: 0, idle: 1 } })
    await client.destroy()
    await closeServer(server)
  })

  it("ignores an emit('request') of someone's own with a socket the server never accepted", async () => {
    const { server, port, controller } = await resources.startServer({}, (_req, res) => res.end('ok'))
    const fakeSocket = { remoteAddress: '127.0.0.1' }
    const fakeReq = { socket: fakeSocket, headers: {}, url: '/' }
    const fakeRes = { end() {}, setHeader() {}, writeHead() {} }
    expect(() => server.emit('request', fakeReq as never, fakeRes as never)).not.toThrow()
    expect(controller.stats().connections.open).toBe(0)
    // Real traffic is still counted.
    const client = resources.add(await connect(port), (c) => c.destroy())
    expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
    expect(controller.stats()).toMatchObject({ requests: 1, connections: { open: 1 } })
    await client.destroy()
    await closeServer(server)
  })

  it("stays a pass-through in an emit someone wrapped after attach(), and the next controller's hook comes first", async () => {
    const { server, port } = await plainServer()
    const first = createKeepAlive({ max: 5 })
    first.attach(server)
    const hooked = server.emit
    let wrapped = 0
    const next = hooked as (this: http.Server, type: string | symbol, ...args: unknown[]) => boolean
    server.emit = function (this: http.Server, type: string | symbol, ...args: unknown[]): boolean {
      if (type === 'request') wrapped++
      return next.call(this, type, ...args)
    } as http.Server['emit']
    const client = resources.add(await connect(port), (c) => c.destroy())
    expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=4' })
    // The server closes (its controller detaches) but the wrapper keeps our hook in its chain.
    const closed = once(server, 'close')
    server.close()
    await client.destroy()
    await closed
    expect(server.emit).not.toBe(hooked)
    // Listening again with a new controller: its requests are counted once, the old hook passes them through.
    const second = createKeepAlive({ max: 3 })
    second.attach(server)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const again = resources.add(await connect((server.address() as { port: number }).port), (c) => c.destroy())
    expectHeaders(await again.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
    expectHeaders(await again.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
    expect(second.stats().requests).toBe(2)
    expect(first.stats().requests).toBe(1)
    expect(wrapped).toBe(3)
    await again.destroy()
    await closeServer(server)
  })
})

describe('a request handed on from a checkContinue listener', () => {
  it('is counted once, and its connection goes idle when its response ends', async () => {
    const { server, port, controller } = await resources.startServer({ max: 3 }, (_req, res) => res.end('ok'))
    // A common pattern: accept the body, then hand the request to the usual 'request' listeners.
    server.on('checkContinue', (req, res) => {
      res.writeContinue()
      server.emit('request', req, res)
    })
    const client = resources.add(await connect(port), (c) => c.destroy())
    client.send(
      rawRequest('/', {
        method: 'POST',
        headers: [
          ['Expect', '100-continue'],
          ['Content-Length', '0'],
        ],
      }),
    )
    expect((await client.read()).status).toBe(100)
    const response = await client.read()
    expect(response.status).toBe(200)
    expectHeaders(response, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
    expect(controller.stats()).toMatchObject({ requests: 1, connections: { open: 1, active: 0, idle: 1 } })
    expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
    await client.destroy()
    await closeServer(server)
  })
})

describe('responses Node writes itself while it parses a pipelined request', () => {
  it('counts a 417 behind a request in flight in its place: max= and the close after the last stay right', async () => {
    let releaseLast: () => void = () => {}
    const lastStarted = new Promise<void>((started) => (releaseLast = started))
    let endLast: () => void = () => {}
    const { server, port, controller } = await resources.startServer({ max: 3 }, (req, res) => {
      if (req.url !== '/last') return void res.end('ok')
      endLast = () => res.end('last')
      releaseLast()
    })
    const client = resources.add(await connect(port), (c) => c.destroy())
    client.send(
      rawRequest('/first') +
        rawRequest('/refused', {
          method: 'POST',
          headers: [
            ['Expect', 'something-else'],
            ['Content-Length', '0'],
          ],
        }) +
        rawRequest('/last'),
    )
    expectHeaders(await client.read(), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
    const refused = await client.read()
    expect(refused.status).toBe(417)
    expectHeaders(refused, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
    await lastStarted
    // The third request is in flight: its connection is active, not idle since the 417 ended.
    expect(controller.stats().connections).toMatchObject({ open: 1, active: 1, idle: 0 })
    endLast()
    const last = await client.read()
    expect(last.body).toBe('last')
    expectHeaders(last, { connection: 'close', 'keep-alive': null })
    await client.closed
    expect(controller.stats().requests).toBe(3)
    await closeServer(server)
  })

  it('counts the 400 Node writes for a pipelined request without a Host header', async () => {
    const { server, port, controller } = await resources.startServer({ max: 5 })
    const client = resources.add(await connect(port), (c) => c.destroy())
    client.send(rawRequest('/') + 'GET /no-host HTTP/1.1\r\n\r\n')
    expectHeaders(await client.read(), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=4' })
    const refused = await client.read()
    expect(refused.status).toBe(400)
    expectHeaders(refused, { connection: 'close', 'keep-alive': null })
    await client.closed
    expect(controller.stats().requests).toBe(2)
    await closeServer(server)
  })
})

describe('a request pipelined behind one in flight at attach()', () => {
  it('keeps its connection active until its own response ends, then idle for the whole timeout', async () => {
    const ends = new Map<string, () => void>()
    let started: (url: string) => void = () => {}
    const server = http.createServer((req, res) => {
      ends.set(req.url ?? '', () => res.end(req.url))
      started(req.url ?? '')
    })
    const port = await resources.listen(server)
    const nextStart = (): Promise<string> => new Promise((resolve) => (started = resolve))
    const client = resources.add(await connect(port), (c) => c.destroy())
    let start = nextStart()
    client.send(rawRequest('/before'))
    expect(await start).toBe('/before')
    const controller = createKeepAlive({ timeout: 1 })
    controller.attach(server)
    start = nextStart()
    client.send(rawRequest('/after'))
    expect(await start).toBe('/after')
    ends.get('/before')?.()
    expect((await client.read()).body).toBe('/before')
    // The response that ended answered the request before attach(), not this one.
    expect(controller.stats().connections).toMatchObject({ open: 1, active: 1, idle: 0 })
    ends.get('/after')?.()
    const after = await client.read()
    expectHeaders(after, { connection: 'keep-alive', 'keep-alive': 'timeout=1, max=999' })
    const idleFrom = performance.now()
    expect(controller.stats().connections).toMatchObject({ open: 1, active: 0, idle: 1 })
    const closedAt = await client.closed
    // Closed after the timeout it advertised, counted from its own response's end.
    expect(closedAt - idleFrom).toBeGreaterThanOrEqual(950)
    expect(controller.stats().requests).toBe(1)
    await closeServer(server)
  })
})

describe('attach() and the emit of a server', () => {
  it('passes every event to the prototype emit of the moment: instrumentation that patches it later still sees the requests', async () => {
    const { server, port } = await plainServer()
    const controller = createKeepAlive()
    controller.attach(server)
    const original = http.Server.prototype.emit as (this: http.Server, type: string | symbol, ...args: unknown[]) => boolean
    let seen = 0
    http.Server.prototype.emit = function (this: http.Server, type: string | symbol, ...args: unknown[]): boolean {
      if (type === 'request') seen++
      return original.call(this, type, ...args)
    } as http.Server['emit']
    try {
      const client = resources.add(await connect(port), (c) => c.destroy())
      expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
      await client.request('/')
      expect(seen).toBe(2)
      expect(controller.stats().requests).toBe(2)
      await client.destroy()
    } finally {
      http.Server.prototype.emit = original as http.Server['emit']
    }
    await closeServer(server)
  })

  it('throws, and leaves the server as it was, when its emit cannot be replaced', async () => {
    const { server } = await plainServer()
    Object.defineProperty(server, 'emit', { value: server.emit, writable: false, configurable: true })
    const listeners = server.listenerCount('connection')
    const controller = createKeepAlive()
    expect(() => controller.attach(server)).toThrow(/cannot attach to this server: its emit\(\) cannot be replaced/)
    expect(Object.getOwnPropertySymbols(server).some((s) => s.description?.startsWith('keepalive'))).toBe(false)
    expect(prototype.writeHead).toBe(nodeWriteHead)
    expect(server.listenerCount('connection')).toBe(listeners)
    await closeServer(server)
  })
})

describe('how the request hook hands a request on', () => {
  it('runs every listener when a server has more than one, in order', async () => {
    const seen: string[] = []
    const { server, port } = await plainServer((s) => {
      s.removeAllListeners('request')
      s.on('request', (req: http.IncomingMessage) => seen.push(`first ${req.url}`))
      s.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
        seen.push(`second ${req.url}`)
        res.end('ok')
      })
    })
    const controller = createKeepAlive()
    controller.attach(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    expectHeaders(await client.request('/a'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
    expectHeaders(await client.request('/b'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=998' })
    expect(seen).toEqual(['first /a', 'second /a', 'first /b', 'second /b'])
    await client.destroy()
    await closeServer(server)
  })

  it("keeps Node's captureRejections: an async handler that rejects still gets Node's 500, with the policy's headers", async () => {
    const before = EventEmitter.captureRejections
    EventEmitter.captureRejections = true
    let server: http.Server
    try {
      server = http.createServer(async (req, res) => {
        if (req.url === '/fail') throw new Error('rejected on purpose')
        res.end('ok')
      })
    } finally {
      EventEmitter.captureRejections = before
    }
    const port = await resources.listen(server)
    const controller = createKeepAlive({ max: 3 })
    controller.attach(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    const failed = await client.request('/fail')
    expect(failed.status).toBe(500)
    expect(failed.body).toBe('Internal Server Error')
    expectHeaders(failed, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
    // The connection lives on and is counted like any other.
    expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
    expect(controller.stats()).toMatchObject({ requests: 2, connections: { open: 1, active: 0, idle: 1 } })
    await client.destroy()
    await closeServer(server)
  })

  it('keeps node:domain: requests run in the domain of their server and its errors reach it, whichever loads first', () => {
    const core = fileURLToPath(new URL('../packages/core/dist/index.js', import.meta.url))
    for (const order of ['domain first', 'keepalive first']) {
      const script = `
        const domainFirst = ${JSON.stringify(order)} === 'domain first'
        const domain = domainFirst ? await import('node:domain') : null
        const { createKeepAlive } = await import(${JSON.stringify(core)})
        const { create } = domain ?? (await import('node:domain'))
        const http = await import('node:http')
        async function run(attach) {
          const d = create()
          let current
          d.on('error', (error) => current.end('caught ' + error.message))
          const server = http.createServer((req, res) => {
            current = res
            if (req.url === '/throw') throw new Error('boom')
            res.end(String(process.domain === d))
          })
          d.add(server)
          if (attach) createKeepAlive().attach(server)
          await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
          const agent = new http.Agent({ keepAlive: true })
          const get = (path) => new Promise((resolve, reject) => {
            http.get({ host: '127.0.0.1', port: server.address().port, path, agent }, (res) => {
              let body = ''
              res.on('data', (chunk) => (body += chunk))
              res.on('end', () => resolve([res.headers['keep-alive'] ?? null, body]))
            }).on('error', reject)
          })
          const answers = [await get('/'), await get('/throw')]
          agent.destroy()
          server.closeAllConnections()
          server.close()
          return answers
        }
        console.log(JSON.stringify({ bare: await run(false), attached: await run(true) }))
      `
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 })
      expect(child.stderr).toBe('')
      const { bare, attached } = JSON.parse(child.stdout) as { bare: [string | null, string][]; attached: [string | null, string][] }
      expect(bare.map(([, body]) => body)).toEqual(['true', 'caught boom'])
      expect(attached.map(([, body]) => body)).toEqual(['true', 'caught boom'])
      expect(attached[0]?.[0]).toBe('timeout=5, max=999')
    }
  })
})
