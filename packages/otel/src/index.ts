import { metrics, type Attributes, type BatchObservableResult, type Histogram, type Meter, type MeterProvider, type Observable } from '@opentelemetry/api'
import { CLOSE_REASONS, type CloseEvent, type CloseReason, type KeepAliveController } from '@keepalive/core'
import { checkKeys, describe, fail, histogramBuckets, isPlainObject, namePrefix, objectWith, SNAKE_CASE_REASONS } from '@keepalive/core/check'
import { SCOPE_NAME, SCOPE_VERSION } from './version.js'

/** The parts of a controller the instruments read; an adapter's middleware or `fastify.keepAlive` works too. */
export type InstrumentsSource = Pick<KeepAliveController, 'stats' | 'on' | 'off'>

/** Options of {@link registerKeepAliveInstruments}. */
export interface KeepAliveInstrumentsOptions {
  /** Where the meter comes from; the meter is named after this package and its version. @default the global MeterProvider (`metrics.getMeterProvider()`) */
  meterProvider?: MeterProvider
  /** Prepended to every instrument name. @default 'keepalive.' */
  prefix?: string
  /** Static attributes on every data point, e.g. `{ 'server.port': 3000 }` for the observed instruments. @default {} */
  attributes?: Readonly<Record<string, string | number | boolean>>
  /** Bucket bounds advised for the requests-per-connection histogram, in requests. @default [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000] */
  buckets?: readonly number[]
  /** Bucket bounds advised for the connection-duration histogram, in seconds. @default [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600] */
  durationBuckets?: readonly number[]
}

/** What {@link registerKeepAliveInstruments} returns. */
export interface KeepAliveInstruments {
  /** Full names of the created instruments. */
  readonly names: readonly string[]
  /** Stops observing the controller: no more data points from its callback or its close events; idempotent. */
  unregister(): void
}

/** The `keepalive.close.reason` attribute values: snake_case, as semantic-convention enum values are. */
export const CLOSE_REASON_VALUES: Readonly<Record<CloseReason, string>> = SNAKE_CASE_REASONS

/** The package's meter scope: name and version, for `MeterProvider.getMeter()`. */
export { SCOPE_NAME, SCOPE_VERSION }

const OPTION_KEYS = ['meterProvider', 'prefix', 'attributes', 'buckets', 'durationBuckets']
/** Attribute names: the semantic conventions' own where one exists. */
const STATE = 'http.connection.state'
const REASON = 'keepalive.close.reason'
const PORT = 'server.port'
const PROTOCOL_VERSION = 'network.protocol.version'

/** How an instrument is made: observed from the stats snapshot (a counter, an up-down counter, a gauge), or a histogram recorded on each close. */
type Kind = 'upDownCounter' | 'counter' | 'gauge' | 'histogram'
/** One instrument: its name after the prefix, how it is made, its unit and its description. */
type Spec = readonly [suffix: string, kind: Kind, unit: string, description: string]

// Semantic conventions: UpDownCounter names are not pluralised (`.count`), counters of discrete
// things with a {unit} are; `.limit` and `.utilization` name a limit and a fraction of one.
/** The instruments, in the order the meter creates them and `names` lists them. */
const INSTRUMENTS = {
  connections: [
    'connection.count',
    'upDownCounter',
    '{connection}',
    'Open connections by state (active: serving a request, idle: kept alive between requests).',
  ],
  duration: ['connection.duration', 'histogram', 's', 'How long a connection was open, recorded when it closed, by close reason.'],
  perConnection: ['connection.requests', 'histogram', '{request}', 'Requests a connection served, recorded when it closed.'],
  closes: ['connection.closes', 'counter', '{connection}', 'Connections closed, by reason.'],
  requests: ['requests', 'counter', '{request}', 'Responses finished.'],
  max: ['connection.request.limit', 'gauge', '{request}', 'Requests one connection may currently serve in total (max=); no data point when unlimited.'],
  timeout: ['connection.idle_timeout', 'gauge', 's', 'Idle timeout currently advertised in Keep-Alive: timeout=.'],
  load: [
    'utilization',
    'gauge',
    '1',
    'Current smoothed load factor, from 0 to 1: the busiest of event-loop utilisation, delay, connections against the cap and any user signal.',
  ],
  draining: ['draining', 'gauge', '1', '1 while the controller is draining for shutdown (every response carries Connection: close), else 0.'],
} as const satisfies Record<string, Spec>

type InstrumentName = keyof typeof INSTRUMENTS
type HistogramName = { [N in InstrumentName]: (typeof INSTRUMENTS)[N][1] extends 'histogram' ? N : never }[InstrumentName]
/** The created instruments by name: a histogram where the table says so, else an observable. */
type Instruments = { [N in InstrumentName]: N extends HistogramName ? Histogram : Observable }

const OBSERVABLE = { upDownCounter: 'createObservableUpDownCounter', counter: 'createObservableCounter', gauge: 'createObservableGauge' } as const

/** Creates every instrument of the table on `meter`; each histogram is advised the bucket bounds `bounds` gives for its name. */
function createInstruments(meter: Meter, prefix: string, bounds: Readonly<Record<HistogramName, readonly number[]>>): Instruments {
  const created: Partial<Record<InstrumentName, Histogram | Observable>> = {}
  for (const [key, [suffix, kind, unit, description]] of Object.entries(INSTRUMENTS) as [InstrumentName, Spec][]) {
    created[key] =
      kind === 'histogram'
        ? meter.createHistogram(prefix + suffix, { description, unit, advice: { explicitBucketBoundaries: [...bounds[key as HistogramName]] } })
        : meter[OBSERVABLE[kind]](prefix + suffix, { description, unit })
  }
  return created as Instruments
}

/**
 * Creates OpenTelemetry instruments for a controller, on a meter named after this package from the
 * global (or the given) `MeterProvider`. Counts and gauges are observed from one `controller.stats()`
 * snapshot per collection (a batch callback), so nothing runs per request; the histograms record
 * each `close` event.
 * @example
 * const ka = createKeepAlive()
 * const instruments = registerKeepAliveInstruments(ka)
 * // later: instruments.unregister()
 */
export function registerKeepAliveInstruments(controller: InstrumentsSource, options: Readonly<KeepAliveInstrumentsOptions> = {}): KeepAliveInstruments {
  if (controller === null || (typeof controller !== 'object' && typeof controller !== 'function') || typeof controller.stats !== 'function') {
    fail(TypeError, 'controller', "registerKeepAliveInstruments() needs a keepalive controller (createKeepAlive() or an adapter's middleware)")
  }
  const { meterProvider, prefix, attributes, buckets, durationBuckets } = resolveInstrumentsOptions(options)
  const meter = meterProvider.getMeter(SCOPE_NAME, SCOPE_VERSION)
  const { connections, duration, perConnection, closes, requests, max, timeout, load, draining } = createInstruments(meter, prefix, {
    duration: durationBuckets,
    perConnection: buckets,
  })
  const observables: Observable[] = [connections, closes, requests, max, timeout, load, draining]
  // Attribute objects built once: the callback and the close listener allocate none of their own.
  const byState = { active: { ...attributes, [STATE]: 'active' }, idle: { ...attributes, [STATE]: 'idle' } }
  const byReason = {} as Record<CloseReason, Attributes>
  for (const reason of CLOSE_REASONS) byReason[reason] = { ...attributes, [REASON]: CLOSE_REASON_VALUES[reason] }

  function observe(result: BatchObservableResult): void {
    const stats = controller.stats()
    result.observe(connections, stats.connections.active, byState.active)
    result.observe(connections, stats.connections.idle, byState.idle)
    result.observe(requests, stats.requests, attributes)
    for (const reason of CLOSE_REASONS) result.observe(closes, stats.closes[reason], byReason[reason])
    if (stats.max !== null) result.observe(max, stats.max, attributes)
    result.observe(timeout, stats.timeout, attributes)
    result.observe(load, stats.load, attributes)
    result.observe(draining, stats.draining ? 1 : 0, attributes)
  }

  function onClose(event: CloseEvent): void {
    // Fresh objects per close: the SDK may keep a reference to the attributes it was given.
    const connection: Attributes = { ...attributes }
    if (event.localPort !== undefined) connection[PORT] = event.localPort
    if (event.http2 !== undefined) connection[PROTOCOL_VERSION] = event.http2 ? '2' : '1.1'
    duration.record(event.age, { ...connection, [REASON]: CLOSE_REASON_VALUES[event.reason] })
    perConnection.record(event.requests, connection)
  }

  meter.addBatchObservableCallback(observe, observables)
  controller.on('close', onClose)

  let observing = true
  function unregister(): void {
    if (!observing) return
    observing = false
    meter.removeBatchObservableCallback(observe, observables)
    controller.off('close', onClose)
  }
  return { names: Object.values(INSTRUMENTS).map(([suffix]) => prefix + suffix), unregister }
}

interface ResolvedInstrumentsOptions {
  meterProvider: MeterProvider
  prefix: string
  attributes: Attributes
  buckets: readonly number[]
  durationBuckets: readonly number[]
}

// OpenTelemetry instrument names: a letter, then letters, digits, '_', '.', '-' or '/'.
const NAME = /^[A-Za-z][A-Za-z0-9_.\-/]*$/

function resolveInstrumentsOptions(options: unknown): ResolvedInstrumentsOptions {
  if (options === undefined) options = {}
  if (!isPlainObject(options)) fail(TypeError, '', `instruments options must be an object, got ${describe(options)}`)
  if ('meter' in options) {
    // A library names its meter after itself (instrumentation scope); the provider is the user's choice.
    fail(
      TypeError,
      'meter',
      'unknown option "meter": the instruments use a meter of their own, named "@keepalive/otel"; pass "meterProvider" to choose where it comes from',
    )
  }
  checkKeys(options, OPTION_KEYS, '')
  const provider = options.meterProvider ?? metrics.getMeterProvider()
  return {
    meterProvider: objectWith<MeterProvider>('meterProvider', provider, 'getMeter', 'an OpenTelemetry MeterProvider (with getMeter())'),
    prefix: namePrefix('prefix', options.prefix, 'keepalive.', NAME, 'instrument name (a letter, then letters, digits, _ . - /)'),
    attributes: resolveAttributes(options.attributes),
    ...histogramBuckets(options),
  }
}

function resolveAttributes(value: unknown): Attributes {
  if (value === undefined) return {}
  if (!isPlainObject(value))
    fail(TypeError, 'attributes', `"attributes" must be an object of attribute names to strings, numbers or booleans, got ${describe(value)}`)
  const attributes: Attributes = {}
  for (const [key, item] of Object.entries(value)) {
    if (key === STATE || key === REASON)
      fail(RangeError, `attributes.${key}`, `"attributes.${key}" is an attribute the instruments set themselves; allowed: any other name`)
    if (typeof item !== 'string' && typeof item !== 'number' && typeof item !== 'boolean') {
      fail(TypeError, `attributes.${key}`, `"attributes.${key}" must be a string, a number or a boolean, got ${describe(item)}`)
    }
    attributes[key] = item
  }
  return attributes
}
