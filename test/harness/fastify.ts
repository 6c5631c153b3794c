import { Readable } from 'node:stream'
import { setTimeout as delay } from 'node:timers/promises'
import keepAlive from '@keepalive/fastify'
import type { KeepAliveOptions } from '@keepalive/core'
import fastify4 from 'fastify4'
import fastify5, { type FastifyInstance } from 'fastify5'
import { delayOf, listening, running, type Harness } from './harness.js'

/** The route contract of harness.ts, written the usual Fastify way, plus `/hijack`. */
function routes(app: FastifyInstance): void {
  app.get('/', async () => 'ok')
  app.get('/stream', (_request, reply) => reply.type('text/plain').send(Readable.from(['hello ', 'world'])))
  app.get('/app-keepalive', (_request, reply) => reply.header('Keep-Alive', 'timeout=30').send('ok'))
  app.get('/app-close', (_request, reply) => reply.header('Connection', 'close').send('ok'))
  app.get('/slow', async (request) => {
    await delay(delayOf(request.url))
    return 'ok'
  })
  app.get('/throw', async () => {
    throw new Error('boom')
  })
  app.get('/hijack', (_request, reply) => {
    reply.hijack()
    reply.raw.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '2' })
    reply.raw.end('ok')
  })
}

function fastifyHarness(name: string, create: () => FastifyInstance): Harness {
  return {
    name,
    hijack: true,
    lazyAttach: false,
    async start(options?: KeepAliveOptions) {
      const app = create()
      try {
        await app.register(keepAlive, options ?? {})
        routes(app)
        await app.listen({ port: 0, host: '127.0.0.1' })
      } catch (error) {
        await app.close()
        throw error
      }
      const port = await listening(app.server)
      return running(app.server, port, app.keepAlive, async () => {
        // Our preClose drain would wait `grace` for idle sockets to go quiet: the tests are done with them.
        app.server.closeAllConnections()
        await app.close()
      })
    },
  }
}

export const fastify4Harness = fastifyHarness('fastify4', () => fastify4() as unknown as FastifyInstance)
export const fastify5Harness = fastifyHarness('fastify5', () => fastify5())
