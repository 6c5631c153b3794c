import { once } from 'node:events'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { Registry } from 'prom-client'
import { createKeepAlive, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
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
    expect(text).toContain('# TYPE keepalive_load_ratio gauge')
    expect(text).toContain('# TYPE keepalive_timeout_seconds gauge')
    expect(text).toContain('# TYPE keepalive_max_requests gauge')
    expect(text).toContain('# TYPE keepalive_draining gauge')
    const samples = parse(text)
    expect(samples.get('keepalive_connections{state="active"}')).toBe(0)
    expect(samples.get('keepalive_connections{state="idle"}')).toBe(0)
    expect(samples.get('keepalive_requests_total')).toBe(0)
    for (const reason of ['client', 'idleTimeout', 'maxRequests', 'maxAge', 'shed', 'evicted', 'perIp', 'drain', 'forced']) {
      expect(samples.get(`keepalive_connection_closes_total{reason="${reason}"}`)).toBe(0)
    }
    expect(samples.get('keepalive_timeout_seconds')).toBe(7)
    expect(samples.get('keepalive_max_requests')).toBe(50)
    expect(samples.get('keepalive_load_ratio')).toBe(0)
    expect(samples.get('keepalive_draining')).toBe(0)
    expect(metrics.names).toHaveLength(8)
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
    expect(samples.get('keepalive_connection_closes_total{reason="maxRequests"}')).toBe(1)
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
    expect(samples.get('keepalive_connection_closes_total{reason="idleTimeout"}')).toBe(1)
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

  it('refuses to register over existing metrics of the same name, leaving the registry as it was', async () => {
    const { controller, registry } = await start()
    const first = registerKeepAliveMetrics(controller, { registry })
    cleanups.push(() => first.unregister())
    expect(() => registerKeepAliveMetrics(controller, { registry })).toThrow(
      'keepalive: a metric named "keepalive_connections" is already registered; unregister the previous one or pass another "prefix"',
    )
    expect(registry.getMetricsAsArray()).toHaveLength(8)
  })

  it('rejects bad options naming the option and the value', async () => {
    const { controller, registry } = await start()
    const cases: [unknown, ErrorConstructor, string][] = [
      [{ registry, prefx: 'x_' }, TypeError, 'keepalive: unknown option "prefx"; allowed: registry, prefix, buckets'],
      [{ registry, prefix: 3 }, TypeError, 'keepalive: "prefix" must be a string, got 3 (number)'],
      [{ registry, prefix: 'my-app_' }, RangeError, 'keepalive: "prefix" must start a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got "my-app_"'],
      [{ registry: {} }, TypeError, 'keepalive: "registry" must be a prom-client Registry, got an object'],
      [{ registry, buckets: [] }, TypeError, 'keepalive: "buckets" must be a non-empty array of finite numbers, got [] (array)'],
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

  it('registers on prom-client\'s global registry when none is given', async () => {
    const { register } = await import('prom-client')
    const { controller } = await start()
    const metrics = registerKeepAliveMetrics(controller)
    cleanups.push(() => metrics.unregister())
    expect(register.getSingleMetric('keepalive_requests_total')).toBeDefined()
    metrics.unregister()
    expect(register.getSingleMetric('keepalive_requests_total')).toBeUndefined()
  })
})
