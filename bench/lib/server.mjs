// A bench server in its own process: one framework, with or without keepalive, on 127.0.0.1:0.
// argv[2] is a JSON config:
//   framework      'node' | 'express' | 'koa' | 'fastify'   (Express 5, Koa 3, Fastify 5)
//   keepalive      null (bare) or the keepalive options
//   middleware     false: Express/Koa attach() the controller without app.use() (default true)
//   noopMiddleware bare Express/Koa only: one app.use() layer that calls next(), what any middleware costs
//   channelsOnly   bare only: no-op subscribers on Node's two HTTP server channels keepalive uses
//   headersObject  node only: GET / hands its headers to writeHead() in one object, as Fastify does
// Routes: GET / answers {"hello":"world"}; GET /slow answers the same after slowMs.
import { subscribe } from 'node:diagnostics_channel'
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import { serveCommands } from './child.mjs'
import { parseConfigArg } from './util.mjs'

const config = { slowMs: 500, keepalive: null, middleware: true, shutdown: null, track: false, ...parseConfigArg(process.argv[2] ?? '{}') }

const sockets = new Set()
const slowSockets = new Set()
let inflight = 0
let inflightWaiters = []
let onSocketClosed = null

function slowStarted(socket) {
  slowSockets.add(socket)
  inflight++
  inflightWaiters = inflightWaiters.filter((w) => (inflight >= w.n ? (w.resolve(), false) : true))
}

function slowFinished() {
  inflight--
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Staggered mode: in-flight requests waiting for their release by the shutdown command. */
const held = []

/** Waits as GET /slow does: slowMs, or (staggered) until the shutdown command releases it. */
function slowWait(res) {
  if (!config.staggered) return delay(config.slowMs)
  return new Promise((release) => held.push({ res, release }))
}

async function createNode(ka) {
  const server = http.createServer((req, res) => {
    ka?.handle(req, res)
    if (req.url === '/slow') {
      slowStarted(req.socket)
      slowWait(res).then(() => {
        slowFinished()
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ hello: 'world' }))
      })
      return
    }
    const body = JSON.stringify({ hello: 'world' })
    if (config.headersObject) {
      // As Fastify writes a response: its headers handed to writeHead() in one object.
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) })
      res.end(body)
      return
    }
    res.setHeader('content-type', 'application/json')
    res.end(body)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, close: null }
}

async function createExpress(options, side = config) {
  const { default: express } = await import('express5')
  const app = express()
  let ka = null
  if (options !== null) {
    const { keepAlive } = await import('@keepalive/express')
    ka = keepAlive(options)
    if (side.middleware) app.use(ka)
  } else if (side.noopMiddleware) {
    app.use((req, res, next) => next())
  }
  app.get('/', (req, res) => {
    res.json({ hello: 'world' })
  })
  app.get('/slow', async (req, res) => {
    slowStarted(req.socket)
    await slowWait(res)
    slowFinished()
    res.json({ hello: 'world' })
  })
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
  ka?.attach(server)
  return { server, controller: ka, close: null }
}

async function createKoa(options, side = config) {
  const { default: Koa } = await import('koa3')
  const app = new Koa()
  let ka = null
  if (options !== null) {
    const { keepAlive } = await import('@keepalive/koa')
    ka = keepAlive(options)
    if (side.middleware) app.use(ka)
  } else if (side.noopMiddleware) {
    app.use((ctx, next) => next())
  }
  app.use(async (ctx) => {
    if (ctx.path === '/slow') {
      slowStarted(ctx.req.socket)
      await slowWait(ctx.res)
      slowFinished()
    }
    ctx.body = { hello: 'world' }
  })
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
  ka?.attach(server)
  return { server, controller: ka, close: null }
}

async function createFastify(options) {
  const { default: Fastify } = await import('fastify5')
  const app = Fastify({ logger: false })
  if (options !== null) {
    const { default: keepAlive } = await import('@keepalive/fastify')
    await app.register(keepAlive, options)
  }
  app.get('/', async () => ({ hello: 'world' }))
  app.get('/slow', async (request, reply) => {
    slowStarted(request.raw.socket)
    await slowWait(reply.raw)
    slowFinished()
    return { hello: 'world' }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { server: app.server, controller: options === null ? null : app.keepAlive, close: () => app.close() }
}

/** Builds one variant's server; `side` carries its keepalive options and Node settings. */
async function build(side) {
  let controller = null
  let built
  if (config.framework === 'node') {
    if (side.keepalive !== null) {
      const { createKeepAlive } = await import('@keepalive/core')
      controller = createKeepAlive(side.keepalive)
    }
    built = await createNode(controller)
    controller?.attach(built.server)
  } else if (config.framework === 'express') {
    built = await createExpress(side.keepalive, side)
    controller = built.controller
  } else if (config.framework === 'koa') {
    built = await createKoa(side.keepalive, side)
    controller = built.controller
  } else if (config.framework === 'fastify') {
    built = await createFastify(side.keepalive)
    controller = built.controller
  } else {
    throw new Error(`unknown framework ${config.framework}`)
  }
  const server = built.server
  // Connections accepted so far: how often the load generator had to reconnect (every variant counts
  // them the same way, so the listener costs each side alike).
  const counter = { accepted: 0 }
  server.on('connection', () => {
    counter.accepted++
  })
  if (side.maxConnections !== undefined) server.maxConnections = side.maxConnections
  if (side.keepAliveTimeoutMs !== undefined && controller === null) server.keepAliveTimeout = side.keepAliveTimeoutMs
  if (side.maxRequestsPerSocket !== undefined && controller === null) server.maxRequestsPerSocket = side.maxRequestsPerSocket
  if (side.channelsOnly && controller === null) {
    // What Node's own side of the request and response channels costs, before keepalive does anything.
    for (const name of ['http.server.request.start', 'http.server.response.finish']) subscribe(name, () => {})
  }
  return { built, server, controller, counter }
}

const main = await build(config)
const { built, server, controller } = main

// Shutdown helpers that must see every connection from the start.
let terminator = null
if (config.shutdown === 'http-terminator') {
  const { createHttpTerminator } = await import('http-terminator')
  terminator = createHttpTerminator({ server, gracefulTerminationTimeout: 10_000 })
} else if (config.shutdown === 'stoppable') {
  const { default: stoppable } = await import('stoppable')
  stoppable(server, 10_000)
}

if (config.track) {
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => {
      sockets.delete(socket)
      onSocketClosed?.(socket)
    })
  })
}

function startShutdown(variant) {
  switch (variant) {
    case 'keepalive':
      return controller.shutdown({ timeout: 10 })
    case 'keepalive-fastify':
    case 'fastify':
      return built.close()
    case 'http-terminator':
      return terminator.terminate()
    case 'stoppable':
      return new Promise((resolve) => server.stop(resolve))
    case 'close':
      return new Promise((resolve) => {
        server.close(resolve)
        server.closeIdleConnections()
      })
    default:
      throw new Error(`unknown shutdown variant ${variant}`)
  }
}

/** Times a shutdown: until the call resolved, until every idle socket closed, until all closed. */
async function shutdown({ variant, limitMs = 15_000 }) {
  const idle = new Set([...sockets].filter((s) => !slowSockets.has(s)))
  const measures = { idleAtCall: idle.size, inflightAtCall: inflight, doneMs: null, idleGoneMs: null, allClosedMs: null, report: null, inflightDelaysMs: null }
  const t0 = performance.now()
  // Staggered: release the i-th in-flight request at (i + 1) / n × slowMs from now, and record how
  // much later than that its response finished (what blocking the event loop costs a response).
  const released = []
  if (config.staggered) {
    const waiting = held.splice(0)
    for (const [i, { res, release }] of waiting.entries()) {
      const planned = ((i + 1) / waiting.length) * config.slowMs
      released.push(
        new Promise((resolve) => {
          res.once('finish', () => {
            const at = performance.now() - t0
            measures.inflightLastMs = Math.max(measures.inflightLastMs ?? 0, at)
            resolve(at - planned)
          })
          res.once('close', () => resolve(null))
        }),
      )
      setTimeout(release, planned)
    }
  }
  let allClosed
  const allClosedPromise = new Promise((resolve) => (allClosed = resolve))
  onSocketClosed = (socket) => {
    const now = performance.now() - t0
    if (idle.delete(socket) && idle.size === 0) measures.idleGoneMs = now
    if (sockets.size === 0) {
      measures.allClosedMs = now
      allClosed()
    }
  }
  if (idle.size === 0) measures.idleGoneMs = 0
  if (sockets.size === 0) {
    measures.allClosedMs = 0
    allClosed()
  }
  const done = Promise.resolve(startShutdown(variant)).then((report) => {
    measures.doneMs = performance.now() - t0
    if (report && typeof report === 'object' && 'closedIdle' in report) measures.report = report
  })
  let limit
  await Promise.race([Promise.all([done, allClosedPromise]), new Promise((resolve) => (limit = setTimeout(resolve, limitMs)))])
  clearTimeout(limit)
  measures.idleLeft = idle.size
  measures.openLeft = sockets.size
  for (const socket of sockets) socket.destroy()
  // Every response has finished or its socket is gone by now.
  if (config.staggered) measures.inflightDelaysMs = await Promise.all(released)
  return measures
}

async function collect() {
  for (let i = 0; i < 4; i++) {
    globalThis.gc?.()
    await delay(10)
  }
}

serveCommands(
  {
    async memory() {
      await collect()
      const m = process.memoryUsage()
      const h = getHeapStatistics()
      return { heapUsed: m.heapUsed, rss: m.rss, external: m.external, usedHeapSize: h.used_heap_size, malloced: h.malloced_memory }
    },
    stats: () => controller?.stats() ?? null,
    // This process's CPU time so far, user + system, in microseconds: the overhead suite reads it
    // before and after each measured run, so IPC and warm-up fall outside the window.
    cpu: () => {
      const { user, system } = process.cpuUsage()
      return user + system
    },
    accepted: () => main.counter.accepted,
    connections: () => new Promise((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n)))),
    awaitInflight: ({ n }) => (inflight >= n ? null : new Promise((resolve) => inflightWaiters.push({ n, resolve }))),
    shutdown,
  },
  { port: server.address().port },
)
