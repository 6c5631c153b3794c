/**
 * An attached server gets the policy on every request through Node's request hooks, so Express and
 * Koa apps may leave out the middleware line once they call `attach(server)` (README, Express).
 */
import http, { type Server } from 'node:http'
import { createRequire } from 'node:module'
import { keepAlive as expressKeepAlive } from '@keepalive/express'
import { keepAlive as koaKeepAlive } from '@keepalive/koa'
import { describe, expect, it } from 'vitest'
import { useResources } from './helpers/resources.js'
import { connect, expectHeaders } from './helpers/wire.js'

const resources = useResources()
const require = createRequire(import.meta.url)
const express5 = require('express5') as typeof import('express')
const Koa3 = require('koa3') as typeof import('koa')

async function twoRequests(server: Server): Promise<void> {
  const client = resources.add(await connect(await resources.listen(server)), (c) => c.destroy())
  const first = await client.request('/')
  const second = await client.request('/missing')
  expect([first.status, second.status]).toEqual([200, 404])
  expectHeaders(first, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
  expectHeaders(second, { connection: 'close', 'keep-alive': null })
  await client.closed
}

describe('attach() without the middleware', () => {
  it('applies the policy to every Express 5 response, routed or not', async () => {
    const ka = expressKeepAlive({ max: 2 })
    const app = express5()
    app.get('/', (_req, res) => {
      res.send('ok')
    })
    const server = http.createServer(app)
    ka.attach(server)
    await twoRequests(server)
    expect(ka.stats()).toMatchObject({ requests: 2, closes: { maxRequests: 1 } })
  })

  it('applies the policy to every Koa 3 response, routed or not', async () => {
    const ka = koaKeepAlive({ max: 2 })
    const app = new Koa3()
    app.use((ctx) => {
      if (ctx.path === '/') ctx.body = 'ok'
    })
    const server = http.createServer(app.callback())
    ka.attach(server)
    await twoRequests(server)
    expect(ka.stats()).toMatchObject({ requests: 2, closes: { maxRequests: 1 } })
  })
})
