import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from 'prom-client'
import { CLOSE_REASONS, type CloseEvent, type KeepAliveController, type KeepAliveStats } from '@keepalive/core'

/** The parts of a controller the exporter reads; an adapter's middleware or `fastify.keepAlive` works too. */
export type MetricsSource = Pick<KeepAliveController, 'stats' | 'on' | 'off'>

/** Options of {@link registerKeepAliveMetrics}. */
export interface KeepAliveMetricsOptions {
  /** The registry to register on. @default prom-client's global `register` */
  registry?: Registry
  /** Prepended to every metric name. @default 'keepalive_' */
  prefix?: string
  /** Bucket bounds of the requests-per-connection histogram. @default [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000] */
  buckets?: readonly number[]
}

/** What {@link registerKeepAliveMetrics} returns. */
export interface KeepAliveMetrics {
  /** Full names of the registered metrics. */
  readonly names: readonly string[]
  /** Removes the metrics from the registry and stops listening to the controller; idempotent. */
  unregister(): void
}


const DEFAULT_BUCKETS: readonly number[] = [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000]
const OPTION_KEYS = ['registry', 'prefix', 'buckets']
// Prometheus data model: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*.
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

/**
 * Registers keep-alive metrics of a controller on a prom-client registry. Gauges and counters are
 * read from `controller.stats()` when the registry is scraped, so nothing runs per request; the
 * requests-per-connection histogram is observed from each `close` event.
 * @example
 * const ka = createKeepAlive()
 * const metrics = registerKeepAliveMetrics(ka, { registry })
 * // later: metrics.unregister()
 */
export function registerKeepAliveMetrics(controller: MetricsSource, options: Readonly<KeepAliveMetricsOptions> = {}): KeepAliveMetrics {
  if (controller === null || (typeof controller !== 'object' && typeof controller !== 'function') || typeof controller.stats !== 'function') {
    throw new TypeError('keepalive: registerKeepAliveMetrics() needs a keepalive controller (createKeepAlive() or an adapter\'s middleware)')
  }
  const { registry, prefix, buckets } = resolveMetricsOptions(options)

  const names = {
    connections: `${prefix}connections`,
    requests: `${prefix}requests_total`,
    closes: `${prefix}connection_closes_total`,
    requestsPerConnection: `${prefix}requests_per_connection`,
    load: `${prefix}load_ratio`,
    timeout: `${prefix}timeout_seconds`,
    max: `${prefix}max_requests`,
    draining: `${prefix}draining`,
  }
  for (const name of Object.values(names)) {
    if (registry.getSingleMetric(name) !== undefined) {
      throw new Error(`keepalive: a metric named "${name}" is already registered; unregister the previous one or pass another "prefix"`)
    }
  }

  // One scrape collects every metric synchronously before awaiting anything (prom-client's
  // Registry.metrics()): sharing one snapshot per tick keeps the metrics of a scrape consistent.
  let snapshot: KeepAliveStats | null = null
  function stats(): KeepAliveStats {
    if (snapshot === null) {
      snapshot = controller.stats()
      queueMicrotask(() => {
        snapshot = null
      })
    }
    return snapshot
  }

  const metrics = [
    new Gauge({
      name: names.connections,
      help: 'Open connections by state (active: serving a request, idle: kept alive between requests); their sum is all open connections.',
      labelNames: ['state'] as const,
      registers: [],
      collect() {
        const { connections } = stats()
        this.set({ state: 'active' }, connections.active)
        this.set({ state: 'idle' }, connections.idle)
      },
    }),
    // Counters are set from the controller's own totals at scrape time (reset, then one increment),
    // so they never count twice and never drift from stats().
    new Counter({
      name: names.requests,
      help: 'Responses finished.',
      registers: [],
      collect() {
        this.reset()
        this.inc(stats().requests)
      },
    }),
    new Counter({
      name: names.closes,
      help: 'Connections closed, by reason (client, idleTimeout, maxRequests, maxAge, shed, evicted, perIp, drain, forced).',
      labelNames: ['reason'] as const,
      registers: [],
      collect() {
        const { closes } = stats()
        this.reset()
        for (const reason of CLOSE_REASONS) this.inc({ reason }, closes[reason])
      },
    }),
    new Histogram({
      name: names.requestsPerConnection,
      help: 'Requests a connection served, observed when it closed.',
      buckets: [...buckets],
      registers: [],
    }),
    new Gauge({
      name: names.load,
      help: 'Current smoothed load factor, from 0 to 1.',
      registers: [],
      collect() {
        this.set(stats().load)
      },
    }),
    new Gauge({
      name: names.timeout,
      help: 'Idle timeout currently advertised in Keep-Alive: timeout=, in seconds.',
      registers: [],
      collect() {
        this.set(stats().timeout)
      },
    }),
    new Gauge({
      name: names.max,
      help: 'Requests one connection may currently serve in total; +Inf when unlimited.',
      registers: [],
      collect() {
        this.set(stats().max ?? Infinity)
      },
    }),
    new Gauge({
      name: names.draining,
      help: '1 while the controller is draining for shutdown (every response carries Connection: close), else 0.',
      registers: [],
      collect() {
        this.set(stats().draining ? 1 : 0)
      },
    }),
  ] as const
  const histogram = metrics[3]

  function onClose(event: CloseEvent): void {
    histogram.observe(event.requests)
  }

  for (const metric of metrics) registry.registerMetric(metric)
  controller.on('close', onClose)

  let registered = true
  return {
    names: Object.values(names),
    unregister() {
      if (!registered) return
      registered = false
      controller.off('close', onClose)
      for (const name of Object.values(names)) {
        // Only remove what is still ours: the user may have cleared the registry meanwhile.
        if (metrics.some((metric) => registry.getSingleMetric(name) === metric)) registry.removeSingleMetric(name)
      }
    },
  }
}

interface ResolvedMetricsOptions {
  registry: Registry
  prefix: string
  buckets: readonly number[]
}

function resolveMetricsOptions(options: unknown): ResolvedMetricsOptions {
  if (options === undefined) options = {}
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`keepalive: metrics options must be an object, got ${describe(options)}`)
  }
  const input = options as Record<string, unknown>
  for (const key of Object.keys(input)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new TypeError(`keepalive: unknown option "${key}"; allowed: ${OPTION_KEYS.join(', ')}`)
    }
  }
  const registry = input.registry ?? globalRegistry
  if (typeof registry !== 'object' || registry === null || typeof (registry as Registry).registerMetric !== 'function') {
    throw new TypeError(`keepalive: "registry" must be a prom-client Registry, got ${describe(registry)}`)
  }
  const prefix = input.prefix ?? 'keepalive_'
  if (typeof prefix !== 'string') throw new TypeError(`keepalive: "prefix" must be a string, got ${describe(prefix)}`)
  if (prefix !== '' && !NAME.test(prefix)) {
    throw new RangeError(`keepalive: "prefix" must start a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got ${JSON.stringify(prefix)}`)
  }
  const buckets = input.buckets ?? DEFAULT_BUCKETS
  if (!Array.isArray(buckets) || buckets.length === 0 || !buckets.every((b) => typeof b === 'number' && Number.isFinite(b))) {
    throw new TypeError(`keepalive: "buckets" must be a non-empty array of finite numbers, got ${describe(buckets)}`)
  }
  return { registry: registry as Registry, prefix, buckets }
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return `[${value.map((v) => (typeof v === 'string' ? JSON.stringify(v) : String(v))).join(', ')}] (array)`
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`
  if (typeof value === 'object') return 'an object'
  return `${String(value)} (${typeof value})`
}
