import { createKeepAlive } from './controller.js'
import { createGracefulShutdown, type GracefulShutdown, type GracefulShutdownOptions } from './shutdown.js'
import type { AttachableServer } from './types.js'

/**
 * On SIGTERM/SIGINT: report not-ready (keep serving as usual) for `readinessDelay` seconds, run
 * `beforeShutdown`, drain with the deadline (every response `Connection: close`, idle sockets closed
 * once quiet), run `onShutdown`, log the report and exit (0 after a clean drain, 1 if anything was
 * forced). A second signal closes everything at once.
 * @example
 * const server = app.listen(3000)
 * gracefulShutdown(server, { keepAlive: ka, readinessDelay: 5 })
 */
export function gracefulShutdown(server: AttachableServer, options?: GracefulShutdownOptions): GracefulShutdown {
  return createGracefulShutdown(server, options, () => createKeepAlive())
}
