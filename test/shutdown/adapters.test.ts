import { setTimeout as delay } from 'node:timers/promises'
import type { ShutdownReport } from '@keepalive/core'
import keepAlive from '@keepalive/fastify'
import fastify4 from 'fastify4'
import fastify5, { type FastifyInstance } from 'fastify5'
import { describe, expect, it } from 'vitest'
import { express4Harness, express5Harness } from '../harness/express.js'
import { listening, type Harness } from '../harness/harness.js'
import { koa2Harness, koa3Harness } from '../harness/koa.js'
import { nodeHarness } from '../harness/node.js'
import { nextRequestStart } from '../helpers/events.js'
import { connect, connectionHeaders } from '../helpers/wire.js'
import { useResources } from '../helpers/resources.js'

const resources = useResources()

const harnesses: Harness[] = [nodeHarness, express4Harness, express5Harness, koa2Harness, koa3Harness]

describe.each(harnesses.map((h) => [h.name, h] as const))('%s: controller.shutdown()', (_name, harness) => {
  it.each([
    ['attached explicitly', true],
    ['attached on the first request', false],
  ] as const)('lets an in-flight request finish with Connection: close and closes an idle socket (%s)', async (_how, attach) => {
    const running = await harness.start({ grace: 0.2 }, { attach })
    resources.add(running, (r) => r.close())
    const idle = resources.add(await connect(running.port), (c) => c.destroy())
    expect(connectionHeaders(await idle.request('/')).connection).toBe('keep-alive')
    const busy = resources.add(await connect(running.port), (c) => c.destroy())
    const started = nextRequestStart(running.server)
    const response = busy.request('/slow?ms=200')
    await started

    const report = await running.controller.shutdown({ timeout: 5 })
    const res = await response
    await Promise.all([idle.closed, busy.closed])
    expect(res.status).toBe(200)
    expect(connectionHeaders(res)).toEqual({ connection: 'close', keepAlive: null })
    expect(report).toMatchObject({ closedIdle: 1, completed: 1, forced: 0 })
    expect(running.controller.stats()).toMatchObject({ connections: { open: 0 }, requests: 2, draining: true })
    expect(running.server.listening).toBe(false)
  })
})

const fastifies: [string, () => FastifyInstance][] = [
  ['fastify4', () => fastify4() as unknown as FastifyInstance],
  ['fastify5', () => fastify5()],
]

describe.each(fastifies)('%s: fastify.close()', (_name, create) => {
  it('drains through the controller: the in-flight request completes with Connection: close, idle sockets close', async () => {
    const app = create()
    await app.register(keepAlive, { grace: 0.2 })
    app.get('/', async () => 'ok')
    app.get('/slow', async () => {
      await delay(200)
      return 'slow'
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    resources.add(app, (a) => a.close())
    const port = await listening(app.server)
    const reports: ShutdownReport[] = []
    app.keepAlive.on('shutdown', (report) => reports.push(report))

    const idle = resources.add(await connect(port), (c) => c.destroy())
    const first = await idle.request('/')
    // Our timeout governs, not Fastify's 72 s default.
    expect(connectionHeaders(first)).toEqual({ connection: 'keep-alive', keepAlive: 'timeout=5, max=999' })
    const busy = resources.add(await connect(port), (c) => c.destroy())
    const started = nextRequestStart(app.server)
    const response = busy.request('/slow')
    await started

    await app.close()
    const res = await response
    await Promise.all([idle.closed, busy.closed])
    expect(res).toMatchObject({ status: 200, body: 'slow' })
    expect(connectionHeaders(res)).toEqual({ connection: 'close', keepAlive: null })
    expect(reports).toHaveLength(1)
    expect(reports[0]).toMatchObject({ closedIdle: 1, completed: 1, forced: 0 })
    // close() waited for the drain: the report is the controller's shutdown promise's.
    expect(await app.keepAlive.shutdown()).toEqual(reports[0])
    expect(app.keepAlive.stats()).toMatchObject({ connections: { open: 0 }, closes: { drain: 2, forced: 0 } })
  })
})
