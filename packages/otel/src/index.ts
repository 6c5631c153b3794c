import type { BatchObservableResult, Meter, Observable } from '@opentelemetry/api'
import { CLOSE_REASONS, type CloseEvent, type KeepAliveController } from '@keepalive/core'

/** The parts of a controller the instruments read; an adapter's middleware or `fastify.keepAlive` works too. */
export type InstrumentsSource = Pick<KeepAliveController, 'stats' | 'on' | 'off'>

/** Options of {@link registerKeepAliveInstruments}. */
export interface KeepAliveInstrumentsOptions {
  /** The meter to create the instruments on, e.g. `metrics.getMeter('my-service')`. */
  meter: Meter
  /** Prepended to every instrument name. @default 'keepalive.' */
  prefix?: string
  /** Bucket bounds advised for the requests-per-connection histogram. @default [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000] */
  buckets?: readonly number[]
}

/** What {@link registerKeepAliveInstruments} returns. */
export interface KeepAliveInstruments {
  /** Full names of the created instruments. */
  readonly names: readonly string[]
  /** Stops observing the controller: no more data points from its callback or its close events; idempotent. */
  unregister(): void
}


const DEFAULT_BUCKETS: readonly number[] = [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000]
const OPTION_KEYS = ['meter', 'prefix', 'buckets']
/** Attribute names; the connection state one is the semantic conventions' own (`http.client.open_connections`). */
const STATE = 'http.connection.state'
const REASON = 'keepalive.close.reason'

/**
 * Creates OpenTelemetry instruments for a controller. Counts and gauges are observed from one
 * `controller.stats()` snapshot per collection (a batch callback), so nothing runs per request;
 * the requests-per-connection histogram records each `close` event.
 * @example
 * const ka = createKeepAlive()
 * const instruments = registerKeepAliveInstruments(ka, { meter: metrics.getMeter('api') })
 * // later: instruments.unregister()
 */
export function registerKeepAliveInstruments(controller: InstrumentsSource, options: Readonly<KeepAliveInstrumentsOptions>): KeepAliveInstruments {
  if (controller === null || (typeof controller !== 'object' && typeof controller !== 'function') || typeof controller.stats !== 'function') {
    throw new TypeError('keepalive: registerKeepAliveInstruments() needs a keepalive controller (createKeepAlive() or an adapter\'s middleware)')
  }
  const { meter, prefix, buckets } = resolveInstrumentsOptions(options)
  const name = (suffix: string): string => prefix + suffix

  // Additive values (their sum over attributes means something) are up-down counters, as the
  // semantic conventions count open connections; values that do not add up are gauges.
  const connections = meter.createObservableUpDownCounter(name('connections'), {
    description: 'Open connections by state (active: serving a request, idle: kept alive between requests).',
    unit: '{connection}',
  })
  const requests = meter.createObservableCounter(name('requests'), {
    description: 'Responses finished.',
    unit: '{request}',
  })
  const closes = meter.createObservableCounter(name('connection.closes'), {
    description: 'Connections closed, by reason.',
    unit: '{connection}',
  })
  const load = meter.createObservableGauge(name('load'), {
    description: 'Current smoothed load factor, from 0 to 1.',
    unit: '1',
  })
  const timeout = meter.createObservableGauge(name('timeout'), {
    description: 'Idle timeout currently advertised in Keep-Alive: timeout=.',
    unit: 's',
  })
  const max = meter.createObservableGauge(name('max_requests'), {
    description: 'Requests one connection may currently serve in total; no data point when unlimited.',
    unit: '{request}',
  })
  const draining = meter.createObservableGauge(name('draining'), {
    description: '1 while the controller is draining for shutdown (every response carries Connection: close), else 0.',
    unit: '1',
  })
  const perConnection = meter.createHistogram(name('connection.requests'), {
    description: 'Requests a connection served, recorded when it closed.',
    unit: '{request}',
    advice: { explicitBucketBoundaries: [...buckets] },
  })
  const observables: Observable[] = [connections, requests, closes, load, timeout, max, draining]

  function observe(result: BatchObservableResult): void {
    const stats = controller.stats()
    result.observe(connections, stats.connections.active, { [STATE]: 'active' })
    result.observe(connections, stats.connections.idle, { [STATE]: 'idle' })
    result.observe(requests, stats.requests)
    for (const reason of CLOSE_REASONS) result.observe(closes, stats.closes[reason], { [REASON]: reason })
    result.observe(load, stats.load)
    result.observe(timeout, stats.timeout)
    if (stats.max !== null) result.observe(max, stats.max)
    result.observe(draining, stats.draining ? 1 : 0)
  }

  function onClose(event: CloseEvent): void {
    perConnection.record(event.requests)
  }

  meter.addBatchObservableCallback(observe, observables)
  controller.on('close', onClose)

  let registered = true
  return {
    names: ['connections', 'requests', 'connection.closes', 'load', 'timeout', 'max_requests', 'draining', 'connection.requests'].map(name),
    unregister() {
      if (!registered) return
      registered = false
      meter.removeBatchObservableCallback(observe, observables)
      controller.off('close', onClose)
    },
  }
}

interface ResolvedInstrumentsOptions {
  meter: Meter
  prefix: string
  buckets: readonly number[]
}

// OpenTelemetry instrument names: a letter, then letters, digits, '_', '.', '-' or '/'.
const NAME = /^[A-Za-z][A-Za-z0-9_.\-/]*$/

function resolveInstrumentsOptions(options: unknown): ResolvedInstrumentsOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`keepalive: instruments options must be an object with a "meter", got ${describe(options)}`)
  }
  const input = options as Record<string, unknown>
  for (const key of Object.keys(input)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new TypeError(`keepalive: unknown option "${key}"; allowed: ${OPTION_KEYS.join(', ')}`)
    }
  }
  const meter = input.meter
  if (typeof meter !== 'object' || meter === null || typeof (meter as Meter).addBatchObservableCallback !== 'function') {
    throw new TypeError(`keepalive: "meter" must be an OpenTelemetry Meter (metrics.getMeter(name)), got ${describe(meter)}`)
  }
  const prefix = input.prefix ?? 'keepalive.'
  if (typeof prefix !== 'string') throw new TypeError(`keepalive: "prefix" must be a string, got ${describe(prefix)}`)
  if (prefix !== '' && !NAME.test(prefix)) {
    throw new RangeError(`keepalive: "prefix" must start a valid instrument name (a letter, then letters, digits, _ . - /), got ${JSON.stringify(prefix)}`)
  }
  const buckets = input.buckets ?? DEFAULT_BUCKETS
  if (!Array.isArray(buckets) || buckets.length === 0 || !buckets.every((b) => typeof b === 'number' && Number.isFinite(b))) {
    throw new TypeError(`keepalive: "buckets" must be a non-empty array of finite numbers, got ${describe(buckets)}`)
  }
  return { meter: meter as Meter, prefix, buckets }
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return `[${value.map((v) => (typeof v === 'string' ? JSON.stringify(v) : String(v))).join(', ')}] (array)`
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`
  if (typeof value === 'object') return 'an object'
  return `${String(value)} (${typeof value})`
}
