import { createKeepAlive } from './controller.js'
import { createGracefulShutdown, type GracefulShutdown, type GracefulShutdownOptions } from './shutdown.js'
import type { AttachableServer } from './types.js'

/**
 * On SIGTERM/SIGINT: report not-ready and answer with `Connection: close` for `readinessDelay`
 * seconds, run `beforeShutdown`, drain with the deadline, run `onShutdown`, log one line and exit
 * (0 after a clean drain, 1 if anything was forced). A second signal closes everything at once.
 * @example
 * const server = app.listen(3000)
 * gracefulShutdown(server, { keepAlive: ka, readinessDelay: 5 })
 */
export function gracefulShutdown(server: AttachableServer, options?: GracefulShutdownOptions): GracefulShutdown {
  return createGracefulShutdown(server, options, () => createKeepAlive())
}
