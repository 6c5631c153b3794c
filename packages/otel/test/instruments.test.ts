import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
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
import { metrics as otelMetrics } from '@opentelemetry/api'
import { createKeepAlive, type CloseEvent, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import { registerKeepAliveInstruments, SCOPE_NAME, SCOPE_VERSION } from '@keepalive/otel'

/** A pull reader: metrics are collected when the test asks, never on a timer. */
class CollectingReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

interface Harness {
  url: string
  port: number
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
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
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
function value(metrics: Map<string, MetricData>, name: string, attributes: Record<string, string | number> = {}): unknown {
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
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider })
    cleanups.push(() => instruments.unregister())
    const metrics = await collect(reader)
    const kinds = Object.fromEntries(
      [...metrics.values()].map((m) => [
        m.descriptor.name,
        [DataPointType[m.dataPointType], m.descriptor.unit, m.dataPointType === DataPointType.SUM ? m.isMonotonic : null],
      ]),
    )
    // Up-down counters and counters export sums (monotonic or not), gauges last values. The histogram
    // has no data point until a connection closes, so it is not exported yet.
    expect(kinds).toEqual({
      'keepalive.connection.count': ['SUM', '{connection}', false],
      'keepalive.connection.closes': ['SUM', '{connection}', true],
      'keepalive.requests': ['SUM', '{request}', true],
      'keepalive.connection.request.limit': ['GAUGE', '{request}', null],
      'keepalive.connection.idle_timeout': ['GAUGE', 's', null],
      'keepalive.utilization': ['GAUGE', '1', null],
      'keepalive.draining': ['GAUGE', '1', null],
    })
    expect(value(metrics, 'keepalive.connection.count', { 'http.connection.state': 'active' })).toBe(0)
    expect(value(metrics, 'keepalive.connection.count', { 'http.connection.state': 'idle' })).toBe(0)
    expect(value(metrics, 'keepalive.requests')).toBe(0)
    for (const reason of ['client', 'idle_timeout', 'max_requests', 'max_age', 'shed', 'evicted', 'per_ip', 'drain', 'forced']) {
      expect(value(metrics, 'keepalive.connection.closes', { 'keepalive.close.reason': reason })).toBe(0)
    }
    expect(value(metrics, 'keepalive.connection.idle_timeout')).toBe(7)
    expect(value(metrics, 'keepalive.connection.request.limit')).toBe(50)
    expect(value(metrics, 'keepalive.utilization')).toBe(0)
    expect(value(metrics, 'keepalive.draining')).toBe(0)
    expect(instruments.names).toEqual([
      'keepalive.connection.count',
      'keepalive.connection.duration',
      'keepalive.connection.requests',
      'keepalive.connection.closes',
      'keepalive.requests',
      'keepalive.connection.request.limit',
      'keepalive.connection.idle_timeout',
      'keepalive.utilization',
      'keepalive.draining',
    ])
  })

  it('observes requests and idle connections as they are served, counting each request once', async () => {
    const { url, controller, provider, reader, agent } = await start()
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider })
    cleanups.push(() => instruments.unregister())
    await get(url, agent)
    await get(url, agent)
    let metrics = await collect(reader)
    expect(value(metrics, 'keepalive.requests')).toBe(2)
    expect(value(metrics, 'keepalive.connection.count', { 'http.connection.state': 'idle' })).toBe(1)
    expect(value(metrics, 'keepalive.connection.count', { 'http.connection.state': 'active' })).toBe(0)
    metrics = await collect(reader)
    expect(value(metrics, 'keepalive.requests')).toBe(2)
    await get(url, agent)
    metrics = await collect(reader)
    expect(value(metrics, 'keepalive.requests')).toBe(3)
  })

  it('shows a connection as active while its request is in flight', async () => {
    const { url, controller, provider, reader, agent, nextRequest } = await start({}, true)
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider })
    cleanups.push(() => instruments.unregister())
    const arrived = nextRequest()
    const response = get(url, agent)
    const answer = await arrived
    let metrics = await collect(reader)
    expect(value(metrics, 'keepalive.connection.count', { 'http.connection.state': 'active' })).toBe(1)
    expect(value(metrics, 'keepalive.connection.count', { 'http.connection.state': 'idle' })).toBe(0)
    answer()
    await response
    metrics = await collect(reader)
    expect(value(metrics, 'keepalive.connection.count', { 'http.connection.state': 'active' })).toBe(0)
    expect(value(metrics, 'keepalive.connection.count', { 'http.connection.state': 'idle' })).toBe(1)
  })

  it('records requests per connection and counts the close reason when a connection reaches max', async () => {
    const { url, port, controller, provider, reader, agent } = await start({ max: 3 })
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider })
    cleanups.push(() => instruments.unregister())
    const closed = new Promise((resolve) => controller.once('close', resolve))
    for (let i = 0; i < 3; i++) await get(url, agent)
    await closed
    const metrics = await collect(reader)
    expect(value(metrics, 'keepalive.connection.closes', { 'keepalive.close.reason': 'max_requests' })).toBe(1)
    const histogram = metrics.get('keepalive.connection.requests')!
    expect(histogram.dataPointType).toBe(DataPointType.HISTOGRAM)
    expect(histogram.descriptor.unit).toBe('{request}')
    const point = value(metrics, 'keepalive.connection.requests', { 'server.port': port, 'network.protocol.version': '1.1' }) as {
      count: number
      sum: number
      buckets: { boundaries: number[]; counts: number[] }
    }
    expect(point.count).toBe(1)
    expect(point.sum).toBe(3)
    expect(point.buckets.boundaries).toEqual([0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000])
    // Buckets are (-Inf, 0], (0, 1], (1, 2], (2, 5], ...: three requests fall in (2, 5].
    expect(point.buckets.counts.slice(0, 5)).toEqual([0, 0, 0, 1, 0])
  })

  it('reports draining and leaves out max when connections may serve unlimited requests', async () => {
    const { controller, provider, reader } = await start({ max: Infinity })
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider })
    cleanups.push(() => instruments.unregister())
    controller.drain()
    const metrics = await collect(reader)
    expect(value(metrics, 'keepalive.draining')).toBe(1)
    expect(metrics.has('keepalive.connection.request.limit')).toBe(false)
  })

  it('uses the given prefix and advised buckets', async () => {
    const { url, controller, provider, reader, agent } = await start({ max: 2 })
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider, prefix: 'api.keepalive.', buckets: [1, 2] })
    cleanups.push(() => instruments.unregister())
    const closed = new Promise((resolve) => controller.once('close', resolve))
    await get(url, agent)
    await get(url, agent)
    await closed
    const metrics = await collect(reader)
    expect(value(metrics, 'api.keepalive.requests')).toBe(2)
    const point = (metrics.get('api.keepalive.connection.requests')!.dataPoints[0] as { value: unknown }).value as {
      buckets: { boundaries: number[]; counts: number[] }
    }
    expect(point.buckets).toEqual({ boundaries: [1, 2], counts: [0, 1, 0] })
    expect([...metrics.keys()].every((name) => name.startsWith('api.keepalive.'))).toBe(true)
  })

  it('stops observing the controller on unregister', async () => {
    const { url, controller, provider, reader, agent } = await start({ max: 1 })
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider })
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
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider })
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
    expect(value(first!, 'keepalive.connection.closes', { 'keepalive.close.reason': 'max_requests' })).toBe(1)
    expect(value(second!, 'keepalive.requests')).toBe(3)
    expect(value(second!, 'keepalive.connection.count', { 'http.connection.state': 'idle' })).toBe(1)
    expect(((second!.get('keepalive.connection.requests')!.dataPoints[0] as { value: unknown }).value as { count: number }).count).toBe(1)
  })

  it('names its meter after the package and its version, from the global MeterProvider when none is given', async () => {
    const { controller, provider, reader } = await start()
    expect(otelMetrics.setGlobalMeterProvider(provider)).toBe(true)
    cleanups.push(() => otelMetrics.disable())
    const instruments = registerKeepAliveInstruments(controller)
    cleanups.push(() => instruments.unregister())
    const { resourceMetrics } = await reader.collect()
    expect(resourceMetrics.scopeMetrics.map((scope) => scope.scope)).toEqual([{ name: '@keepalive/otel', version: SCOPE_VERSION, schemaUrl: undefined }])
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string }
    expect([SCOPE_NAME, SCOPE_VERSION]).toEqual([pkg.name, pkg.version])
  })

  it("records each connection's duration in seconds with its close reason, server.port and network.protocol.version", async () => {
    const { url, port, controller, provider, reader, agent } = await start({ max: 2 })
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider, durationBuckets: [0.001, 60] })
    cleanups.push(() => instruments.unregister())
    const closed = new Promise<CloseEvent>((resolve) => controller.once('close', resolve))
    await get(url, agent)
    await get(url, agent)
    const event = await closed
    const collected = await collect(reader)
    const histogram = collected.get('keepalive.connection.duration')!
    expect([DataPointType[histogram.dataPointType], histogram.descriptor.unit]).toEqual(['HISTOGRAM', 's'])
    expect(histogram.dataPoints.map((p) => p.attributes)).toEqual([
      { 'keepalive.close.reason': 'max_requests', 'server.port': port, 'network.protocol.version': '1.1' },
    ])
    const point = histogram.dataPoints[0]!.value as { count: number; sum: number; buckets: { boundaries: number[]; counts: number[] } }
    expect(point.count).toBe(1)
    expect(point.sum).toBe(event.age)
    expect(point.buckets.boundaries).toEqual([0.001, 60])
    expect(point.buckets.counts.reduce((a, b) => a + b, 0)).toBe(1)
  })

  it('records network.protocol.version 2 for an HTTP/2 connection', async () => {
    const controller = createKeepAlive()
    const server = http2.createServer((req, res) => {
      controller.handle(req, res)
      res.end('ok')
    })
    controller.attach(server)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as AddressInfo
    const reader = new CollectingReader()
    const provider = new MeterProvider({ readers: [reader] })
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider })
    cleanups.push(async () => {
      instruments.unregister()
      server.close()
      await provider.shutdown()
    })
    const session = http2.connect(`http://127.0.0.1:${port}`)
    cleanups.push(() => {
      session.destroy()
    })
    const stream = session.request({ ':path': '/' })
    stream.resume()
    await once(stream, 'end')
    const closed = new Promise<CloseEvent>((resolve) => controller.once('close', resolve))
    session.close()
    expect((await closed).http2).toBe(true)
    const collected = await collect(reader)
    expect(collected.get('keepalive.connection.duration')!.dataPoints.map((p) => p.attributes)).toEqual([
      { 'keepalive.close.reason': 'client', 'server.port': port, 'network.protocol.version': '2' },
    ])
  })

  it('puts the static attributes on every data point', async () => {
    const { url, controller, provider, reader, agent } = await start({ max: 1 })
    const instruments = registerKeepAliveInstruments(controller, { meterProvider: provider, attributes: { 'service.role': 'api', 'server.port': 8080 } })
    cleanups.push(() => instruments.unregister())
    const closed = new Promise((resolve) => controller.once('close', resolve))
    await get(url, agent)
    await closed
    const collected = await collect(reader)
    expect(collected.size).toBe(9)
    for (const metric of collected.values()) {
      expect(metric.dataPoints.length, metric.descriptor.name).toBeGreaterThan(0)
      for (const point of metric.dataPoints) expect(point.attributes, metric.descriptor.name).toMatchObject({ 'service.role': 'api' })
    }
    expect(value(collected, 'keepalive.requests', { 'service.role': 'api', 'server.port': 8080 })).toBe(1)
    // The connection's own port wins over a static one on the histograms.
    expect(collected.get('keepalive.connection.duration')!.dataPoints[0]!.attributes['server.port']).toBe(Number(new URL(url).port))
  })

  it('rejects bad options naming the option and the value', async () => {
    const { controller, provider } = await start()
    const cases: [unknown, ErrorConstructor, string][] = [
      ['keepalive.', TypeError, 'keepalive: instruments options must be an object, got "keepalive." (string)'],
      [
        { meter: provider.getMeter('app') },
        TypeError,
        'keepalive: unknown option "meter": the instruments use a meter of their own, named "@keepalive/otel"; pass "meterProvider" to choose where it comes from',
      ],
      [{ meterprovider: provider }, TypeError, 'keepalive: unknown option "meterprovider"; did you mean "meterProvider"?'],
      [{ prefx: 'x.' }, TypeError, 'keepalive: unknown option "prefx"; did you mean "prefix"?'],
      [{ meterProvider: {} }, TypeError, 'keepalive: "meterProvider" must be an OpenTelemetry MeterProvider (with getMeter()), got an object'],
      [{ prefix: 1 }, TypeError, 'keepalive: "prefix" must be a string, got 1'],
      [{ prefix: '9x.' }, RangeError, 'keepalive: "prefix" must start a valid instrument name (a letter, then letters, digits, _ . - /), got "9x."'],
      [{ buckets: [1, Infinity] }, RangeError, 'keepalive: "buckets[1]" must be finite, got Infinity'],
      [{ buckets: [2, 2] }, RangeError, 'keepalive: "buckets" must be increasing, got 2 then 2'],
      [{ durationBuckets: 'fast' }, TypeError, 'keepalive: "durationBuckets" must be a non-empty array of finite numbers, got "fast" (string)'],
      [{ attributes: { 'service.role': null } }, TypeError, 'keepalive: "attributes.service.role" must be a string, a number or a boolean, got null'],
      [
        { attributes: { 'keepalive.close.reason': 'x' } },
        RangeError,
        'keepalive: "attributes.keepalive.close.reason" is an attribute the instruments set themselves; allowed: any other name',
      ],
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
    expect(() => registerKeepAliveInstruments({} as never, { meterProvider: provider })).toThrow(TypeError)
  })
})
