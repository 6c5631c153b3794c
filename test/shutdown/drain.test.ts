import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import type { KeepAliveController, KeepAliveOptions } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { connect, connectionHeaders } from '../helpers/wire.js'
import { useResources, type StartedServer } from '../helpers/resources.js'

const resources = useResources()

interface Started extends StartedServer {
  ka: KeepAliveController
  /** Resolves with the path of each request as its handler starts; `next()` waits for the next one. */
  next(): Promise<string>
}

/**
 * A raw node:http server: `/hang` never answers, `/slow?ms=N` answers after N ms, anything else at once.
 * Closed after the test even if it fails (sockets destroyed first).
 */
async function start(options: KeepAliveOptions = {}): Promise<Started> {
  const waiting: ((path: string) => void)[] = []
  const started = await resources.startServer(options, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    waiting.shift()?.(url.pathname)
    if (url.pathname === '/hang') return
    const ms = Number(url.searchParams.get('ms') ?? 0)
    if (ms > 0) setTimeout(() => res.end('slow'), ms)
    else res.end('ok')
  })
  return {
    ...started,
    ka: started.controller,
    next: () => new Promise((resolve) => waiting.push(resolve)),
  }
}

describe('controller.shutdown()', () => {
  it('answers a request written on an idle keep-alive socket just after shutdown starts, with Connection: close', async () => {
    const { ka, port } = await start({ drainQuiet: 3 })
    const raw = resources.add(await connect(port), (c) => c.destroy())
    const first = await raw.request('/first')
    expect(connectionHeaders(first)).toEqual({ connection: 'keep-alive', keepAlive: 'timeout=5, max=999' })

    const shutdown = ka.shutdown()
    // The client cannot know the server is draining: its next request is already on its way.
    const second = await raw.request('/second')
    expect(second.status).toBe(200)
    expect(second.body).toBe('ok')
    expect(connectionHeaders(second)).toEqual({ connection: 'close', keepAlive: null })
    await raw.closed
    const report = await shutdown
    expect(report).toMatchObject({ closedIdle: 0, completed: 1, forced: 0 })
    // Closed right after that response, not after the 3 s quiet window.
    expect(report.elapsed).toBeLessThan(2)
    expect(ka.stats().closes).toMatchObject({ drain: 1, client: 0, forced: 0 })
  })

  it('waits for a request whose first bytes are in when the quiet window ends, and answers it with Connection: close', async () => {
    const { ka, port } = await start({ drainQuiet: 0.3 })
    const raw = resources.add(await connect(port), (c) => c.destroy())
    await raw.request('/first')
    raw.send('GET /second HTTP/1.1\r\n')
    const shutdown = ka.shutdown({ timeout: 5 })
    // Well past the 0.3 s quiet window before the request is whole.
    await new Promise((resolve) => setTimeout(resolve, 800))
    raw.send('Host: localhost\r\n\r\n')
    const second = await raw.read()
    expect(second.body).toBe('ok')
    expect(connectionHeaders(second)).toEqual({ connection: 'close', keepAlive: null })
    await raw.closed
    expect(await shutdown).toMatchObject({ closedIdle: 0, completed: 1, forced: 0 })
  })

  it('closes an idle socket once it has been quiet for drainQuiet seconds, and one that never sent a request', async () => {
    const { ka, port } = await start({ drainQuiet: 0.3 })
    const used = resources.add(await connect(port), (c) => c.destroy())
    await used.request('/')
    const usedAt = performance.now()
    const silent = resources.add(await connect(port), (c) => c.destroy())
    const silentAt = performance.now()
    expect(ka.stats().connections).toEqual({ open: 2, active: 0, idle: 2 })

    const closedAt = (client: typeof used): Promise<number> => client.closed.then(() => performance.now())
    const closing = Promise.all([closedAt(used), closedAt(silent)])
    const report = await ka.shutdown()
    const [usedClosed, silentClosed] = await closing
    expect(report).toMatchObject({ closedIdle: 2, completed: 0, forced: 0 })
    // Each after its own quiet window (both were fresh when the drain began), and promptly after it.
    expect((usedClosed - usedAt) / 1000).toBeGreaterThanOrEqual(0.25)
    expect((silentClosed - silentAt) / 1000).toBeGreaterThanOrEqual(0.25)
    expect(report.elapsed).toBeLessThan(2)
    expect(ka.stats().closes).toMatchObject({ drain: 2, idleTimeout: 0 })
  })

  it('lets an in-flight request finish, closes its socket after the response and counts it as completed', async () => {
    const { ka, port, next } = await start({ grace: 0.2 })
    const raw = resources.add(await connect(port), (c) => c.destroy())
    const started = next()
    const response = raw.request('/slow?ms=300')
    await started
    expect(ka.stats().connections).toMatchObject({ open: 1, active: 1 })

    const report = await ka.shutdown({ timeout: 5 })
    const res = await response
    await raw.closed
    expect(res.body).toBe('slow')
    expect(connectionHeaders(res)).toEqual({ connection: 'close', keepAlive: null })
    expect(report).toMatchObject({ closedIdle: 0, completed: 1, forced: 0 })
    expect(report.elapsed).toBeGreaterThan(0.2)
    expect(report.elapsed).toBeLessThan(2)
  })

  it('destroys a request that never gets an answer at the deadline, counts it as forced and resolves in time', async () => {
    const { ka, port, next } = await start({ grace: 0.1 })
    const hanging = resources.add(await connect(port), (c) => c.destroy())
    const slow = resources.add(await connect(port), (c) => c.destroy())
    const idle = resources.add(await connect(port), (c) => c.destroy())
    await idle.request('/')
    let started = next()
    const hung = hanging.request('/hang').then(
      () => 'answered',
      (error: Error) => error.message,
    )
    await started
    started = next()
    const slowResponse = slow.request('/slow?ms=150')
    await started

    const startedAt = performance.now()
    const report = await ka.shutdown({ timeout: 0.5 })
    const waited = (performance.now() - startedAt) / 1000
    expect(await hung).toBe('connection closed before a complete response')
    expect(connectionHeaders(await slowResponse)).toEqual({ connection: 'close', keepAlive: null })
    await Promise.all([hanging.closed, slow.closed, idle.closed])

    expect(report).toMatchObject({ closedIdle: 1, completed: 1, forced: 1 })
    expect(report.elapsed).toBeGreaterThanOrEqual(0.45)
    expect(report.elapsed).toBeLessThan(2)
    expect(waited).toBeLessThan(2)
    expect(ka.stats().closes).toMatchObject({ forced: 1, drain: 2 })
    expect(ka.stats().connections.open).toBe(0)
  })

  it('resolves at once with an empty report when nothing is open', async () => {
    const { ka, server } = await start()
    const closed = once(server, 'close')
    const report = await ka.shutdown()
    await closed
    expect(report).toMatchObject({ closedIdle: 0, completed: 0, forced: 0 })
    expect(report.elapsed).toBeLessThan(0.5)
    expect(server.listening).toBe(false)
  })

  it('returns the same promise when called twice, even with other options', async () => {
    const { ka, port } = await start({ grace: 0.1 })
    const raw = resources.add(await connect(port), (c) => c.destroy())
    await raw.request('/')
    const first = ka.shutdown({ timeout: 5 })
    const second = ka.shutdown({ timeout: 0 })
    expect(second).toBe(first)
    const report = await first
    expect(ka.shutdown()).toBe(first)
    expect(report).toMatchObject({ closedIdle: 1, forced: 0 })
  })

  // From the check phase of the turn it starts in: the poll before has accepted what waited in the
  // kernel's queue, which closing the listener at once would reset.
  it('stops accepting new connections within the turn of the event loop it starts in', async () => {
    const { ka, server, port } = await start({ grace: 0.2 })
    const raw = resources.add(await connect(port), (c) => c.destroy())
    await raw.request('/')
    const shutdown = ka.shutdown()
    await new Promise<void>((resolve) => setImmediate(resolve))
    expect(server.listening).toBe(false)
    await expect(connect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    await shutdown
  })
})
