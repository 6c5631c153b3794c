import type { KeepAliveStats } from '@keepalive/core'

/** stats() of a controller with the default options that has served nothing: the fixed shape the README documents. */
export const FRESH_STATS: KeepAliveStats = Object.freeze({
  connections: { open: 0, active: 0, idle: 0 },
  requests: 0,
  reuseRatio: 0,
  closes: { client: 0, idleTimeout: 0, maxRequests: 0, maxAge: 0, shed: 0, evicted: 0, perIp: 0, drain: 0, forced: 0 },
  load: 0,
  timeout: 5,
  max: 1000,
  draining: false,
})
