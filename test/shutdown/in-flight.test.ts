import { once } from 'node:events'
import http from 'node:http'
import type { Socket } from 'node:net'
import type { ShutdownReport } from '@keepalive/core'
import { Pool } from 'undici'
import { describe, expect, it } from 'vitest'
import { agentRequest, poolRequest, watchUndiciWrites, type Outcome } from '../helpers/traffic.js'
import { useResources } from '../helpers/resources.js'

const resources = useResources()

const REQUESTS = 200
const SOCKETS = 64

type Client = (port: number) => {
  send: (path: string) => Promise<Outcome>
  /** Paths whose request had been written to a socket. */
  written: () => Set<string>
  /** Client sockets still open. */
  openSockets: () => number
  close: () => Promise<void>
}

const clients: Record<string, Client> = {
  'http.Agent': (port) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: SOCKETS })
    const written = new Set<string>()
    const sockets = new Set<Socket>()
    const observer = {
      written: (path: string) => written.add(path),
      socket: (socket: Socket) => {
        if (sockets.has(socket)) return
        sockets.add(socket)
        socket.once('close', () => sockets.delete(socket))
      },
    }
    return {
      send: (path) => agentRequest(agent, port, path, observer),
      written: () => written,
      openSockets: () => sockets.size,
      close: async () => agent.destroy(),
    }
  },
  'undici Pool': (port) => {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: SOCKETS, pipelining: 1 })
    const watch = watchUndiciWrites()
    let open = 0
    pool.on('connect', () => open++)
    pool.on('disconnect', () => open--)
    return {
      send: (path) => poolRequest(pool, watch, path),
      written: () => new Set(watch.written.keys()),
      openSockets: () => open,
      close: async () => {
        watch.close()
        await pool.destroy()
      },
    }
  },
}

describe.each(Object.keys(clients))('shutdown() with %s: 200 requests over 64 keep-alive sockets', (clientName) => {
  it('answers every request already written with 200 and Connection: close, then closes every socket', async () => {
    const inFlight = new Set<string>()
    let started = 0
    let resolveHalf!: () => void
    const half = new Promise<void>((resolve) => (resolveHalf = resolve))
    const {
      controller: ka,
      server,
      port,
    } = await resources.startServer({}, (req, res) => {
      const path = req.url ?? ''
      const index = Number(path.split('/').pop())
      inFlight.add(path)
      if (++started === REQUESTS / 2) resolveHalf()
      // Handlers take 100 to 300 ms.
      setTimeout(
        () => {
          inFlight.delete(path)
          res.end('done')
        },
        100 + ((index * 37) % 201),
      )
    })
    const serverClosed = once(server, 'close')
    const client = resources.add(clients[clientName]!(port), (c) => c.close())

    const paths = Array.from({ length: REQUESTS }, (_, i) => `/work/${i}`)
    const outcomes = Promise.all(paths.map((path) => client.send(path)))
    await half

    const writtenAtShutdown = new Set(client.written())
    const inFlightAtShutdown = new Set(inFlight)
    const openAtShutdown = ka.stats().connections.open
    const shutdown = ka.shutdown({ timeout: 5 })
    expect(ka.stats().draining).toBe(true)
    const report: ShutdownReport = await shutdown
    const results = await outcomes
    await serverClosed

    // Half the requests had reached the handlers; every request written by then got its 200.
    expect(inFlightAtShutdown.size).toBeGreaterThan(0)
    const byPath = new Map(results.map((outcome) => [outcome.path, outcome]))
    for (const path of writtenAtShutdown) {
      expect(byPath.get(path), path).toMatchObject({ kind: 'ok', status: 200 })
    }
    // Responses written after shutdown started close their connection and advertise nothing.
    for (const path of inFlightAtShutdown) {
      expect(byPath.get(path), path).toMatchObject({ kind: 'ok', status: 200, headers: { connection: 'close', keepAlive: null } })
    }
    // What was not yet written found the listener closed: a connect error, never a dropped request.
    for (const outcome of results) {
      if (outcome.kind === 'failed') {
        expect(writtenAtShutdown.has(outcome.path), outcome.path).toBe(false)
        expect(outcome.on, outcome.path).toBe('connect')
      }
    }

    const closing = results.filter((o) => o.kind === 'ok' && o.headers.connection === 'close').length
    const ok = results.filter((o) => o.kind === 'ok').length
    expect(report.forced).toBe(0)
    expect(report.completed).toBe(closing)
    expect(report.completed).toBeGreaterThanOrEqual(inFlightAtShutdown.size)
    // Each connection open at shutdown was closed by the drain: after its last response, or idle.
    const stats = ka.stats()
    expect(stats.closes.drain).toBe(openAtShutdown)
    expect(stats.closes.forced).toBe(0)
    expect(stats.connections).toEqual({ open: 0, active: 0, idle: 0 })
    expect(stats.requests).toBe(ok)
    expect(report.elapsed).toBeLessThan(2)
    expect(client.openSockets()).toBe(0)
    console.log(
      `${clientName}: at shutdown ${writtenAtShutdown.size} requests written, ${inFlightAtShutdown.size} in handlers; ` +
        `${ok} answered 200 (${closing} with Connection: close), ${results.length - ok} connect errors; report ${JSON.stringify(report)}`,
    )
  })
})
