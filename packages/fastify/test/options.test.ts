// The plugin's own options (shutdownTimeout, readiness), its core options passed through, and its
// declared Fastify range, on Fastify 4 and 5 alike.
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { gracefulShutdown, type ShutdownReport } from '@keepalive/core'
import keepAlive, { FASTIFY_VERSIONS, type FastifyKeepAliveOptions } from '@keepalive/fastify'
import fastify4 from 'fastify4'
import fastify5, { type FastifyInstance, type FastifyServerOptions } from 'fastify5'
import { describe, expect, it } from 'vitest'
import { nextRequestStart } from '../../../test/helpers/events.js'
import { connect, connectionHeaders, header, rawRequest } from '../../../test/helpers/wire.js'
import { useResources } from '../../../test/helpers/resources.js'

const resources = useResources()

/** The one server option these tests set, which both majors share. */
type ServerOptions = Pick<FastifyServerOptions, 'return503OnClosing'>

const majors = [
  ['fastify4', (options?: ServerOptions) => fastify4(options) as unknown as FastifyInstance],
  ['fastify5', (options?: ServerOptions) => fastify5(options)],
] as const

interface Started {
  app: FastifyInstance
  port: number
  /** Resolves the route `/hold`'s requests, which wait until then. */
  release(): void
}

describe.each(majors)('%s: plugin options', (name, create) => {
  async function start(options: FastifyKeepAliveOptions, server: ServerOptions = {}): Promise<Started> {
    const app = create(server)
    let release = (): void => {}
    const held = new Promise<void>((resolve) => (release = resolve))
    resources.add(app, async (a) => {
      release()
      a.server.closeAllConnections()
      await a.close()
    })
    await app.register(keepAlive, options)
    app.get('/', async () => 'ok')
    app.get('/hold', async () => {
      await held
      return 'ok'
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { app, port: (app.server.address() as { port: number }).port, release }
  }

  it("registers on this major, which the declared range, the peer range and fastify-plugin's metadata all admit", async () => {
    const { app } = await start({})
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      peerDependencies: Record<string, string>
      dependencies: Record<string, string>
    }
    expect(pkg.peerDependencies.fastify).toBe(FASTIFY_VERSIONS)
    expect((keepAlive as unknown as Record<symbol, { fastify: string; name: string }>)[Symbol.for('plugin-meta')]).toMatchObject({
      name: '@keepalive/fastify',
      fastify: FASTIFY_VERSIONS,
    })
    // fastify-plugin 4.x is the series for Fastify 4, 5.x the one for Fastify 5: both are allowed.
    expect(pkg.dependencies['fastify-plugin']).toBe('^4.5.1 || ^5.0.0')
    expect(Number(app.version.split('.')[0])).toBe(Number(name.slice(-1)))
  })

  it('passes the core options through unchanged', async () => {
    const options = { timeout: 2, max: 3 }
    const { port } = await start(options)
    const client = resources.add(await connect(port), (c) => c.destroy())
    expect(connectionHeaders(await client.request('/'))).toEqual({ connection: 'keep-alive', keepAlive: 'timeout=2, max=2' })
    expect(options).toEqual({ timeout: 2, max: 3 })
  })

  it('drains with shutdownTimeout in app.close(): an in-flight request is cut at the deadline, not after 10 s', async () => {
    const { app, port } = await start({ shutdownTimeout: 0.3 })
    const reports: ShutdownReport[] = []
    app.keepAlive.on('shutdown', (report) => reports.push(report))
    const client = resources.add(await connect(port), (c) => c.destroy())
    const started = nextRequestStart(app.server)
    client.send(rawRequest('/hold'))
    await started
    const begun = performance.now()
    await app.close()
    const elapsed = (performance.now() - begun) / 1000
    await client.closed
    expect(elapsed).toBeGreaterThanOrEqual(0.25)
    expect(elapsed).toBeLessThan(5)
    expect(reports).toMatchObject([{ forced: 1, completed: 0 }])
  })

  it('answers the readiness route 200 while serving and 503 with Connection: close once the controller drains', async () => {
    const { app, port } = await start({ readiness: '/ready' })
    const client = resources.add(await connect(port), (c) => c.destroy())
    const ready = await client.request('/ready')
    expect([ready.status, ready.body, header(ready, 'content-type')]).toEqual([200, 'ready\n', ['text/plain; charset=utf-8']])
    expect(connectionHeaders(ready).connection).toBe('keep-alive')
    app.keepAlive.drain()
    const draining = await client.request('/ready')
    expect([draining.status, draining.body]).toEqual([503, 'draining\n'])
    expect(connectionHeaders(draining)).toEqual({ connection: 'close', keepAlive: null })
    // Any other route still answers normally while draining, with Connection: close.
    const other = resources.add(await connect(port), (c) => c.destroy())
    expect((await other.request('/')).status).toBe(200)
  })

  it('answers the readiness route 503 from the route itself once Fastify is closing', async () => {
    // Without return503OnClosing, Fastify routes requests during close: the 503 is the plugin's.
    const { app, port } = await start({ readiness: '/ready', shutdownTimeout: 2 }, { return503OnClosing: false })
    const client = resources.add(await connect(port), (c) => c.destroy())
    expect((await client.request('/ready')).status).toBe(200)
    const draining = once(app.keepAlive as unknown as NodeJS.EventEmitter, 'draining')
    const closed = app.close()
    await draining
    const during = await client.request('/ready')
    expect([during.status, during.body]).toEqual([503, 'draining\n'])
    await closed
    await client.closed
  })

  it("answers the readiness route 503 through gracefulShutdown's readinessDelay, while other routes still keep alive", async () => {
    const { app, port } = await start({ readiness: '/ready' })
    const graceful = gracefulShutdown(app.server, { keepAlive: app.keepAlive, readinessDelay: 30, signals: [], exit: false, logger: () => {} })
    resources.add(graceful, (g) => g.dispose())
    const client = resources.add(await connect(port), (c) => c.destroy())
    expect((await client.request('/ready')).status).toBe(200)
    const notReady = once(app.keepAlive as unknown as NodeJS.EventEmitter, 'notReady')
    void graceful.shutdown()
    await notReady
    const during = await client.request('/ready')
    expect([during.status, during.body]).toEqual([503, 'draining\n'])
    // The drain has not started: responses keep their connections, readiness is the only change.
    expect(connectionHeaders(during).connection).toBe('keep-alive')
    expect(app.keepAlive.stats().draining).toBe(false)
    expect((await client.request('/')).status).toBe(200)
  })

  it('registers no route when readiness is not given', async () => {
    const { port } = await start({})
    const client = resources.add(await connect(port), (c) => c.destroy())
    expect((await client.request('/ready')).status).toBe(404)
  })

  it('rejects bad plugin options at register, naming the option, the value and what is allowed', async () => {
    const cases: [unknown, ErrorConstructor, string][] = [
      [{ shutdownTimeout: '10' }, TypeError, 'keepalive: "shutdownTimeout" must be a number of seconds, got "10" (string)'],
      [{ shutdownTimeout: -1 }, RangeError, 'keepalive: "shutdownTimeout" must be at least 0 and at most 2147482 seconds, got -1'],
      [{ readiness: true }, TypeError, 'keepalive: "readiness" must be a route path such as \'/ready\', got true (boolean)'],
      [{ readiness: 'ready' }, RangeError, 'keepalive: "readiness" must be a path starting with \'/\', got "ready"'],
      [{ shutdownTimout: 5 }, TypeError, 'keepalive: unknown option "shutdownTimout"; did you mean "shutdownTimeout"?'],
      [{ readyness: '/ready' }, TypeError, 'keepalive: unknown option "readyness"; did you mean "readiness"?'],
      // A core option's typo gets core's own suggestion.
      [{ timeot: 5 }, TypeError, 'keepalive: unknown option "timeot"; did you mean "timeout"?'],
    ]
    for (const [options, type, message] of cases) {
      const app = resources.add(create(), (a) => a.close())
      const error: unknown = await app.register(keepAlive, options as FastifyKeepAliveOptions).then(
        () => null,
        (caught: unknown) => caught,
      )
      expect(error).toBeInstanceOf(type)
      expect((error as Error).message).toBe(message)
    }
  })
})
