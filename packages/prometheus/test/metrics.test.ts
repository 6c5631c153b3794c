import { once } from 'node:events'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { Gauge, Registry } from 'prom-client'
import { createKeepAlive, type CloseEvent, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import { registerKeepAliveMetrics } from '@keepalive/prometheus'

interface Harness {
  url: string
  controller: KeepAliveController
  registry: Registry
  agent: http.Agent
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
  const registry = new Registry()
  cleanups.push(async () => {
    agent.destroy()
    server.closeAllConnections()
    server.close()
    await once(server, 'close')
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    controller,
    registry,
    agent,
    nextRequest: () => new Promise((resolve) => waiting.push(resolve)),
  }
}

function get(url: string, agent: http.Agent): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        res.resume()
        res.once('end', () => resolve(res))
      })
      .once('error', reject)
  })
}

/** Parses Prometheus text exposition into `name{labels}` → value (labels as prom-client prints them). */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    const value = line.slice(at + 1)
    samples.set(line.slice(0, at), value === '+Inf' ? Infinity : Number(value))
  }
  return samples
}

interface Family {
  type: string
  help: string
  /** Every sample's name and label names, e.g. `keepalive_connections{state}`, deduplicated. */
  shapes: Set<string>
}

/** Parses the `# HELP` / `# TYPE` lines and the samples of each family, as a scraper reads them. */
function families(text: string): Map<string, Family> {
  const found = new Map<string, Family>()
  let current: Family | undefined
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line)
    if (meta !== null) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string]
      current = found.get(name) ?? { type: '', help: '', shapes: new Set() }
      found.set(name, current)
      if (kind === 'TYPE') current.type = rest
      else current.help = rest
      continue
    }
    if (line === '' || current === undefined) continue
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line)
    expect(sample, line).not.toBeNull()
    const labelNames = [...(sample![2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)].map((m) => m[1]).sort()
    current.shapes.add(`${sample![1]}{${labelNames.join(',')}}`)
  }
  return found
}

async function scrape(registry: Registry): Promise<Map<string, number>> {
  return parse(await registry.metrics())
}

describe('registerKeepAliveMetrics', () => {
  it('registers every metric with Prometheus names, types and all close reasons at zero', async () => {
    const { controller, registry } = await start({ timeout: 7, max: 50 })
    const metrics = registerKeepAliveMetrics(controller, { registry })
    cleanups.push(() => metrics.unregister())
    const text = await registry.metrics()
    expect(text).toContain('# TYPE keepalive_connections gauge')
    expect(text).toContain('# TYPE keepalive_requests_total counter')
    expect(text).toContain('# TYPE keepalive_connection_closes_total counter')
    expect(text).toContain('# TYPE keepalive_requests_per_connection histogram')
    expect(text).toContain('# TYPE keepalive_connection_duration_seconds histogram')
    expect(text).toContain('# TYPE keepalive_load_ratio gauge')
    expect(text).toContain('# TYPE keepalive_timeout_seconds gauge')
    expect(text).toContain('# TYPE keepalive_max_requests gauge')
    expect(text).toContain('# TYPE keepalive_draining gauge')
    const samples = parse(text)
    expect(samples.get('keepalive_connections{state="active"}')).toBe(0)
    expect(samples.get('keepalive_connections{state="idle"}')).toBe(0)
    expect(samples.get('keepalive_requests_total')).toBe(0)
    for (const reason of ['client', 'idle_timeout', 'max_requests', 'max_age', 'shed', 'evicted', 'per_ip', 'drain', 'forced']) {
      expect(samples.get(`keepalive_connection_closes_total{reason="${reason}"}`)).toBe(0)
    }
    expect(samples.get('keepalive_timeout_seconds')).toBe(7)
    expect(samples.get('keepalive_max_requests')).toBe(50)
    expect(samples.get('keepalive_load_ratio')).toBe(0)
    expect(samples.get('keepalive_draining')).toBe(0)
    expect(metrics.names).toHaveLength(9)
  })

  it('counts requests and idle connections as requests are served, without counting twice across scrapes', async () => {
    const { url, controller, registry, agent } = await start()
    const metrics = registerKeepAliveMetrics(controller, { registry })
    cleanups.push(() => metrics.unregister())
    await get(url, agent)
    await get(url, agent)
    let samples = await scrape(registry)
    expect(samples.get('keepalive_requests_total')).toBe(2)
    expect(samples.get('keepalive_connections{state="idle"}')).toBe(1)
    expect(samples.get('keepalive_connections{state="active"}')).toBe(0)
    samples = await scrape(registry)
    expect(samples.get('keepalive_requests_total')).toBe(2)
    await get(url, agent)
    samples = await scrape(registry)
    expect(samples.get('keepalive_requests_total')).toBe(3)
  })

  it('shows a connection as active while its request is in flight', async () => {
    const { url, controller, registry, agent, nextRequest } = await start({}, true)
    const metrics = registerKeepAliveMetrics(controller, { registry })
    cleanups.push(() => metrics.unregister())
    const arrived = nextRequest()
    const response = get(url, agent)
    const answer = await arrived
    let samples = await scrape(registry)
    expect(samples.get('keepalive_connections{state="active"}')).toBe(1)
    expect(samples.get('keepalive_connections{state="idle"}')).toBe(0)
    answer()
    await response
    samples = await scrape(registry)
    expect(samples.get('keepalive_connections{state="active"}')).toBe(0)
    expect(samples.get('keepalive_connections{state="idle"}')).toBe(1)
  })

  it('observes requests per connection and counts the close reason when a connection reaches max', async () => {
    const { url, controller, registry, agent } = await start({ max: 3 })
    const metrics = registerKeepAliveMetrics(controller, { registry })
    cleanups.push(() => metrics.unregister())
    const closed = new Promise((resolve) => controller.once('close', resolve))
    for (let i = 0; i < 3; i++) await get(url, agent)
    await closed
    const samples = await scrape(registry)
    expect(samples.get('keepalive_connection_closes_total{reason="max_requests"}')).toBe(1)
    expect(samples.get('keepalive_requests_per_connection_bucket{le="2"}')).toBe(0)
    expect(samples.get('keepalive_requests_per_connection_bucket{le="5"}')).toBe(1)
    expect(samples.get('keepalive_requests_per_connection_bucket{le="+Inf"}')).toBe(1)
    expect(samples.get('keepalive_requests_per_connection_sum')).toBe(3)
    expect(samples.get('keepalive_requests_per_connection_count')).toBe(1)
    expect(samples.get('keepalive_connections{state="idle"}')).toBe(0)
  })

  it('counts idle-timeout closes and reports draining once the controller drains', async () => {
    const { url, controller, registry } = await start({ timeout: 0.2, grace: 0.1 })
    const metrics = registerKeepAliveMetrics(controller, { registry })
    cleanups.push(() => metrics.unregister())
    // A raw socket, so the server's idle timer (not a client pool) closes the connection.
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1')
    cleanups.push(() => {
      socket.destroy()
    })
    socket.write('GET / HTTP/1.1\r\nHost: test\r\n\r\n')
    const closed = new Promise((resolve) => controller.once('close', resolve))
    socket.resume()
    await closed
    let samples = await scrape(registry)
    expect(samples.get('keepalive_connection_closes_total{reason="idle_timeout"}')).toBe(1)
    expect(samples.get('keepalive_requests_per_connection_bucket{le="1"}')).toBe(1)
    controller.drain()
    samples = await scrape(registry)
    expect(samples.get('keepalive_draining')).toBe(1)
  })

  it('reports max as +Inf when connections may serve unlimited requests', async () => {
    const { controller, registry } = await start({ max: Infinity })
    const metrics = registerKeepAliveMetrics(controller, { registry })
    cleanups.push(() => metrics.unregister())
    expect(await registry.metrics()).toMatch(/^keepalive_max_requests \+Inf$/m)
  })

  it('uses the given prefix and buckets', async () => {
    const { url, controller, registry, agent } = await start({ max: 2 })
    const metrics = registerKeepAliveMetrics(controller, { registry, prefix: 'api_keepalive_', buckets: [1, 2] })
    cleanups.push(() => metrics.unregister())
    const closed = new Promise((resolve) => controller.once('close', resolve))
    await get(url, agent)
    await get(url, agent)
    await closed
    const samples = await scrape(registry)
    expect(samples.get('api_keepalive_requests_total')).toBe(2)
    expect(samples.get('api_keepalive_requests_per_connection_bucket{le="1"}')).toBe(0)
    expect(samples.get('api_keepalive_requests_per_connection_bucket{le="2"}')).toBe(1)
    expect([...samples.keys()].some((key) => key.startsWith('keepalive_'))).toBe(false)
  })

  it('removes its metrics and stops observing closes on unregister, and can register again', async () => {
    const { url, controller, registry, agent } = await start({ max: 1 })
    const metrics = registerKeepAliveMetrics(controller, { registry })
    metrics.unregister()
    metrics.unregister()
    expect(await registry.metrics()).toBe('\n')
    expect(registry.getMetricsAsArray()).toHaveLength(0)
    const closed = new Promise((resolve) => controller.once('close', resolve))
    await get(url, agent)
    await closed
    const again = registerKeepAliveMetrics(controller, { registry })
    cleanups.push(() => again.unregister())
    const samples = await scrape(registry)
    expect(samples.get('keepalive_requests_total')).toBe(1)
    expect(samples.get('keepalive_requests_per_connection_count')).toBe(0)
  })

  it('refuses to register twice with the same labels, or over metrics it did not create, leaving the registry as it was', async () => {
    const { controller, registry } = await start()
    const first = registerKeepAliveMetrics(controller, { registry })
    cleanups.push(() => first.unregister())
    expect(() => registerKeepAliveMetrics(controller, { registry })).toThrow(
      'keepalive: a controller with labels {} is already registered as "keepalive_connections"; give this one other "labels" (e.g. { server: \'admin\' }) or another "prefix"',
    )
    expect(registry.getMetricsAsArray()).toHaveLength(9)
    const other = new Registry()
    other.registerMetric(new Gauge({ name: 'keepalive_draining', help: "the application's own", registers: [] }))
    expect(() => registerKeepAliveMetrics(controller, { registry: other })).toThrow(
      'keepalive: a metric named "keepalive_draining" is already registered; unregister the previous one or pass another "prefix"',
    )
    expect(other.getMetricsAsArray()).toHaveLength(1)
  })

  it('exposes each family with its type, a unit in its name and exactly the label sets documented', async () => {
    const { controller, registry } = await start()
    const metrics = registerKeepAliveMetrics(controller, { registry, labels: { server: 'api' } })
    cleanups.push(() => metrics.unregister())
    const found = families(await registry.metrics())
    const shapes = (name: string): string[] => [...found.get(name)!.shapes].sort()
    expect(Object.fromEntries([...found].map(([name, family]) => [name, family.type]))).toEqual({
      keepalive_connections: 'gauge',
      keepalive_requests_total: 'counter',
      keepalive_connection_closes_total: 'counter',
      keepalive_requests_per_connection: 'histogram',
      keepalive_connection_duration_seconds: 'histogram',
      keepalive_load_ratio: 'gauge',
      keepalive_timeout_seconds: 'gauge',
      keepalive_max_requests: 'gauge',
      keepalive_draining: 'gauge',
    })
    for (const family of found.values()) expect(family.help).not.toBe('')
    expect(shapes('keepalive_connections')).toEqual(['keepalive_connections{server,state}'])
    expect(shapes('keepalive_requests_total')).toEqual(['keepalive_requests_total{server}'])
    expect(shapes('keepalive_connection_closes_total')).toEqual(['keepalive_connection_closes_total{reason,server}'])
    expect(shapes('keepalive_requests_per_connection')).toEqual([
      'keepalive_requests_per_connection_bucket{le,server}',
      'keepalive_requests_per_connection_count{server}',
      'keepalive_requests_per_connection_sum{server}',
    ])
    expect(shapes('keepalive_connection_duration_seconds')).toEqual([
      'keepalive_connection_duration_seconds_bucket{le,reason,server}',
      'keepalive_connection_duration_seconds_count{reason,server}',
      'keepalive_connection_duration_seconds_sum{reason,server}',
    ])
    for (const name of ['keepalive_load_ratio', 'keepalive_timeout_seconds', 'keepalive_max_requests', 'keepalive_draining']) {
      expect(shapes(name)).toEqual([`${name}{server}`])
    }
    const samples = parse(await registry.metrics())
    // Every reason is a snake_case label value, present at zero before anything closed.
    for (const reason of ['client', 'idle_timeout', 'max_requests', 'max_age', 'shed', 'evicted', 'per_ip', 'drain', 'forced']) {
      expect(samples.get(`keepalive_connection_closes_total{server="api",reason="${reason}"}`)).toBe(0)
      expect(samples.get(`keepalive_connection_duration_seconds_count{server="api",reason="${reason}"}`)).toBe(0)
    }
    const bounds = [...samples.keys()]
      .filter((key) => key.startsWith('keepalive_connection_duration_seconds_bucket{') && key.includes('reason="client"'))
      .map((key) => /le="([^"]+)"/.exec(key)![1])
    expect(bounds).toEqual(['0.01', '0.05', '0.1', '0.5', '1', '5', '10', '30', '60', '120', '300', '600', '1800', '3600', '+Inf'])
  })

  it('observes how long each connection lived, in seconds, under its close reason', async () => {
    const { url, controller, registry, agent } = await start({ max: 2 })
    const metrics = registerKeepAliveMetrics(controller, { registry, durationBuckets: [0.001, 60] })
    cleanups.push(() => metrics.unregister())
    const closed = new Promise<CloseEvent>((resolve) => controller.once('close', resolve))
    await get(url, agent)
    await get(url, agent)
    const event = await closed
    const samples = await scrape(registry)
    expect(samples.get('keepalive_connection_duration_seconds_count{reason="max_requests"}')).toBe(1)
    expect(samples.get('keepalive_connection_duration_seconds_sum{reason="max_requests"}')).toBe(event.age)
    expect(event.age).toBeGreaterThan(0)
    expect(samples.get('keepalive_connection_duration_seconds_bucket{le="60",reason="max_requests"}')).toBe(1)
    expect(samples.get('keepalive_connection_duration_seconds_bucket{le="+Inf",reason="max_requests"}')).toBe(1)
    expect(samples.get('keepalive_connection_duration_seconds_count{reason="client"}')).toBe(0)
  })

  it('exports two controllers on one registry under their own static labels, and drops one on unregister', async () => {
    const api = await start({ timeout: 7 })
    const admin = await start({ timeout: 3 })
    const registry = api.registry
    const first = registerKeepAliveMetrics(api.controller, { registry, labels: { server: 'api' } })
    const second = registerKeepAliveMetrics(admin.controller, { registry, labels: { server: 'admin' } })
    cleanups.push(
      () => first.unregister(),
      () => second.unregister(),
    )
    await get(api.url, api.agent)
    let samples = await scrape(registry)
    expect(samples.get('keepalive_timeout_seconds{server="api"}')).toBe(7)
    expect(samples.get('keepalive_timeout_seconds{server="admin"}')).toBe(3)
    expect(samples.get('keepalive_requests_total{server="api"}')).toBe(1)
    expect(samples.get('keepalive_requests_total{server="admin"}')).toBe(0)
    expect(samples.get('keepalive_connections{server="api",state="idle"}')).toBe(1)
    expect(registry.getMetricsAsArray()).toHaveLength(9)

    expect(() => registerKeepAliveMetrics(admin.controller, { registry, labels: { server: 'admin' } })).toThrow(
      'keepalive: a controller with labels {"server":"admin"} is already registered as "keepalive_connections"; give this one other "labels" (e.g. { server: \'admin\' }) or another "prefix"',
    )
    expect(() => registerKeepAliveMetrics(admin.controller, { registry, labels: { app: 'x' } })).toThrow(
      expect.objectContaining({
        name: 'TypeError',
        option: 'labels',
        message:
          'keepalive: "labels" must have the names of the controller already registered as "keepalive_connections" (server), got app; or pass another "prefix"',
      }),
    )

    second.unregister()
    samples = await scrape(registry)
    expect(samples.get('keepalive_timeout_seconds{server="api"}')).toBe(7)
    expect([...samples.keys()].some((key) => key.includes('server="admin"'))).toBe(false)
    expect(registry.getMetricsAsArray()).toHaveLength(9)
    first.unregister()
    expect(registry.getMetricsAsArray()).toHaveLength(0)
  })

  it('rejects bad options naming the option and the value', async () => {
    const { controller, registry } = await start()
    const cases: [unknown, ErrorConstructor, string][] = [
      [{ registry, prefx: 'x_' }, TypeError, 'keepalive: unknown option "prefx"; did you mean "prefix"?'],
      [{ registry, lables: { a: 'b' } }, TypeError, 'keepalive: unknown option "lables"; did you mean "labels"?'],
      [{ registry, colour: 1 }, TypeError, 'keepalive: unknown option "colour"; known options: registry, prefix, labels, buckets, durationBuckets'],
      [{ registry, prefix: 3 }, TypeError, 'keepalive: "prefix" must be a string, got 3'],
      [{ registry, prefix: 'my-app_' }, RangeError, 'keepalive: "prefix" must start a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got "my-app_"'],
      [{ registry: {} }, TypeError, 'keepalive: "registry" must be a prom-client Registry, got an object'],
      [{ registry, buckets: [] }, TypeError, 'keepalive: "buckets" must be a non-empty array of finite numbers, got an array'],
      [{ registry, buckets: [1, 'x'] }, TypeError, 'keepalive: "buckets[1]" must be a number, got "x" (string)'],
      [{ registry, buckets: [5, 1] }, RangeError, 'keepalive: "buckets" must be increasing, got 5 then 1'],
      [{ registry, durationBuckets: [0.1, Infinity] }, RangeError, 'keepalive: "durationBuckets[1]" must be finite, got Infinity'],
      [{ registry, durationBuckets: [-1] }, RangeError, 'keepalive: "durationBuckets[0]" must be at least 0 and at most 2147482 seconds, got -1'],
      [{ registry, labels: 'api' }, TypeError, 'keepalive: "labels" must be an object of label names to string values, got "api" (string)'],
      [
        { registry, labels: { 'app-name': 'x' } },
        RangeError,
        'keepalive: "labels" names must be valid Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __), got "app-name"',
      ],
      [
        { registry, labels: { __name: 'x' } },
        RangeError,
        'keepalive: "labels" names must be valid Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __), got "__name"',
      ],
      [{ registry, labels: { reason: 'x' } }, RangeError, 'keepalive: "labels.reason" is a label the metrics set themselves; allowed: any other name'],
      [{ registry, labels: { server: 1 } }, TypeError, 'keepalive: "labels.server" must be a string, got 1'],
      ['keepalive_', TypeError, 'keepalive: metrics options must be an object, got "keepalive_" (string)'],
    ]
    for (const [options, type, message] of cases) {
      let error: unknown
      try {
        registerKeepAliveMetrics(controller, options as never)
      } catch (caught) {
        error = caught
      }
      expect(error).toBeInstanceOf(type)
      expect((error as Error).message).toBe(message)
    }
    expect(() => registerKeepAliveMetrics({} as never, { registry })).toThrow(TypeError)
    expect(registry.getMetricsAsArray()).toHaveLength(0)
  })

  it("registers on prom-client's global registry when none is given", async () => {
    const { register } = await import('prom-client')
    const { controller } = await start()
    const metrics = registerKeepAliveMetrics(controller)
    cleanups.push(() => metrics.unregister())
    expect(register.getSingleMetric('keepalive_requests_total')).toBeDefined()
    metrics.unregister()
    expect(register.getSingleMetric('keepalive_requests_total')).toBeUndefined()
  })
})
