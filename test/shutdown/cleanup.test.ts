import { once } from 'node:events'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { setImmediate as tick } from 'node:timers/promises'
import { createKeepAlive } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { useResources } from '../helpers/resources.js'
import { fixture } from '../helpers/tls.js'

const resources = useResources()

const SERVER_EVENTS = ['connection', 'secureConnection', 'close', 'request', 'session', 'stream'] as const

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void
type AnyServer = http.Server | https.Server | http2.Http2SecureServer

interface Kind {
  create(handler: Handler): AnyServer
  /** Sends `n` requests one after the other over one kept-alive connection; resolves with a way to close the client. */
  serve(port: number, n: number): Promise<() => Promise<void>>
}

async function agentRequests(port: number, n: number, agent: http.Agent, request: typeof http.request): Promise<void> {
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume()
        res.on('end', resolve)
      })
        .on('error', reject)
        .end()
    })
  }
}

const kinds: Record<string, Kind> = {
  http: {
    create: (handler) => http.createServer(handler as http.RequestListener),
    async serve(port, n) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      await agentRequests(port, n, agent, http.request)
      return async () => agent.destroy()
    },
  },
  https: {
    create: (handler) => https.createServer({ key: fixture.key, cert: fixture.cert }, handler as http.RequestListener),
    async serve(port, n) {
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: fixture.cert })
      await agentRequests(port, n, agent, https.request)
      return async () => agent.destroy()
    },
  },
  http2: {
    create: (handler) => http2.createSecureServer({ key: fixture.key, cert: fixture.cert }, handler),
    async serve(port, n) {
      const session = http2.connect(`https://127.0.0.1:${port}`, { ca: fixture.cert })
      for (let i = 0; i < n; i++) {
        const stream = session.request({ ':path': '/' })
        stream.resume()
        await once(stream, 'close')
      }
      return async () => {
        if (!session.closed) {
          session.close()
          await once(session, 'close')
        }
      }
    },
  },
}

function listenerCounts(server: AnyServer): Record<string, number> {
  return Object.fromEntries(SERVER_EVENTS.map((event) => [event, server.listenerCount(event)]))
}

/** Active handles and requests by type: timers that keep the process alive, sockets, servers. */
function activeResources(): Map<string, number> {
  const counts = new Map<string, number>()
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1)
  return counts
}

describe.each(Object.keys(kinds))('after shutdown of an attached %s server', (name) => {
  it('leaves no connection tracked, no listener, no hook and no handle behind', async () => {
    const kind = kinds[name]!
    const before = activeResources()
    const server = kind.create((_req, res) => res.end('ok'))
    resources.add(server, (s) => {
      if (s.listening) s.close()
    })
    const listenersBefore = listenerCounts(server)
    const prototype = http.ServerResponse.prototype
    const hooksBefore = { emit: server.emit, ownEmit: Object.hasOwn(server, 'emit'), writeHead: prototype.writeHead, detachSocket: prototype.detachSocket }
    const ka = createKeepAlive({ grace: 0.1, adaptive: true })
    ka.attach(server)
    expect(listenerCounts(server)).not.toEqual(listenersBefore)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port

    const closeClient = await kind.serve(port, 3)
    expect(ka.stats()).toMatchObject({ connections: { open: 1 }, requests: 3 })
    expect(server.emit).not.toBe(hooksBefore.emit)
    expect(prototype.writeHead).not.toBe(hooksBefore.writeHead)
    expect(prototype.detachSocket).not.toBe(hooksBefore.detachSocket)

    const serverClosed = once(server, 'close')
    const shutdown = ka.shutdown({ timeout: 5 })
    expect(ka.shutdown()).toBe(shutdown)
    const report = await shutdown
    await serverClosed
    await closeClient()
    // Node's own socket teardown (TLS included) finishes over a few turns of the loop; what is still
    // there after that would be ours.
    for (let i = 0; i < 4; i++) await tick()

    expect(report).toMatchObject({ closedIdle: 1, completed: 0, forced: 0 })
    expect(ka.stats().connections).toEqual({ open: 0, active: 0, idle: 0 })
    expect(listenerCounts(server)).toEqual(listenersBefore)
    expect(server.emit).toBe(hooksBefore.emit)
    expect(Object.hasOwn(server, 'emit')).toBe(hooksBefore.ownEmit)
    expect(prototype.writeHead).toBe(hooksBefore.writeHead)
    expect(prototype.detachSocket).toBe(hooksBefore.detachSocket)
    const after = activeResources()
    for (const [type, n] of after) expect(n, type).toBeLessThanOrEqual(before.get(type) ?? 0)
    // Still the same promise once everything is over.
    expect(ka.shutdown({ timeout: 1 })).toBe(shutdown)
  })
})
