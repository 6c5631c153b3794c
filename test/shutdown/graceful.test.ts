import type http from 'node:http'
import { performance } from 'node:perf_hooks'
import { gracefulShutdown, type KeepAliveController, type ShutdownReport } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { connect, connectionHeaders } from '../helpers/wire.js'
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
  const waiting: (() => void)[] = []
  let ready: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | null = null
  // Attached only: gracefulShutdown's drain needs no handle() call in the request handler.
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    waiting.shift()?.()
    if (req.url === '/hang') return
    if (req.url === '/ready' && ready !== null) ready(req, res)
    else res.end('ok')
  }
  const { controller, server, port } = await resources.startServer({ grace: 0.2 }, handler, { handle: false })
  return {
    ka: controller,
    server,
    port,
    next: () => new Promise((resolve) => waiting.push(resolve)),
    readiness: (handler) => (ready = handler),
  }
}

describe('gracefulShutdown(server, options) with exit: false', () => {
  it('reports not-ready while serving as usual during the readiness delay, then drains and runs the hooks in order', async () => {
    const { ka, server, port, readiness } = await start()
    const events: string[] = []
    const logged: string[] = []
    let resolveNotReady!: () => void
    const notReady = new Promise<void>((resolve) => (resolveNotReady = resolve))
    let resolveDone!: (report: ShutdownReport) => void
    const done = new Promise<ShutdownReport>((resolve) => (resolveDone = resolve))
    const graceful = gracefulShutdown(server, {
      keepAlive: ka,
      signals: [SIGNAL],
      readinessDelay: 0.4,
      timeout: 5,
      exit: false,
      logger: (line) => {
        logged.push(line)
        resolveNotReady()
      },
      beforeShutdown: () => {
        events.push(`beforeShutdown listening=${server.listening} draining=${ka.stats().draining}`)
      },
      onShutdown: (report) => {
        events.push(`onShutdown open=${ka.stats().connections.open}`)
        resolveDone(report)
      },
    })
    resources.add(graceful, (g) => g.dispose())
    readiness((req, res) => graceful.readiness(req, res))
    ka.on('draining', () => events.push('draining'))
    const raw = resources.add(await connect(port), (c) => c.destroy())
    expect(connectionHeaders(await raw.request('/')).connection).toBe('keep-alive')
    expect(graceful.ready).toBe(true)
    expect(await raw.request('/ready')).toMatchObject({ status: 200, body: 'ok' })

    const signalledAt = performance.now()
    process.kill(process.pid, SIGNAL)
    await notReady
    expect(logged[0]).toBe(`keepalive: ${SIGNAL} received: reporting not ready; draining in 0.4s`)
    expect(graceful.ready).toBe(false)
    expect(ka.stats().draining).toBe(false)
    // Still serving as usual during the delay: the readiness probe says 503, connections stay keep-alive
    // (a proxy that still routes here keeps reusing its pooled connections rather than opening new ones).
    const probe = await raw.request('/ready')
    expect(probe).toMatchObject({ status: 503, body: 'shutting down' })
    expect(connectionHeaders(probe).connection).toBe('keep-alive')
    const during = await raw.request('/')
    expect(during.status).toBe(200)
    expect(connectionHeaders(during).connection).toBe('keep-alive')
    expect(server.listening).toBe(true)

    const report = await done
    const seconds = (performance.now() - signalledAt) / 1000
    // What the signal started, awaited to its end (after the log line); the same report.
    expect(await graceful.shutdown()).toBe(report)
    expect(process.exitCode).toBeUndefined() // exit: false leaves the process alone
    expect(seconds).toBeGreaterThanOrEqual(0.35)
    expect(seconds).toBeLessThan(3)
    expect(events).toEqual(['beforeShutdown listening=true draining=false', 'draining', 'onShutdown open=0'])
    expect(report.forced).toBe(0)
    // The socket used during the delay was closed by the drain once quiet.
    expect(report.closedIdle).toBe(1)
    await raw.closed
    expect(logged).toHaveLength(2)
    expect(logged[1]).toMatch(/^keepalive: drained in \d+\.\d\ds: 1 idle closed, \d+ requests completed, 0 forced$/)
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
    const raw = resources.add(await connect(port), (c) => c.destroy())
    const started = next()
    const hung = raw.request('/hang').catch((error: Error) => error.message)
    await started

    const draining = new Promise<void>((resolve) => ka.once('draining', resolve))
    process.kill(process.pid, SIGNAL)
    await draining
    const signalledAt = performance.now()
    process.kill(process.pid, SIGNAL)
    await raw.closed
    expect(await hung).toBe('connection closed before a complete response')
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
