/** HTTPS (`node:https` + createKeepAlive): the same wire behaviour as plain HTTP. */
import type { IncomingMessage } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { createKeepAlive, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { nextClose } from './helpers/events.js'
import { useResources } from './helpers/resources.js'
import { fixture } from './helpers/tls.js'
import { connect, expectHeaders, fromRawHeaders, type RawClient } from './helpers/wire.js'

interface Running {
  port: number
  controller: KeepAliveController
}

describe('https: keep-alive on the wire', () => {
  const resources = useResources()

  async function serve(options?: KeepAliveOptions): Promise<Running> {
    const controller = createKeepAlive(options)
    const server = https.createServer({ key: fixture.key, cert: fixture.cert }, (req, res) => {
      controller.handle(req, res)
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '2' })
      res.end('ok')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    controller.attach(server)
    resources.add(server, (s) => {
      s.closeAllConnections()
      return new Promise((resolve) => s.close(resolve))
    })
    return { port: (server.address() as AddressInfo).port, controller }
  }

  async function client(port: number): Promise<RawClient> {
    return resources.add(await connect(port, { tls: { ca: fixture.cert } }), (c) => c.destroy())
  }

  it('sends exactly one Connection: keep-alive and one Keep-Alive: timeout=5, max=999 by default', async () => {
    const { port } = await serve()
    const c = await client(port)
    const first = await c.request('/')
    expect(first.body).toBe('ok')
    expectHeaders(first, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
    expectHeaders(await c.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=998' })
  })

  it('lets https.Agent({ keepAlive: true, maxSockets: 1 }) reuse one connection for 5 requests', async () => {
    const { port, controller } = await serve()
    const agent = resources.add(new https.Agent({ keepAlive: true, maxSockets: 1, ca: fixture.cert }), (a) => a.destroy())
    let connections = 0
    controller.on('connection', () => connections++)
    for (let n = 1; n <= 5; n++) {
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        https.get(`https://localhost:${port}/`, { agent }, resolve).on('error', reject)
      })
      let body = ''
      for await (const chunk of response) body += String(chunk)
      expect(body).toBe('ok')
      expectHeaders(fromRawHeaders(response.rawHeaders), { connection: 'keep-alive', 'keep-alive': `timeout=5, max=${1000 - n}` })
    }
    expect(connections).toBe(1)
    expect(controller.stats()).toMatchObject({ connections: { open: 1 }, requests: 5, reuseRatio: 4 / 5 })
  })

  it('counts max down and closes the TLS connection on the max-th response when max is 3', async () => {
    const { port, controller } = await serve({ max: 3 })
    const closed = nextClose(controller)
    const c = await client(port)
    expectHeaders(await c.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=2' })
    expectHeaders(await c.request('/'), { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
    const third = await c.request('/')
    expectHeaders(third, { connection: 'close', 'keep-alive': null })
    expect((await c.closed) - third.receivedAt).toBeLessThan(1000)
    expect(await closed).toMatchObject({ reason: 'maxRequests', requests: 3 })
  })

  it('closes an idle TLS connection after timeout + grace', async () => {
    const { port, controller } = await serve({ timeout: 1, grace: 0.2 })
    const closed = nextClose(controller)
    const c = await client(port)
    const response = await c.request('/')
    expectHeaders(response, { connection: 'keep-alive', 'keep-alive': 'timeout=1, max=999' })
    const idleMs = (await c.closed) - response.receivedAt
    expect(idleMs).toBeGreaterThanOrEqual(1000)
    expect(idleMs).toBeLessThan(1200 + 1500)
    expect(await closed).toMatchObject({ reason: 'idleTimeout', requests: 1 })
  })
})
