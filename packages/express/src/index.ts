import type { IncomingMessage, ServerResponse } from 'node:http'
import { createKeepAlive, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'

/** Every type of the core (options, controller, stats, events), so one import is enough. */
export type * from '@keepalive/core'
/** Re-exported so an Express app needs one import for graceful shutdown too. */
export { gracefulShutdown } from '@keepalive/core'

/** Express middleware that also carries the controller's methods (`attach`, `stats`, `shutdown`, ...). */
export type KeepAliveMiddleware = ((req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void) & KeepAliveController

/**
 * Express middleware applying the keep-alive policy to every response of the server it serves.
 * @example
 * const ka = keepAlive({ timeout: 65 })
 * app.use(ka)
 * ka.attach(app.listen(3000))
 */
export function keepAlive(options?: KeepAliveOptions): KeepAliveMiddleware {
  const controller = createKeepAlive(options)
  function keepAliveMiddleware(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
    controller.handle(req, res) // first-request attach is core's job, so this line is the whole adapter
    next()
  }
  return Object.assign(keepAliveMiddleware, controller)
}

export default keepAlive
