import type { IncomingMessage, ServerResponse } from 'node:http'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { createKeepAlive, type CloseEvent, type CloseReason, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import { useResources, type StartedServer } from './helpers/resources.js'
import { connect, connectionHeaders, type RawClient } from './helpers/wire.js'

const resources = useResources()

// ---- a server per test ---------------------------------------------------------------------

interface Started extends StartedServer {
  ka: KeepAliveController
  /** A raw client on its own socket, destroyed after the test. */
  connect(host?: string): Promise<RawClient>
}

async function start(
  options: KeepAliveOptions,
  handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end('ok'),
  host = '127.0.0.1',
  ka = createKeepAlive({ grace: 0.2, ...options }),
): Promise<Started> {
  const started = await resources.startServer(options, handler, { host, controller: ka })
  return {
    ...started,
    ka,
    // A dual-stack server ('::') is reached over IPv4 here, so its clients show as ::ffff:127.0.0.1.
    async connect(to = host === '::' ? '127.0.0.1' : host) {
      return resources.add(await connect(started.port, { host: to }), (client) => client.destroy())
    },
  }
}

/** Resolves with the next `count` close events of this reason. */
function closesOf(ka: KeepAliveController, reason: CloseReason, count = 1): Promise<CloseEvent[]> {
  const seen: CloseEvent[] = []
  return new Promise((resolve) => {
    const listener = (event: CloseEvent): void => {
      if (event.reason !== reason || seen.push(event) < count) return
      ka.off('close', listener)
      resolve(seen)
    }
    ka.on('close', listener)
  })
}

const nextClose = async (ka: KeepAliveController, reason: CloseReason): Promise<CloseEvent> => (await closesOf(ka, reason))[0]!

/** A handler that holds `/slow` requests until released, and tells when a given number are in. */
function gate() {
  let arrived = 0
  const waiting: (() => void)[] = []
  const watchers: { count: number; resolve: () => void }[] = []
  return {
    handler(req: IncomingMessage, res: ServerResponse): void {
      if (req.url !== '/slow') {
        res.end('fast')
        return
      }
      waiting.push(() => res.end('slow'))
      arrived++
      for (const w of watchers.filter((w) => w.count <= arrived)) w.resolve()
    },
    arrived(count: number): Promise<void> {
      return new Promise((resolve) => (count <= arrived ? resolve() : watchers.push({ count, resolve })))
    },
    /** Answers the oldest held request. */
    releaseOne(): void {
      waiting.shift()?.()
    },
    release(): void {
      for (const end of waiting.splice(0)) end()
    },
  }
}

const keptAlive = (timeout: number, max: number) => ({ connection: 'keep-alive', keepAlive: `timeout=${timeout}, max=${max}` })
const closing = { connection: 'close', keepAlive: null }

// ---- tests ---------------------------------------------------------------------------------

describe('maxConnections', () => {
  it('closes the longest-idle connection when a fourth client arrives over a cap of 3, and serves the fourth', async () => {
    const { ka, connect } = await start({ maxConnections: 3 })
    const [c1, c2, c3] = [await connect(), await connect(), await connect()]
    for (const client of [c1, c2, c3]) expect(connectionHeaders(await client.request())).toEqual(keptAlive(5, 999))
    // c1 is used again, so c2 has now been idle the longest.
    expect(connectionHeaders(await c1!.request())).toEqual(keptAlive(5, 998))
    expect(ka.stats().connections).toEqual({ open: 3, active: 0, idle: 3 })

    const evicted = nextClose(ka, 'evicted')
    const c4 = await connect()
    await c2!.closed
    expect((await evicted).requests).toBe(1)
    expect(connectionHeaders(await c4.request())).toEqual(keptAlive(5, 999))
    expect(ka.stats().closes.evicted).toBe(1)
    expect(ka.stats().connections).toEqual({ open: 3, active: 0, idle: 3 })
    // The others were left alone.
    expect(connectionHeaders(await c1!.request())).toEqual(keptAlive(5, 997))
    expect(connectionHeaders(await c3!.request())).toEqual(keptAlive(5, 998))
  })

  it('serves a newcomer when nothing is idle and closes responses until the count is back under the cap', async () => {
    const slow = gate()
    const { ka, connect } = await start({ maxConnections: 3 }, slow.handler)
    const [c1, c2, c3] = [await connect(), await connect(), await connect()]
    const held = [c1!.request('/slow'), c2!.request('/slow'), c3!.request('/slow')]
    await slow.arrived(3)
    expect(ka.stats().connections).toEqual({ open: 3, active: 3, idle: 0 })

    // One over the cap and none idle: nobody is evicted, the newcomer is served and its connection closed.
    const c4 = await connect()
    const evicted4 = nextClose(ka, 'evicted')
    expect(connectionHeaders(await c4.request())).toEqual(closing)
    await c4.closed
    await evicted4
    expect(ka.stats().closes).toMatchObject({ evicted: 1, shed: 0 })
    expect(ka.stats().connections.open).toBe(3)

    // A newcomer that is kept busy holds the count over the cap: the next response to finish closes.
    const c5 = await connect()
    const held5 = c5.request('/slow')
    await slow.arrived(4)
    expect(ka.stats().connections).toEqual({ open: 4, active: 4, idle: 0 })
    const evicted1 = nextClose(ka, 'evicted')
    slow.releaseOne()
    expect(connectionHeaders(await held[0]!)).toEqual(closing)
    await c1!.closed
    await evicted1
    expect(ka.stats().connections.open).toBe(3)

    // Back at the cap: the other responses keep their connections.
    slow.release()
    for (const res of await Promise.all([held[1]!, held[2]!, held5])) expect(connectionHeaders(res)).toEqual(keptAlive(5, 999))
    expect(ka.stats().closes).toMatchObject({ evicted: 2, shed: 0 })
    expect(ka.stats().connections).toEqual({ open: 3, active: 0, idle: 3 })
  })

  it('closes only as many busy connections as the cap is exceeded by', async () => {
    const slow = gate()
    const { ka, connect } = await start({ maxConnections: 3 }, slow.handler)
    const clients = [await connect(), await connect(), await connect(), await connect()]
    const held = []
    for (const [i, client] of clients.entries()) {
      held.push(client.request('/slow'))
      await slow.arrived(i + 1)
    }
    expect(ka.stats().connections).toEqual({ open: 4, active: 4, idle: 0 })
    // All four finish in the same tick: one over the cap means one closing response, not four.
    const evicted = nextClose(ka, 'evicted')
    slow.release()
    const replies = await Promise.all(held)
    expect(replies.filter((reply) => connectionHeaders(reply).connection === 'close')).toHaveLength(1)
    expect(replies.filter((reply) => connectionHeaders(reply).connection === 'keep-alive')).toHaveLength(3)
    await evicted
    expect(ka.stats().connections.open).toBe(3)
    expect(ka.stats().closes).toMatchObject({ evicted: 1, shed: 0 })
  })

  it('does not evict clients that have just connected: their first request may already be on the wire', async () => {
    const slow = gate()
    const { ka, connect } = await start({ maxConnections: 3, grace: 1 }, slow.handler)
    const busy = [await connect(), await connect(), await connect()]
    const held = busy.map((client) => client.request('/slow'))
    await slow.arrived(3)

    // A burst over the cap: both are accepted before either has sent its request.
    const [c4, c5] = await Promise.all([connect(), connect()])
    const replies = await Promise.all([c4.request(), c5.request()])
    for (const reply of replies) {
      expect(reply.status).toBe(200)
      expect(connectionHeaders(reply)).toEqual(closing)
    }
    await Promise.all([c4.closed, c5.closed])
    expect(ka.stats().closes).toMatchObject({ evicted: 2, shed: 0 })

    slow.release()
    for (const res of await Promise.all(held)) expect(connectionHeaders(res)).toEqual(keptAlive(5, 999))
  })

  it('evicts a client that connected and stayed silent longer than grace', async () => {
    // grace: 0, so a silent connection counts as idle at once.
    const { ka, connect } = await start({ maxConnections: 2, grace: 0 })
    const silent = await connect()
    const used = await connect()
    expect(connectionHeaders(await used.request())).toEqual(keptAlive(5, 999))
    const evicted = nextClose(ka, 'evicted')
    const third = await connect()
    await silent.closed
    expect(await evicted).toMatchObject({ reason: 'evicted', requests: 0 })
    expect(connectionHeaders(await third.request())).toEqual(keptAlive(5, 999))
    expect(connectionHeaders(await used.request())).toEqual(keptAlive(5, 998))
  })

  it('releases its count when connections close, so new ones are kept again', async () => {
    const { ka, connect } = await start({ maxConnections: 2 })
    const first = [await connect(), await connect()]
    for (const client of first) await client.request()
    const gone = closesOf(ka, 'client', 2)
    for (const client of first) client.destroy()
    await gone
    expect(ka.stats().connections.open).toBe(0)
    const next = [await connect(), await connect()]
    for (const client of next) expect(connectionHeaders(await client.request())).toEqual(keptAlive(5, 999))
    expect(ka.stats().closes.evicted).toBe(0)
  })
})

describe('maxConnectionsPerIp', () => {
  async function refusesOverTheCap(host: string): Promise<void> {
    const { ka, connect } = await start({ maxConnectionsPerIp: 2 }, undefined, host)
    const c1 = await connect()
    const c2 = await connect()
    for (const client of [c1, c2]) expect(connectionHeaders(await client.request())).toEqual(keptAlive(5, 999))

    const refused = nextClose(ka, 'perIp')
    const c3 = await connect()
    await c3.closed
    const event = await refused
    expect(event).toMatchObject({ reason: 'perIp', requests: 0 })
    // The event carries the socket's own address: plain 127.0.0.1 or ::1 on a single-stack listener.
    expect(event.remoteAddress).toBe(host)
    expect(ka.stats().closes.perIp).toBe(1)
    expect(ka.stats().connections.open).toBe(2)
    // The two admitted connections are untouched.
    expect(connectionHeaders(await c1.request())).toEqual(keptAlive(5, 998))

    // A slot freed by a close is a slot for the next connection.
    const released = nextClose(ka, 'client')
    c2.destroy()
    await released
    const c4 = await connect()
    expect(connectionHeaders(await c4.request())).toEqual(keptAlive(5, 999))
    expect(ka.stats().closes.perIp).toBe(1)
  }

  it('closes a third connection from 127.0.0.1 at once and admits one again after a close', async () => {
    await refusesOverTheCap('127.0.0.1')
  })

  it('applies the same cap to ::1', async (ctx) => {
    const probe = net.createServer()
    const reason = await new Promise<string | null>((resolve) => {
      probe.once('error', (error) => resolve(`this machine cannot listen on ::1 (${error.message})`))
      probe.listen(0, '::1', () => probe.close(() => resolve(null)))
    })
    if (reason !== null) ctx.skip(reason)
    await refusesOverTheCap('::1')
  })

  it('counts an IPv4 client as one address whether it reaches an IPv4 or a dual-stack server', async (ctx) => {
    const ka = createKeepAlive({ maxConnectionsPerIp: 1, grace: 0.2 })
    const v4 = await start({}, undefined, '127.0.0.1', ka)
    const dual = await start({}, undefined, '::', ka).catch((error: Error) => ctx.skip(`this machine cannot listen on :: (${error.message})`))
    const first = await v4.connect()
    expect(connectionHeaders(await first.request())).toEqual(keptAlive(5, 999))
    const refused = nextClose(ka, 'perIp')
    const second = await dual.connect()
    await second.closed
    expect((await refused).remoteAddress).toBe('::ffff:127.0.0.1')
    expect(ka.stats().closes.perIp).toBe(1)
  })
})

describe('behind', () => {
  it('advertises the proxy idle timeout + 5 s on the wire', async () => {
    const { ka, connect } = await start({ behind: { idleTimeout: 2 } })
    const client = await connect()
    expect(connectionHeaders(await client.request())).toEqual(keptAlive(7, 999))
    expect(connectionHeaders(await client.request())).toEqual(keptAlive(7, 998))
    expect(ka.stats().timeout).toBe(7)
  })
})
