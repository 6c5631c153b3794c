export { createKeepAlive } from './controller.js'
export { parseKeepAlive, formatKeepAlive } from './header.js'
/** Wires shutdown to SIGTERM/SIGINT with a readiness delay and hooks; exits when done. */
export { gracefulShutdown } from './graceful.js'
export type { GracefulShutdown, GracefulShutdownOptions } from './shutdown.js'
export type {
  AdaptiveOptions,
  AnyRequest,
  AnyResponse,
  AttachableServer,
  BehindOptions,
  CloseEvent,
  CloseReason,
  ConnectionEvent,
  KeepAliveController,
  KeepAliveEvents,
  KeepAliveOptions,
  KeepAliveParams,
  KeepAliveStats,
  ShutdownOptions,
  ShutdownReport,
} from './types.js'
