import { type CloseEvent, type ConnectionEvent, type KeepAliveController, type KeepAliveOptions, type ShutdownReport } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { connect, connectionHeaders, rawRequest } from '../helpers/wire.js'
import { useResources } from '../helpers/resources.js'

const resources = useResources()

interface Recorded {
  connections: ConnectionEvent[]
  closes: CloseEvent[]
  draining: number
  shutdowns: ShutdownReport[]
}

interface Started {
  ka: KeepAliveController
  port: number
  events: Recorded
  /** Resolves as the next handler starts. */
  next(): Promise<void>
  /** Resolves with the next `close` event. */
  nextClose(): Promise<CloseEvent>
}

/** A raw node:http server whose controller's events are all recorded; `/hang` never answers. */
async function start(options: KeepAliveOptions): Promise<Started> {
  const waiting: (() => void)[] = []
  const { controller: ka, port } = await resources.startServer(options, (req, res) => {
    waiting.shift()?.()
    if (req.url !== '/hang') res.end('ok')
  })
  const events: Recorded = { connections: [], closes: [], draining: 0, shutdowns: [] }
  const closeWaiters: ((event: CloseEvent) => void)[] = []
  ka.on('connection', (event) => events.connections.push(event))
  ka.on('close', (event) => {
    events.closes.push(event)
    closeWaiters.shift()?.(event)
  })
  ka.on('draining', () => events.draining++)
  ka.on('shutdown', (report) => events.shutdowns.push(report))
  return {
    ka,
    port,
    events,
    next: () => new Promise((resolve) => waiting.push(resolve)),
    nextClose: () => new Promise((resolve) => closeWaiters.push(resolve)),
  }
}

const closeEvent = (reason: string, requests: number): unknown => ({
  reason,
  requests,
  age: expect.any(Number),
  remoteAddress: '127.0.0.1',
  localPort: expect.any(Number),
  http2: false,
})

describe('controller events', () => {
  it("emits 'connection' for each new connection, before it sends anything", async () => {
    const { ka, port, events } = await start({})
    const connected = (): Promise<ConnectionEvent> => new Promise((resolve) => ka.once('connection', resolve))
    let next = connected()
    resources.add(await connect(port), (c) => c.destroy())
    expect(await next).toEqual({ remoteAddress: '127.0.0.1', open: 1 })
    next = connected()
    resources.add(await connect(port), (c) => c.destroy())
    expect(await next).toEqual({ remoteAddress: '127.0.0.1', open: 2 })
    expect(events.connections).toHaveLength(2)
    expect(ka.stats()).toMatchObject({ connections: { open: 2, active: 0, idle: 2 }, requests: 0 })
  })

  it("emits 'close' with reason idleTimeout after the advertised timeout plus grace", async () => {
    const { ka, port, nextClose } = await start({ timeout: 0.3, grace: 0.1 })
    const raw = resources.add(await connect(port), (c) => c.destroy())
    const closed = nextClose()
    await raw.request('/')
    const event = await closed
    await raw.closed
    expect(event).toEqual(closeEvent('idleTimeout', 1))
    expect(event.localPort).toBe(port)
    expect(event.age).toBeGreaterThanOrEqual(0.35)
    expect(event.age).toBeLessThan(3)
    expect(ka.stats().closes.idleTimeout).toBe(1)
  })

  it("emits 'close' with reason maxRequests when the max-th response closes the connection", async () => {
    const { ka, port, nextClose } = await start({ max: 2 })
    const raw = resources.add(await connect(port), (c) => c.destroy())
    const closed = nextClose()
    expect(connectionHeaders(await raw.request('/'))).toEqual({ connection: 'keep-alive', keepAlive: 'timeout=5, max=1' })
    expect(connectionHeaders(await raw.request('/'))).toEqual({ connection: 'close', keepAlive: null })
    expect(await closed).toEqual(closeEvent('maxRequests', 2))
    await raw.closed
    expect(ka.stats().closes.maxRequests).toBe(1)
  })

  it("emits 'close' with reason client when the client hangs up", async () => {
    const { ka, port, nextClose } = await start({})
    const raw = resources.add(await connect(port), (c) => c.destroy())
    await raw.request('/')
    const closed = nextClose()
    raw.socket.end()
    expect(await closed).toEqual(closeEvent('client', 1))
    expect(ka.stats().closes.client).toBe(1)
  })

  it("emits 'close' with reasons drain and forced during shutdown, 'draining' once and 'shutdown' with the report", async () => {
    const { ka, port, events, next } = await start({ grace: 0.1 })
    const idle = resources.add(await connect(port), (c) => c.destroy())
    await idle.request('/')
    const hanging = resources.add(await connect(port), (c) => c.destroy())
    const started = next()
    hanging.send(rawRequest('/hang'))
    await started

    ka.drain()
    expect(events.draining).toBe(1)
    const report = await ka.shutdown({ timeout: 0.4 })
    await Promise.all([idle.closed, hanging.closed])

    expect(events.draining).toBe(1)
    expect(events.closes).toEqual([closeEvent('drain', 1), closeEvent('forced', 0)])
    expect(events.shutdowns).toEqual([report])
    expect(report).toMatchObject({ closedIdle: 1, completed: 0, forced: 1 })
    expect(ka.stats().closes).toMatchObject({ drain: 1, forced: 1 })
    // A second call emits nothing more.
    await ka.shutdown()
    expect(events.shutdowns).toHaveLength(1)
    expect(events.draining).toBe(1)
  })

  it("emits 'close' with reasons perIp and evicted for the connection caps", async () => {
    const perIp = await start({ maxConnectionsPerIp: 1 })
    const kept = resources.add(await connect(perIp.port), (c) => c.destroy())
    await kept.request('/')
    const refusedClose = perIp.nextClose()
    const refused = resources.add(await connect(perIp.port), (c) => c.destroy())
    await refused.closed
    expect(await refusedClose).toEqual({ reason: 'perIp', requests: 0, age: 0, remoteAddress: '127.0.0.1', localPort: perIp.port, http2: undefined })

    const capped = await start({ maxConnections: 1 })
    const oldest = resources.add(await connect(capped.port), (c) => c.destroy())
    await oldest.request('/')
    const evictedClose = capped.nextClose()
    const newcomer = resources.add(await connect(capped.port), (c) => c.destroy())
    await oldest.closed
    expect(await evictedClose).toEqual(closeEvent('evicted', 1))
    expect((await newcomer.request('/')).status).toBe(200)
    expect(capped.ka.stats().closes).toMatchObject({ evicted: 1, perIp: 0 })
    expect(perIp.ka.stats().closes).toMatchObject({ perIp: 1, evicted: 0 })
  })
})
