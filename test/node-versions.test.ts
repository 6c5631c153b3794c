// Where Node.js versions differ in their keep-alive internals, core must make them behave alike.
// These run on every version of the matrix (scripts/test.mjs): Node 20, 22 and 24.
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { describe, expect, it } from 'vitest'
import { createKeepAlive } from '@keepalive/core'
import { connect, expectHeaders } from './helpers/wire.js'
import { useResources } from './helpers/resources.js'

const resources = useResources()

async function serve(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  resources.add(server, (s) => {
    s.closeAllConnections()
    s.close()
  })
  return (server.address() as AddressInfo).port
}

describe(`Node ${process.version}`, () => {
  it('closes an idle socket at timeout + grace whatever Node\'s own keepAliveTimeout and keepAliveTimeoutBuffer say', async () => {
    const ka = createKeepAlive({ timeout: 0.4, grace: 0.2 })
    // keepAliveTimeoutBuffer exists from Node 24 on (older versions ignore the option); Node 20
    // adds a fixed 1 s. Neither may stretch or shorten what we advertise.
    const server = http.createServer({ keepAliveTimeout: 3000, keepAliveTimeoutBuffer: 3000 } as http.ServerOptions, (req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    ka.attach(server)
    const port = await serve(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    const response = await client.request('/')
    expectHeaders(response, { connection: 'keep-alive', 'keep-alive': 'timeout=0, max=999' })
    const idleFor = (await client.closed) - response.receivedAt
    expect(idleFor).toBeGreaterThanOrEqual(550)
    expect(idleFor).toBeLessThan(2000)
    expect(server.keepAliveTimeout).toBe(0)
  })

  it('sends one Keep-Alive of ours, never Node\'s own beside it', async () => {
    const ka = createKeepAlive()
    const server = http.createServer({ keepAliveTimeout: 7000 }, (req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    ka.attach(server)
    const port = await serve(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    expectHeaders(await client.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
  })

  it('takes over maxRequestsPerSocket: no 503 past it, max= counts down, the socket closes after Connection: close', async () => {
    const ka = createKeepAlive({ max: 3 })
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    server.maxRequestsPerSocket = 2
    ka.attach(server)
    const port = await serve(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    expectHeaders(await client.request('/'), { 'keep-alive': 'timeout=5, max=2' })
    expectHeaders(await client.request('/'), { 'keep-alive': 'timeout=5, max=1' })
    const last = await client.request('/')
    expect(last.status).toBe(200)
    expectHeaders(last, { connection: 'close', 'keep-alive': null })
    const closedAfter = (await client.closed) - last.receivedAt
    expect(closedAfter).toBeLessThan(1000)
  })

  it('keeps an idle socket open when the drain stops the listener, unlike Node\'s own server.close()', async () => {
    const ka = createKeepAlive({ grace: 0.5 })
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    ka.attach(server)
    const port = await serve(server)
    const client = resources.add(await connect(port), (c) => c.destroy())
    await client.request('/')
    const report = ka.shutdown({ timeout: 5 })
    expect(server.listening).toBe(false)
    // The socket is idle but was used just now: a request already on its way is still answered.
    const late = await client.request('/')
    expect(late.status).toBe(200)
    expectHeaders(late, { connection: 'close', 'keep-alive': null })
    await client.closed
    expect(await report).toMatchObject({ completed: 1, forced: 0 })
  })
})
