import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { createKeepAlive, gracefulShutdown, type KeepAliveController, type ShutdownReport } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { connectionHeaders, openRaw } from '../helpers/load.js'
import { useResources } from '../helpers/resources.js'

const resources = useResources()

// A signal nothing else in the test process listens to; the process really receives it.
const SIGNAL = 'SIGUSR2'

interface Started {
  ka: KeepAliveController
  server: http.Server
  port: number
  /** Resolves as the next handler starts. */
  next(): Promise<void>
  /** Serves `/ready` with this handler. */
  readiness(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): void
}

async function start(): Promise<Started> {
  const ka = createKeepAlive({ grace: 0.2 })
  const waiting: (() => void)[] = []
  let ready: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | null = null
  const server = http.createServer((req, res) => {
    waiting.shift()?.()
    if (req.url === '/hang') return
    if (req.url === '/ready' && ready !== null) ready(req, res)
    else res.end('ok')
  })
  ka.attach(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  resources.add(server, (s) => {
    s.closeAllConnections()
    if (s.listening) s.close()
  })
  return {
    ka,
    server,
    port: (server.address() as AddressInfo).port,
    next: () => new Promise((resolve) => waiting.push(resolve)),
    readiness: (handler) => (ready = handler),
  }
}

describe('gracefulShutdown(server, options) with exit: false', () => {
  it('reports not-ready and closes every response during the readiness delay, then runs the hooks in order', async () => {
    const { ka, server, port, readiness } = await start()
    const events: string[] = []
    const logged: string[] = []
    let resolveDone!: (report: ShutdownReport) => void
    const done = new Promise<ShutdownReport>((resolve) => (resolveDone = resolve))
    const graceful = gracefulShutdown(server, {
      keepAlive: ka,
      signals: [SIGNAL],
      readinessDelay: 0.4,
      timeout: 5,
      exit: false,
      logger: (line) => logged.push(line),
      beforeShutdown: () => {
        events.push(`beforeShutdown listening=${server.listening}`)
      },
      onShutdown: (report) => {
        events.push(`onShutdown open=${ka.stats().connections.open}`)
        resolveDone(report)
      },
    })
    resources.add(graceful, (g) => g.dispose())
    readiness((req, res) => graceful.readiness(req, res))
    ka.on('draining', () => events.push('draining'))
    const raw = resources.add(await openRaw(port), (c) => c.socket.destroy())
    expect(connectionHeaders((await raw.request('/')).headers).connection).toBe('keep-alive')
    expect(graceful.ready).toBe(true)
    expect(await raw.request('/ready')).toMatchObject({ status: 200, body: 'ok' })

    const signalledAt = performance.now()
    const draining = new Promise<void>((resolve) => ka.once('draining', resolve))
    process.kill(process.pid, SIGNAL)
    await draining
    expect(graceful.ready).toBe(false)
    // Still serving during the delay: the open socket's next response closes it.
    const during = await raw.request('/')
    expect(during.status).toBe(200)
    expect(connectionHeaders(during.headers)).toEqual({ connection: 'close', keepAlive: null })
    await raw.closed
    // A readiness probe on a new connection: 503, and the connection closes after it.
    const probe = resources.add(await openRaw(port), (c) => c.socket.destroy())
    const answer = await probe.request('/ready')
    expect(answer).toMatchObject({ status: 503, body: 'shutting down' })
    expect(connectionHeaders(answer.headers)).toEqual({ connection: 'close', keepAlive: null })
    await probe.closed
    expect(server.listening).toBe(true)

    const report = await done
    const seconds = (performance.now() - signalledAt) / 1000
    // What the signal started, awaited to its end (after the log line); the same report.
    expect(await graceful.shutdown()).toBe(report)
    expect(process.exitCode).toBeUndefined() // exit: false leaves the process alone
    expect(seconds).toBeGreaterThanOrEqual(0.35)
    expect(seconds).toBeLessThan(3)
    expect(events).toEqual(['draining', 'beforeShutdown listening=true', 'onShutdown open=0'])
    expect(report.forced).toBe(0)
    expect(logged).toHaveLength(1)
    expect(logged[0]).toMatch(/^keepalive: drained in \d+\.\d\ds: \d+ idle closed, \d+ requests completed, 0 forced$/)
  })

  it('forces every connection at once on a second signal', async () => {
    const { ka, server, port, next } = await start()
    const logged: string[] = []
    let resolveDone!: (report: ShutdownReport) => void
    const done = new Promise<ShutdownReport>((resolve) => (resolveDone = resolve))
    const graceful = gracefulShutdown(server, {
      keepAlive: ka,
      signals: [SIGNAL],
      timeout: 30,
      exit: false,
      logger: (line) => logged.push(line),
      onShutdown: resolveDone,
    })
    resources.add(graceful, (g) => g.dispose())
    const raw = resources.add(await openRaw(port), (c) => c.socket.destroy())
    const started = next()
    const hung = raw.request('/hang').catch((error: Error) => error.message)
    await started

    const draining = new Promise<void>((resolve) => ka.once('draining', resolve))
    process.kill(process.pid, SIGNAL)
    await draining
    const signalledAt = performance.now()
    process.kill(process.pid, SIGNAL)
    await raw.closed
    expect(await hung).toBe('socket closed before a full response')
    expect(logged).toContain('keepalive: second signal, closing every connection now')
    // The drain ended at once, without waiting for its 30 s deadline, and the hooks still ran.
    const report = await done
    expect(report).toMatchObject({ forced: 1, completed: 0 })
    expect((performance.now() - signalledAt) / 1000).toBeLessThan(2)
    expect(await graceful.shutdown()).toBe(report)
    expect(ka.stats().closes.forced).toBe(1)
    expect(logged.at(-1)).toMatch(/: 0 idle closed, 0 requests completed, 1 forced$/)
  })
})
