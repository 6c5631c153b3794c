import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from 'prom-client'
import { CLOSE_REASONS, type CloseEvent, type CloseReason, type KeepAliveController, type KeepAliveStats } from '@keepalive/core'
import { checkKeys, describe, fail, histogramBuckets, isPlainObject, namePrefix, objectWith, SNAKE_CASE_REASONS } from '@keepalive/core/check'

/** The parts of a controller the exporter reads; an adapter's middleware or `fastify.keepAlive` works too. */
export type MetricsSource = Pick<KeepAliveController, 'stats' | 'on' | 'off'>

/** Options of {@link registerKeepAliveMetrics}. */
export interface KeepAliveMetricsOptions {
  /** The registry to register on. @default prom-client's global `register` */
  registry?: Registry
  /** Prepended to every metric name. @default 'keepalive_' */
  prefix?: string
  /** Static labels on every series of this controller, e.g. `{ server: 'admin' }`; a second controller joins the same metrics with other values. @default {} */
  labels?: Readonly<Record<string, string>>
  /** Bucket bounds of the requests-per-connection histogram, in requests. @default [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000] */
  buckets?: readonly number[]
  /** Bucket bounds of the connection-duration histogram, in seconds. @default [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600] */
  durationBuckets?: readonly number[]
}

/** What {@link registerKeepAliveMetrics} returns. */
export interface KeepAliveMetrics {
  /** Full names of the registered metrics. */
  readonly names: readonly string[]
  /** Stops exporting this controller (its series leave the metrics; the metrics leave the registry with the last controller); idempotent. */
  unregister(): void
}

/** Close reasons as label values: snake_case, as Prometheus label values usually are. */
export const REASON_LABELS: Readonly<Record<CloseReason, string>> = SNAKE_CASE_REASONS

const OPTION_KEYS = ['registry', 'prefix', 'labels', 'buckets', 'durationBuckets']
// Prometheus data model: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
// with names starting "__" reserved; ours are state, reason and the histograms' le.
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const OWN_LABELS = ['state', 'reason', 'le']

type Labels = Record<string, string>

/** One controller exported on a family: its static labels and one stats snapshot per scrape. */
interface Member {
  labels: Labels
  stats(): KeepAliveStats
  onClose(event: CloseEvent): void
}

/** The metrics of one prefix on one registry, shared by every controller registered there with its own labels. */
interface Family {
  labelNames: readonly string[]
  buckets: readonly number[]
  durationBuckets: readonly number[]
  members: Map<string, Member>
  metrics: readonly [Gauge, Counter, Counter, Histogram, Histogram, Gauge, Gauge, Gauge, Gauge]
}

// Which of a registry's metrics are ours, and the family each belongs to. Keyed by the metric
// objects the user's registry holds, so controllers meet only through a registry they share.
const families = new WeakMap<object, Family>()

/**
 * Registers keep-alive metrics of a controller on a prom-client registry. Gauges and counters are
 * read from `controller.stats()` when the registry is scraped, so nothing runs per request; the
 * histograms are observed from each `close` event. A second controller registers on the same
 * metrics with other `labels`, as Prometheus tells to differentiate.
 * @example
 * const ka = createKeepAlive()
 * const metrics = registerKeepAliveMetrics(ka, { registry, labels: { server: 'api' } })
 * // later: metrics.unregister()
 */
export function registerKeepAliveMetrics(controller: MetricsSource, options: Readonly<KeepAliveMetricsOptions> = {}): KeepAliveMetrics {
  if (controller === null || (typeof controller !== 'object' && typeof controller !== 'function') || typeof controller.stats !== 'function') {
    fail(TypeError, 'controller', "registerKeepAliveMetrics() needs a keepalive controller (createKeepAlive() or an adapter's middleware)")
  }
  const { registry, prefix, labels, buckets, durationBuckets } = resolveMetricsOptions(options)
  const names = metricNames(prefix)
  const family = joinFamily(registry, names, labels, buckets, durationBuckets)
  const key = labelKey(labels)

  // One scrape collects every metric synchronously before awaiting anything (prom-client's
  // Registry.metrics()): sharing one snapshot per tick keeps the metrics of a scrape consistent.
  let snapshot: KeepAliveStats | null = null
  const [, , , perConnection, duration] = family.metrics
  const member: Member = {
    labels,
    stats() {
      if (snapshot === null) {
        snapshot = controller.stats()
        queueMicrotask(() => {
          snapshot = null
        })
      }
      return snapshot
    },
    onClose(event) {
      perConnection.observe(labels, event.requests)
      duration.observe({ ...labels, reason: REASON_LABELS[event.reason] }, event.age)
    },
  }
  family.members.set(key, member)
  // Known label values start at zero, so the first close is a visible increase, not a new series.
  perConnection.zero(labels)
  for (const reason of CLOSE_REASONS) duration.zero({ ...labels, reason: REASON_LABELS[reason] })
  controller.on('close', member.onClose)

  let registered = true
  return {
    names: Object.values(names),
    unregister() {
      if (!registered) return
      registered = false
      controller.off('close', member.onClose)
      family.members.delete(key)
      perConnection.remove(labels)
      for (const reason of CLOSE_REASONS) duration.remove({ ...labels, reason: REASON_LABELS[reason] })
      if (family.members.size > 0) return
      for (const name of Object.values(names)) {
        // Only remove what is still ours: the user may have cleared the registry meanwhile.
        const metric = registry.getSingleMetric(name)
        if (metric !== undefined && families.get(metric) === family) registry.removeSingleMetric(name)
      }
    },
  }
}

function metricNames(prefix: string) {
  return {
    connections: `${prefix}connections`,
    requests: `${prefix}requests_total`,
    closes: `${prefix}connection_closes_total`,
    requestsPerConnection: `${prefix}requests_per_connection`,
    duration: `${prefix}connection_duration_seconds`,
    load: `${prefix}load_ratio`,
    timeout: `${prefix}timeout_seconds`,
    max: `${prefix}max_requests`,
    draining: `${prefix}draining`,
  }
}

/** The family already registered under these names (checked to fit), or a new one registered now. */
function joinFamily(
  registry: Registry,
  names: ReturnType<typeof metricNames>,
  labels: Labels,
  buckets: readonly number[],
  durationBuckets: readonly number[],
): Family {
  const labelNames = Object.keys(labels).sort()
  const existing = Object.values(names).map((name) => registry.getSingleMetric(name))
  const found = existing.find((metric) => metric !== undefined)
  if (found !== undefined) {
    const family = families.get(found)
    if (family === undefined || existing.some((metric) => metric === undefined || families.get(metric) !== family)) {
      const name = Object.values(names)[existing.indexOf(found)]!
      throw new Error(`keepalive: a metric named "${name}" is already registered; unregister the previous one or pass another "prefix"`)
    }
    if (family.labelNames.join() !== labelNames.join()) {
      fail(
        TypeError,
        'labels',
        `"labels" must have the names of the controller already registered as "${names.connections}" (${family.labelNames.join(', ') || 'none'}), got ${labelNames.join(', ') || 'none'}; or pass another "prefix"`,
      )
    }
    if (family.members.has(labelKey(labels))) {
      throw new Error(
        `keepalive: a controller with labels ${JSON.stringify(labels)} is already registered as "${names.connections}"; give this one other "labels" (e.g. { server: 'admin' }) or another "prefix"`,
      )
    }
    if (family.buckets.join() !== buckets.join() || family.durationBuckets.join() !== durationBuckets.join()) {
      fail(RangeError, 'buckets', `"buckets" and "durationBuckets" must be those of the controller already registered as "${names.connections}"`)
    }
    return family
  }
  const family: Family = {
    labelNames,
    buckets,
    durationBuckets,
    members: new Map(),
    metrics: createMetrics(names, labelNames, buckets, durationBuckets, () => family.members.values()),
  }
  for (const metric of family.metrics) {
    families.set(metric, family)
    registry.registerMetric(metric)
  }
  return family
}

function createMetrics(
  names: ReturnType<typeof metricNames>,
  labelNames: readonly string[],
  buckets: readonly number[],
  durationBuckets: readonly number[],
  members: () => Iterable<Member>,
): Family['metrics'] {
  // Each scrape rebuilds the series from the members' stats (reset first), so a controller that
  // unregistered leaves no stale series, and counters, set from the controller's own totals, never
  // count twice nor drift from stats().
  function collect<M extends Gauge | Counter>(write: (metric: M, labels: Labels, stats: KeepAliveStats) => void): (this: M) => void {
    return function (this: M): void {
      this.reset()
      for (const member of members()) write(this, member.labels, member.stats())
    }
  }
  /** What every metric of the family is configured with: no registry of its own (`joinFamily` registers it), the members' label names (and `label`). */
  const config = (name: string, help: string, label?: string) => ({
    name,
    help,
    labelNames: label === undefined ? labelNames : [...labelNames, label],
    registers: [],
  })
  const gauge = (name: string, help: string, read: (stats: KeepAliveStats) => number): Gauge =>
    new Gauge({ ...config(name, help), collect: collect<Gauge>((metric, labels, stats) => metric.set(labels, read(stats))) })
  return [
    new Gauge({
      ...config(
        names.connections,
        'Open connections by state (active: serving a request, idle: kept alive between requests); their sum is all open connections.',
        'state',
      ),
      collect: collect<Gauge>((metric, labels, { connections }) => {
        metric.set({ ...labels, state: 'active' }, connections.active)
        metric.set({ ...labels, state: 'idle' }, connections.idle)
      }),
    }),
    new Counter({ ...config(names.requests, 'Responses finished.'), collect: collect<Counter>((metric, labels, stats) => metric.inc(labels, stats.requests)) }),
    new Counter({
      ...config(names.closes, `Connections closed, by reason (${CLOSE_REASONS.map((reason) => REASON_LABELS[reason]).join(', ')}).`, 'reason'),
      collect: collect<Counter>((metric, labels, { closes }) => {
        for (const reason of CLOSE_REASONS) metric.inc({ ...labels, reason: REASON_LABELS[reason] }, closes[reason])
      }),
    }),
    new Histogram({ ...config(names.requestsPerConnection, 'Requests a connection served, observed when it closed.'), buckets: [...buckets] }),
    new Histogram({
      ...config(names.duration, 'How long a connection was open, in seconds, observed when it closed, by close reason.', 'reason'),
      buckets: [...durationBuckets],
    }),
    gauge(names.load, 'Current smoothed load factor, from 0 to 1.', (stats) => stats.load),
    gauge(names.timeout, 'Idle timeout currently advertised in Keep-Alive: timeout=, in seconds.', (stats) => stats.timeout),
    gauge(names.max, 'Requests one connection may currently serve in total; +Inf when unlimited.', (stats) => stats.max ?? Infinity),
    gauge(names.draining, '1 while the controller is draining for shutdown (every response carries Connection: close), else 0.', (stats) =>
      stats.draining ? 1 : 0,
    ),
  ]
}

function labelKey(labels: Labels): string {
  return JSON.stringify(
    Object.keys(labels)
      .sort()
      .map((name) => [name, labels[name]]),
  )
}

interface ResolvedMetricsOptions {
  registry: Registry
  prefix: string
  labels: Labels
  buckets: readonly number[]
  durationBuckets: readonly number[]
}

function resolveMetricsOptions(options: unknown): ResolvedMetricsOptions {
  if (options === undefined) options = {}
  if (!isPlainObject(options)) fail(TypeError, '', `metrics options must be an object, got ${describe(options)}`)
  checkKeys(options, OPTION_KEYS, '')
  return {
    registry: objectWith<Registry>('registry', options.registry ?? globalRegistry, 'registerMetric', 'a prom-client Registry'),
    prefix: namePrefix('prefix', options.prefix, 'keepalive_', NAME, 'Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)'),
    labels: resolveLabels(options.labels),
    ...histogramBuckets(options),
  }
}

function resolveLabels(value: unknown): Labels {
  if (value === undefined) return {}
  if (!isPlainObject(value)) fail(TypeError, 'labels', `"labels" must be an object of label names to string values, got ${describe(value)}`)
  const labels: Labels = {}
  for (const [name, text] of Object.entries(value)) {
    if (!LABEL.test(name) || name.startsWith('__')) {
      fail(
        RangeError,
        `labels.${name}`,
        `"labels" names must be valid Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __), got ${JSON.stringify(name)}`,
      )
    }
    if (OWN_LABELS.includes(name)) fail(RangeError, `labels.${name}`, `"labels.${name}" is a label the metrics set themselves; allowed: any other name`)
    if (typeof text !== 'string') fail(TypeError, `labels.${name}`, `"labels.${name}" must be a string, got ${describe(text)}`)
    labels[name] = text
  }
  return labels
}
