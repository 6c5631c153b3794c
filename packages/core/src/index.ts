// The public API: re-exports only, no logic.
export { createKeepAlive } from './controller.js'
export { parseKeepAlive, formatKeepAlive } from './header.js'
/** Every close reason, in the order `stats().closes` lists them. */
export { CLOSE_REASONS } from './types.js'
/** Wires shutdown to SIGTERM/SIGINT with a readiness delay and hooks; exits when done. */
export { gracefulShutdown } from './graceful.js'
export type { GracefulShutdown, GracefulShutdownOptions } from './graceful.js'
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
  UpgradedEvent,
} from './types.js'
