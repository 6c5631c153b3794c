import type { IncomingMessage, ServerResponse } from 'node:http'
import { createKeepAlive, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'

/** Every type of the core (options, controller, stats, events), so one import is enough. */
export type * from '@keepalive/core'
/** Re-exported so a Koa app needs one import for graceful shutdown too. */
export { gracefulShutdown } from '@keepalive/core'

/** The part of Koa's context the middleware reads (Koa itself is a peer dependency, types only). */
export interface KoaContextLike {
  req: IncomingMessage
  res: ServerResponse
}

/** Koa middleware that also carries the controller's methods (`attach`, `stats`, `shutdown`, ...). */
export type KeepAliveMiddleware = ((ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<unknown>) & KeepAliveController

/**
 * Koa middleware applying the keep-alive policy to every response of the server it serves,
 * including the ones Koa writes after the middleware chain (bodies, 404s, errors).
 * @example
 * const ka = keepAlive({ timeout: 65 })
 * app.use(ka)
 * ka.attach(app.listen(3000))
 */
export function keepAlive(options?: KeepAliveOptions): KeepAliveMiddleware {
  const controller = createKeepAlive(options)
  // Not async: the next middleware's promise is Koa's to wait on, no promise of our own per request.
  function keepAliveMiddleware(ctx: KoaContextLike, next: () => Promise<unknown>): Promise<unknown> {
    controller.handle(ctx.req, ctx.res) // the decision itself runs when Koa writes the headers
    return next()
  }

  return Object.assign(keepAliveMiddleware, controller)
}

export default keepAlive
