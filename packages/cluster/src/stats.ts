// Sums the workers' stats() into one cluster-wide snapshot.
import { CLOSE_REASONS, type CloseReason, type KeepAliveStats } from '@keepalive/core'
import type { ClusterStats, WorkerStats } from './types.js'

/**
 * Counts are summed; `reuseRatio` is weighted by each worker's requests (the cluster's own ratio);
 * `load` is the busiest worker's; `timeout` and `max` the lowest advertised (`null` = unlimited);
 * `draining` holds once every answering worker drains, or, with none answering, while `stopping`.
 */
export function sumStats(rows: WorkerStats[], stopping: boolean): ClusterStats {
  const closes = Object.fromEntries(CLOSE_REASONS.map((reason) => [reason, 0])) as Record<CloseReason, number>
  const total: ClusterStats = {
    connections: { open: 0, active: 0, idle: 0 },
    requests: 0,
    reuseRatio: 0,
    closes,
    load: 0,
    timeout: 0,
    max: null,
    draining: stopping,
    workers: rows,
  }
  const answered = rows.filter((row): row is WorkerStats & KeepAliveStats => row.error === undefined)
  let reused = 0
  let timeout = Infinity
  let max = Infinity
  for (const s of answered) {
    total.connections.open += s.connections.open
    total.connections.active += s.connections.active
    total.connections.idle += s.connections.idle
    total.requests += s.requests
    reused += s.reuseRatio * s.requests
    for (const reason of CLOSE_REASONS) closes[reason] += s.closes[reason] ?? 0
    total.load = Math.max(total.load, s.load)
    timeout = Math.min(timeout, s.timeout)
    max = Math.min(max, s.max ?? Infinity)
  }
  if (answered.length > 0) {
    total.timeout = timeout
    total.max = max === Infinity ? null : max
    total.draining = answered.every((s) => s.draining)
  }
  // Rounding: each ratio × requests is a whole number of reused requests.
  total.reuseRatio = total.requests === 0 ? 0 : Math.round(reused) / total.requests
  return total
}
