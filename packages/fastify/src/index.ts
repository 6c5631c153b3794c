import { createKeepAlive, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import { checkKeys, describe, fail, isPlainObject, seconds, type OptionError } from '@keepalive/core/check'
import type { FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify'
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

/** Plugin options: the core options (passed to `createKeepAlive` as they are), and the plugin's own. */
export interface FastifyKeepAliveOptions extends KeepAliveOptions {
  /** Seconds the drain run by `app.close()` lets in-flight requests finish before destroying what is left. @default 10 */
  shutdownTimeout?: number
  /**
   * Path of a readiness route: 200 while serving, 503 once a `gracefulShutdown` of this server
   * begins (during its `readinessDelay` too), the controller drains, or Fastify closes. @default none
   */
  readiness?: string
}

/** The Fastify majors the plugin supports: the peer range of package.json (a test keeps them equal). */
export const FASTIFY_VERSIONS = '^4.26.0 || ^5.0.0'

const OWN_OPTIONS = ['shutdownTimeout', 'readiness']

const plugin: FastifyPluginCallback<FastifyKeepAliveOptions> = (fastify: FastifyInstance, options, done) => {
  let controller: KeepAliveController
  let own: { shutdownTimeout: number; readiness: string | null }
  try {
    const { shutdownTimeout, readiness, ...core } = options
    own = resolveOwnOptions(shutdownTimeout, readiness)
    controller = createController(core)
  } catch (error) {
    // avvio does not catch what a callback plugin throws: hand it to done(), so register() rejects with it.
    done(error as Error)
    return
  }
  // Attached at register time, so the hook on the server's emit reaches every request, 404s and
  // errors included: no Fastify hook is needed. This also replaces Fastify's 72 s keepAliveTimeout.
  controller.attach(fastify.server)
  fastify.decorate('keepAlive', controller)
  let closing = false
  // close() runs preClose before Fastify closes idle sockets and the server: the drain goes first,
  // so nothing is left for Fastify's own forceCloseConnections to cut.
  fastify.addHook('preClose', (hookDone) => {
    closing = true
    controller.shutdown({ timeout: own.shutdownTimeout }).then(() => hookDone(), hookDone)
  })
  if (own.readiness !== null) {
    let draining = false
    const onDraining = (): void => {
      draining = true
    }
    controller.on('draining', onDraining)
    controller.on('notReady', onDraining)
    fastify.addHook('onClose', (_instance, hookDone) => {
      controller.off('draining', onDraining)
      controller.off('notReady', onDraining)
      hookDone()
    })
    // A plain route: Fastify sends the reply, and the controller's Connection: close rides on it while draining.
    fastify.get(own.readiness, function keepAliveReadiness(_request: FastifyRequest, reply: FastifyReply) {
      const ready = !closing && !draining
      return reply
        .code(ready ? 200 : 503)
        .type('text/plain; charset=utf-8')
        .send(ready ? 'ready\n' : 'draining\n')
    })
  }
  done()
}

function resolveOwnOptions(shutdownTimeout: unknown, readiness: unknown): { shutdownTimeout: number; readiness: string | null } {
  if (readiness !== undefined) {
    if (typeof readiness !== 'string') fail(TypeError, 'readiness', `"readiness" must be a route path such as '/ready', got ${describe(readiness)}`)
    if (!readiness.startsWith('/')) fail(RangeError, 'readiness', `"readiness" must be a path starting with '/', got ${JSON.stringify(readiness)}`)
  }
  return {
    shutdownTimeout: shutdownTimeout === undefined ? 10 : seconds('shutdownTimeout', shutdownTimeout, { min: 0 }),
    readiness: readiness ?? null,
  }
}

function createController(core: KeepAliveOptions): KeepAliveController {
  if (!isPlainObject(core)) return createKeepAlive(core)
  try {
    return createKeepAlive(core)
  } catch (error) {
    // A misspelt plugin option reaches core as an unknown core option: suggest the plugin's own name when it is the near one.
    const { code, option } = error as Partial<OptionError>
    if (code === 'ERR_KEEPALIVE_UNKNOWN_OPTION' && typeof option === 'string' && !option.includes('.')) {
      try {
        checkKeys({ [option]: true }, OWN_OPTIONS, '')
      } catch (suggestion) {
        if ((suggestion as Error).message.includes('did you mean')) throw suggestion
      }
    }
    throw error
  }
}

/** Fastify plugin: registers the keep-alive policy and decorates `fastify.keepAlive`. */
const keepAlive = fp(plugin, { name: '@keepalive/fastify', fastify: FASTIFY_VERSIONS })

export default keepAlive
export { keepAlive }
