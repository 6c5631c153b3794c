import { createKeepAlive, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import type { FastifyInstance, FastifyPluginCallback } from 'fastify'
import fp from 'fastify-plugin'

/** Every type of the core (options, controller, stats, events), so one import is enough. */
export type * from '@keepalive/core'
/** Re-exported so a Fastify app needs one import for graceful shutdown too. */
export { gracefulShutdown } from '@keepalive/core'

declare module 'fastify' {
  interface FastifyInstance {
    /** The keep-alive controller: `stats()`, `shutdown()`, events. */
    keepAlive: KeepAliveController
  }
}

/** Plugin options: the core options. */
export type FastifyKeepAliveOptions = KeepAliveOptions

const plugin: FastifyPluginCallback<FastifyKeepAliveOptions> = (fastify: FastifyInstance, options, done) => {
  let controller: KeepAliveController
  try {
    controller = createKeepAlive(options)
  } catch (error) {
    // avvio does not catch what a callback plugin throws: hand it to done(), so register() rejects with it.
    done(error as Error)
    return
  }
  // Attached at register time, so Node's request channel reaches every request, 404s and errors
  // included: no per-request hook is needed. This also replaces Fastify's 72 s keepAliveTimeout.
  controller.attach(fastify.server)
  fastify.decorate('keepAlive', controller)
  // close() runs preClose before Fastify closes idle sockets and the server: the drain goes first,
  // so nothing is left for Fastify's own forceCloseConnections to cut.
  fastify.addHook('preClose', (hookDone) => {
    controller.shutdown().then(() => hookDone(), hookDone)
  })
  done()
}

/** Fastify plugin: registers the keep-alive policy and decorates `fastify.keepAlive`. */
const keepAlive = fp(plugin, { name: '@keepalive/fastify', fastify: '4.x || 5.x' })

export default keepAlive
export { keepAlive }
