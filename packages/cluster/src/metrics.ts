// createClusterMetrics(): every worker's metrics, aggregated in the primary by prom-client's AggregatorRegistry.
import cluster from 'node:cluster'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { AggregatorRegistry, type Registry } from 'prom-client'
import { checkKeys, describe, fail, isPlainObject, seconds } from '@keepalive/core/check'
import { ask } from './messages.js'

/** Options of {@link createClusterMetrics}. */
export interface ClusterMetricsOptions {
  /**
   * `'worker'`: every series keeps a `worker` label (node:cluster's worker id), so nothing is lost;
   * `'sum'`: the workers' series are merged as prom-client aggregates them (by each metric's
   * `aggregator`, summed unless it says otherwise).
   * @default 'worker'
   */
  by?: 'worker' | 'sum'
  /** Seconds to wait for each worker; one that does not answer is left out of that scrape. @default 1 */
  timeout?: number
}

/** What {@link createClusterMetrics} returns. */
export interface ClusterMetrics {
  /** The Prometheus text format's content type, for the response. */
  readonly contentType: string
  /** The aggregated registry of every worker that answered. */
  registry(): Promise<Registry>
  /** The aggregated metrics as Prometheus text. */
  metrics(): Promise<string>
  /** A request handler serving {@link ClusterMetrics.metrics}: mount it on the primary (`http.createServer(handler)`). */
  handler(req: IncomingMessage, res: ServerResponse): void
}

/** One metric as `registry.getMetricsAsJSON()` gives it. */
type Metric = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number]

/**
 * Gathers, on the primary, the metrics every worker's `joinCluster(controller, { metrics: registry })`
 * exposes (typically `registerKeepAliveMetrics(controller, { registry })` from `@keepalive/prometheus`)
 * and aggregates them with prom-client's `AggregatorRegistry.aggregate`. A worker that does not answer
 * within `timeout` (busy, or exiting during a reload) is left out of that scrape, never fails it.
 * @example
 * const app = startCluster({ workers: 4 })
 * const metrics = createClusterMetrics()
 * http.createServer(metrics.handler).listen(9100)
 */
export function createClusterMetrics(options?: Readonly<ClusterMetricsOptions>): ClusterMetrics {
  const input: unknown = options ?? {}
  if (!isPlainObject(input)) fail(TypeError, 'options', `createClusterMetrics options must be an object, got ${describe(input)}`)
  checkKeys(input, ['by', 'timeout'], '')
  const by = input.by ?? 'worker'
  if (by !== 'worker' && by !== 'sum') fail(TypeError, 'by', `"by" must be "worker" or "sum", got ${describe(by)}`)
  const timeoutMs = (input.timeout === undefined ? 1 : seconds('timeout', input.timeout, { min: 0, above: true })) * 1000
  if (!cluster.isPrimary) throw new Error('keepalive: createClusterMetrics() runs in the primary process; workers pass their registry to joinCluster()')

  async function registry(): Promise<Registry> {
    const workers = Object.values(cluster.workers ?? {}).filter((worker) => worker !== undefined)
    const answers = await Promise.all(
      workers.map(async (worker) => {
        try {
          const metrics = (await ask(worker, 'metrics', timeoutMs)) as Metric[]
          return by === 'worker' ? metrics.map((metric) => labelled(metric, String(worker.id))) : metrics
        } catch {
          return null // not answering now (busy or exiting): this scrape goes without it
        }
      }),
    )
    return AggregatorRegistry.aggregate(answers.filter((a): a is Metric[] => a !== null))
  }

  async function metrics(): Promise<string> {
    return (await registry()).metrics()
  }

  function handler(_req: IncomingMessage, res: ServerResponse): void {
    metrics().then(
      (text) => {
        res.setHeader('Content-Type', AggregatorRegistry.PROMETHEUS_CONTENT_TYPE)
        res.end(text)
      },
      (error: unknown) => {
        res.statusCode = 500
        res.end(`keepalive: cluster metrics failed: ${error instanceof Error ? error.message : String(error)}\n`)
      },
    )
  }

  return { contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE, registry, metrics, handler }
}

/** The same metric with `worker` added to every value's labels, so aggregation keeps each worker apart. */
function labelled(metric: Metric, worker: string): Metric {
  return { ...metric, values: metric.values.map((value) => ({ ...value, labels: { ...value.labels, worker } })) }
}
