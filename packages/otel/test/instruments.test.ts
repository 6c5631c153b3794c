import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  MetricReader,
  PeriodicExportingMetricReader,
  type MetricData,
} from '@opentelemetry/sdk-metrics'
import { createKeepAlive, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import { registerKeepAliveInstruments } from '@keepalive/otel'

/** A pull reader: metrics are collected when the test asks, never on a timer. */
class CollectingReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

interface Harness {
  url: string
  controller: KeepAliveController
  agent: http.Agent
  reader: CollectingReader
  provider: MeterProvider
  /** Resolves the next request the server receives, with a function that answers it. */
  nextRequest(): Promise<() => void>
}

const cleanups: (() => Promise<void> | void)[] = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function start(options: KeepAliveOptions = {}, hold = false): Promise<Harness> {
  const controller = createKeepAlive(options)
  const waiting: ((answer: () => void) => void)[] = []
  const server = http.createServer((req, res) => {
    controller.handle(req, res)
    const answer = (): void => {
      res.end('ok')
    }
    const waiter = waiting.shift()
    if (hold && waiter !== undefined) waiter(answer)
    else answer()
  })
  controller.attach(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const reader = new CollectingReader()
  const provider = new MeterProvider({ readers: [reader] })
  cleanups.push(async () => {
    agent.destroy()
    server.closeAllConnections()
    server.close()
    await once(server, 'close')
    await provider.shutdown()
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    controller,
    agent,
    reader,
    provider,
    nextRequest: () => new Promise((resolve) => waiting.push(resolve)),
  }
}

function get(url: string, agent: http.Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        res.resume()
        res.once('end', resolve)
      })
      .once('error', reject)
  })
}

async function collect(reader: MetricReader): Promise<Map<string, MetricData>> {
  const { resourceMetrics, errors } = await reader.collect()
  expect(errors).toEqual([])
  const byName = new Map<string, MetricData>()
  for (const scope of resourceMetrics.scopeMetrics) for (const metric of scope.metrics) byName.set(metric.descriptor.name, metric)
  return byName
}

/** The value of the data point whose attributes match, or undefined when there is none. */
function value(metrics: Map<string, MetricData>, name: string, attributes: Record<string, string> = {}): unknown {
  const metric = metrics.get(name)
  if (metric === undefined) return undefined
  const point = (metric.dataPoints as { attributes: Record<string, unknown>; value: unknown }[]).find(
    (p) => Object.keys(attributes).length === Object.keys(p.attributes).length && Object.entries(attributes).every(([k, v]) => p.attributes[k] === v),
  )
  return point?.value
}

describe('registerKeepAliveInstruments', () => {
  it('creates every instrument with its kind, unit and all close reasons at zero', async () => {
    const { controller, provider, reader } = await start({ timeout: 7, max: 50 })
    const instruments = registerKeepAliveInstruments(controller, { meter: provider.getMeter('test') })
    cleanups.push(() => instruments.unregister())
    const metrics = await collect(reader)
    const kinds = Object.fromEntries(
      [...metrics.values()].map((m) => [m.descriptor.name, [DataPointType[m.dataPointType], m.descriptor.unit, m.dataPointType === DataPointType.SUM ? m.isMonotonic : null]]),
    )
    // Up-down counters and counters export sums (monotonic or not), gauges last values. The histogram
    // has no data point until a connection closes, so it is not exported yet.
    expect(kinds).toEqual({
      'keepalive.connections': ['SUM', '{connection}', false],
      'keepalive.requests': ['SUM', '{request}', true],
      'keepalive.connection.closes': ['SUM', '{connection}', true],
      'keepalive.load': ['GAUGE', '1', null],
      'keepalive.timeout': ['GAUGE', 's', null],
      'keepalive.max_requests': ['GAUGE', '{request}', null],
      'keepalive.draining': ['GAUGE', '1', null],
    })
    expect(value(metrics, 'keepalive.connections', { 'http.connection.state': 'active' })).toBe(0)
    expect(value(metrics, 'keepalive.connections', { 'http.connection.state': 'idle' })).toBe(0)
    expect(value(metrics, 'keepalive.requests')).toBe(0)
    for (const reason of ['client', 'idleTimeout', 'maxRequests', 'maxAge', 'shed', 'evicted', 'perIp', 'drain', 'forced']) {
      expect(value(metrics, 'keepalive.connection.closes', { 'keepalive.close.reason': reason })).toBe(0)
    }
    expect(value(metrics, 'keepalive.timeout')).toBe(7)
    expect(value(metrics, 'keepalive.max_requests')).toBe(50)
    expect(value(metrics, 'keepalive.load')).toBe(0)
    expect(value(metrics, 'keepalive.draining')).toBe(0)
    expect(instruments.names).toEqual([
      'keepalive.connections',
      'keepalive.requests',
      'keepalive.connection.closes',
      'keepalive.load',
      'keepalive.timeout',
      'keepalive.max_requests',
      'keepalive.draining',
      'keepalive.connection.requests',
    ])
  })

  it('observes requests and idle connections as they are served, counting each request once', async () => {
    const { url, controller, provider, reader, agent } = await start()
    const instruments = registerKeepAliveInstruments(controller, { meter: provider.getMeter('test') })
    cleanups.push(() => instruments.unregister())
    await get(url, agent)
    await get(url, agent)
    let metrics = await collect(reader)
    expect(value(metrics, 'keepalive.requests')).toBe(2)
    expect(value(metrics, 'keepalive.connections', { 'http.connection.state': 'idle' })).toBe(1)
    expect(value(metrics, 'keepalive.connections', { 'http.connection.state': 'active' })).toBe(0)
    metrics = await collect(reader)
    expect(value(metrics, 'keepalive.requests')).toBe(2)
    await get(url, agent)
    metrics = await collect(reader)
    expect(value(metrics, 'keepalive.requests')).toBe(3)
  })

  it('shows a connection as active while its request is in flight', async () => {
    const { url, controller, provider, reader, agent, nextRequest } = await start({}, true)
    const instruments = registerKeepAliveInstruments(controller, { meter: provider.getMeter('test') })
    cleanups.push(() => instruments.unregister())
    const arrived = nextRequest()
    const response = get(url, agent)
    const answer = await arrived
    let metrics = await collect(reader)
    expect(value(metrics, 'keepalive.connections', { 'http.connection.state': 'active' })).toBe(1)
    expect(value(metrics, 'keepalive.connections', { 'http.connection.state': 'idle' })).toBe(0)
    answer()
    await response
    metrics = await collect(reader)
    expect(value(metrics, 'keepalive.connections', { 'http.connection.state': 'active' })).toBe(0)
    expect(value(metrics, 'keepalive.connections', { 'http.connection.state': 'idle' })).toBe(1)
  })

  it('records requests per connection and counts the close reason when a connection reaches max', async () => {
    const { url, controller, provider, reader, agent } = await start({ max: 3 })
    const instruments = registerKeepAliveInstruments(controller, { meter: provider.getMeter('test') })
    cleanups.push(() => instruments.unregister())
    const closed = new Promise((resolve) => controller.once('close', resolve))
    for (let i = 0; i < 3; i++) await get(url, agent)
    await closed
    const metrics = await collect(reader)
    expect(value(metrics, 'keepalive.connection.closes', { 'keepalive.close.reason': 'maxRequests' })).toBe(1)
    const histogram = metrics.get('keepalive.connection.requests')!
    expect(histogram.dataPointType).toBe(DataPointType.HISTOGRAM)
    expect(histogram.descriptor.unit).toBe('{request}')
    const point = value(metrics, 'keepalive.connection.requests') as { count: number; sum: number; buckets: { boundaries: number[]; counts: number[] } }
    expect(point.count).toBe(1)
    expect(point.sum).toBe(3)
    expect(point.buckets.boundaries).toEqual([0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000])
    // Buckets are (-Inf, 0], (0, 1], (1, 2], (2, 5], ...: three requests fall in (2, 5].
    expect(point.buckets.counts.slice(0, 5)).toEqual([0, 0, 0, 1, 0])
  })

  it('reports draining and leaves out max when connections may serve unlimited requests', async () => {
    const { controller, provider, reader } = await start({ max: Infinity })
    const instruments = registerKeepAliveInstruments(controller, { meter: provider.getMeter('test') })
    cleanups.push(() => instruments.unregister())
    controller.drain()
    const metrics = await collect(reader)
    expect(value(metrics, 'keepalive.draining')).toBe(1)
    expect(metrics.has('keepalive.max_requests')).toBe(false)
  })

  it('uses the given prefix and advised buckets', async () => {
    const { url, controller, provider, reader, agent } = await start({ max: 2 })
    const instruments = registerKeepAliveInstruments(controller, { meter: provider.getMeter('test'), prefix: 'api.keepalive.', buckets: [1, 2] })
    cleanups.push(() => instruments.unregister())
    const closed = new Promise((resolve) => controller.once('close', resolve))
    await get(url, agent)
    await get(url, agent)
    await closed
    const metrics = await collect(reader)
    expect(value(metrics, 'api.keepalive.requests')).toBe(2)
    const point = value(metrics, 'api.keepalive.connection.requests') as { buckets: { boundaries: number[]; counts: number[] } }
    expect(point.buckets).toEqual({ boundaries: [1, 2], counts: [0, 1, 0] })
    expect([...metrics.keys()].every((name) => name.startsWith('api.keepalive.'))).toBe(true)
  })

  it('stops observing the controller on unregister', async () => {
    const { url, controller, provider, reader, agent } = await start({ max: 1 })
    const instruments = registerKeepAliveInstruments(controller, { meter: provider.getMeter('test') })
    instruments.unregister()
    instruments.unregister()
    const closed = new Promise((resolve) => controller.once('close', resolve))
    await get(url, agent)
    await closed
    const metrics = await collect(reader)
    expect([...metrics.values()].every((m) => m.dataPoints.length === 0)).toBe(true)
    expect(controller.stats().requests).toBe(1)
  })

  it('exports cumulative sums through a periodic reader and the in-memory exporter', async () => {
    const { url, controller, agent } = await start({ max: 2 })
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
    const periodic = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 })
    const provider = new MeterProvider({ readers: [periodic] })
    const instruments = registerKeepAliveInstruments(controller, { meter: provider.getMeter('test') })
    cleanups.push(async () => {
      instruments.unregister()
      await provider.shutdown()
    })
    const closed = new Promise((resolve) => controller.once('close', resolve))
    await get(url, agent)
    await get(url, agent)
    await closed
    await periodic.forceFlush()
    await get(url, agent)
    await periodic.forceFlush()
    const exports = exporter.getMetrics()
    expect(exports).toHaveLength(2)
    const [first, second] = exports.map((resource) => {
      const byName = new Map<string, MetricData>()
      for (const scope of resource.scopeMetrics) for (const metric of scope.metrics) byName.set(metric.descriptor.name, metric)
      return byName
    })
    expect(value(first!, 'keepalive.requests')).toBe(2)
    expect(value(first!, 'keepalive.connection.closes', { 'keepalive.close.reason': 'maxRequests' })).toBe(1)
    expect(value(second!, 'keepalive.requests')).toBe(3)
    expect(value(second!, 'keepalive.connections', { 'http.connection.state': 'idle' })).toBe(1)
    expect((value(second!, 'keepalive.connection.requests') as { count: number }).count).toBe(1)
  })

  it('rejects bad options naming the option and the value', async () => {
    const { controller, provider } = await start()
    const meter = provider.getMeter('test')
    const cases: [unknown, ErrorConstructor, string][] = [
      [undefined, TypeError, 'keepalive: instruments options must be an object with a "meter", got undefined'],
      [{}, TypeError, 'keepalive: "meter" must be an OpenTelemetry Meter (metrics.getMeter(name)), got undefined'],
      [{ meter, prefx: 'x.' }, TypeError, 'keepalive: unknown option "prefx"; allowed: meter, prefix, buckets'],
      [{ meter, prefix: 1 }, TypeError, 'keepalive: "prefix" must be a string, got 1 (number)'],
      [{ meter, prefix: '9x.' }, RangeError, 'keepalive: "prefix" must start a valid instrument name (a letter, then letters, digits, _ . - /), got "9x."'],
      [{ meter, buckets: [1, Infinity] }, TypeError, 'keepalive: "buckets" must be a non-empty array of finite numbers, got [1, Infinity] (array)'],
    ]
    for (const [options, type, message] of cases) {
      let error: unknown
      try {
        registerKeepAliveInstruments(controller, options as never)
      } catch (caught) {
        error = caught
      }
      expect(error).toBeInstanceOf(type)
      expect((error as Error).message).toBe(message)
    }
    expect(() => registerKeepAliveInstruments({} as never, { meter })).toThrow(TypeError)
  })
})
