// The demo's server, once per framework: the routes of examples/<x>/server.mjs plus `/work`, which
// stands for a real handler: it waits `wait` ms on a (simulated) downstream call, then burns `cpu` ms
// of CPU. Each start() returns the server's URL, its keepalive controller and the gracefulShutdown
// handle, wired without signals: the demo decides when to shut down.
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { createKeepAlive, gracefulShutdown } from '@keepalive/core'
import { keepAlive as expressKeepAlive } from '@keepalive/express'
import fastifyKeepAlive from '@keepalive/fastify'
import { keepAlive as koaKeepAlive } from '@keepalive/koa'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'

export const frameworks = ['express', 'koa', 'fastify', 'raw']

/** Burns `ms` of CPU on the event loop, as a handler that parses, renders or hashes would. */
function burn(ms) {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // busy on purpose
  }
}

/** `/work?wait=<ms>&cpu=<ms>`: a downstream wait, then CPU work. */
async function work(query) {
  const wait = Number(query.get('wait') ?? 0)
  if (wait > 0) await sleep(wait)
  burn(Number(query.get('cpu') ?? 0))
  return 'ok\n'
}

const searchOf = (url) => new URL(url, 'http://x').searchParams

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`))
  })
}

/**
 * Starts the demo server for one framework.
 * @param {'express' | 'koa' | 'fastify' | 'raw'} framework
 * @param {{ keepAlive: import('@keepalive/core').KeepAliveOptions, shutdown: import('@keepalive/core').GracefulShutdownOptions }} options
 */
export async function start(framework, options) {
  const shutdownOptions = { ...options.shutdown, signals: [], exit: false }

  if (framework === 'express') {
    const app = express()
    const server = http.createServer(app)
    const ka = expressKeepAlive(options.keepAlive)
    const graceful = gracefulShutdown(server, { ...shutdownOptions, keepAlive: ka })
    app.use(ka)
    app.get('/work', async (req, res) => res.send(await work(searchOf(req.url))))
    app.get('/ready', graceful.readiness)
    app.get('/stats', (req, res) => res.json(ka.stats()))
    return { url: await listen(server), controller: ka, graceful }
  }

  if (framework === 'koa') {
    const app = new Koa()
    const ka = koaKeepAlive(options.keepAlive)
    app.use(ka)
    app.use(async (ctx) => {
      if (ctx.path === '/work') ctx.body = await work(ctx.URL.searchParams)
      else if (ctx.path === '/stats') ctx.body = ka.stats()
      else if (ctx.path === '/ready') {
        ctx.respond = false
        graceful.readiness(ctx.req, ctx.res)
      }
    })
    const server = http.createServer(app.callback())
    const graceful = gracefulShutdown(server, { ...shutdownOptions, keepAlive: ka })
    return { url: await listen(server), controller: ka, graceful }
  }

  if (framework === 'fastify') {
    const app = Fastify()
    await app.register(fastifyKeepAlive, options.keepAlive)
    // Drain first, then app.close() (its preClose drain finds nothing left): see examples/fastify/server.mjs.
    const graceful = gracefulShutdown(app.server, { ...shutdownOptions, keepAlive: app.keepAlive, onShutdown: () => app.close() })
    app.get('/work', (request) => work(searchOf(request.url)))
    app.get('/stats', async () => app.keepAlive.stats())
    app.get('/ready', (request, reply) => {
      reply.hijack()
      graceful.readiness(request.raw, reply.raw)
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { url: `http://127.0.0.1:${app.server.address().port}`, controller: app.keepAlive, graceful }
  }

  if (framework === 'raw') {
    const ka = createKeepAlive(options.keepAlive)
    const server = http.createServer(async (req, res) => {
      ka.handle(req, res)
      const url = new URL(req.url, 'http://x')
      if (url.pathname === '/ready') return graceful.readiness(req, res)
      if (url.pathname === '/stats') {
        res.setHeader('Content-Type', 'application/json')
        return res.end(JSON.stringify(ka.stats()))
      }
      res.end(await work(url.searchParams))
    })
    ka.attach(server)
    const graceful = gracefulShutdown(server, { ...shutdownOptions, keepAlive: ka })
    return { url: await listen(server), controller: ka, graceful }
  }

  throw new TypeError(`unknown framework "${framework}"; use one of ${frameworks.join(', ')}`)
}
