// Per-response cost, in process: the decision and header path on real ServerResponse objects of a
// real (unlistened) http.Server attached to a controller, driven through the hooks keepalive puts
// where lib/_http_server.js hands a request over (`server.emit('request')`) and detaches a finished
// response (`res.detachSocket(socket)`). Run with --expose-gc.
//
// The controller's per-connection state is reached the way the writeHead hook reaches it: through
// the socket's `keepalive.connection` symbol. The bench reads it; the package never exposes it.
import http from 'node:http'
import net from 'node:net'
import { performance, PerformanceObserver } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import { createKeepAlive } from '@keepalive/core'
import { measure } from 'mitata'
import { serveCommands } from './child.mjs'

const body = JSON.stringify({ hello: 'world' })
const bodyLength = String(Buffer.byteLength(body))
/** The headers Fastify passes to writeHead() for a JSON reply. */
const replyHeaders = { 'content-type': 'application/json; charset=utf-8', 'content-length': bodyLength }

const server = http.createServer()
const ka = createKeepAlive()
ka.attach(server)
const socket = new net.Socket()
// Node's connection listener sets this on every socket of an HTTP server.
socket.server = server
const req = new http.IncomingMessage(socket)
Object.assign(req, { method: 'GET', url: '/', httpVersion: '1.1', httpVersionMajor: 1, httpVersionMinor: 1 })

function symbolNamed(object, description) {
  const found = Object.getOwnPropertySymbols(object).find((s) => s.description === description)
  if (found === undefined) throw new Error(`no ${description} symbol: has the tracker changed?`)
  return found
}

/** A response as an application leaves it just before its headers go out. */
function appResponse() {
  const res = new http.ServerResponse(req)
  res.setHeader('content-type', 'application/json')
  res.setHeader('content-length', bodyLength)
  return res
}

/** What Node does as a response finishes: `end()` marks it, resOnFinish detaches it from its socket (it holds it). */
function finish(res) {
  socket._httpMessage = res
  res.finished = true
  res.detachSocket(socket)
}

// Two requests through the hooks, as Node runs them: the tracker starts tracking the socket and
// hooks each response; the second, pipelined behind the first, is numbered.
const first = appResponse()
server.emit('request', req, first)
const second = appResponse()
server.emit('request', req, second)
first.writeHead(200)
finish(first)
second.writeHead(200)
finish(second)
if (ka.stats().requests !== 2) throw new Error(`the hooks counted ${ka.stats().requests} requests, not 2`)
const kConnection = symbolNamed(socket, 'keepalive.connection')
const kSequence = symbolNamed(second, 'keepalive.sequence')
const conn = socket[kConnection]
const tracker = conn.owner
const hookedWriteHead = first.writeHead
const max = ka.stats().max
// Node writes the connection headers itself from the fields the decision sets: check what it wrote.
if (!first._header.includes(`\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5, max=${max - 1}\r\n`)) {
  throw new Error(`unexpected head: ${JSON.stringify(first._header)}`)
}

let sequence = 0
/** The n-th response on the connection, cycling through every keep-alive value of `max=`. */
function nextSequence() {
  sequence = (sequence % (max - 1)) + 1
  return sequence
}

/** Each case: `make()` prepares one operation's input (not timed), `run(input)` is the timed work. */
const cases = {
  'decide: keep-alive response': {
    make() {
      const res = appResponse()
      res[kSequence] = nextSequence()
      return res
    },
    run(res) {
      tracker.decide(conn, res, 200, false)
    },
  },
  'decide: closing response (n = max)': {
    make() {
      const res = appResponse()
      res[kSequence] = max
      return res
    },
    run(res) {
      tracker.decide(conn, res, 200, false)
    },
  },
  'writeHead, bare': {
    make: appResponse,
    run(res) {
      res.writeHead(200)
    },
  },
  'writeHead, hooked (hook + decide)': {
    make() {
      const res = appResponse()
      res[kSequence] = nextSequence()
      res.writeHead = hookedWriteHead
      return res
    },
    run(res) {
      res.writeHead(200)
    },
  },
  // Fastify keeps its headers to itself and hands them all to writeHead(): the hook only looks
  // through their names and passes them on, so Node stays on its fast path.
  'writeHead(200, headers), bare': {
    make: () => new http.ServerResponse(req),
    run(res) {
      res.writeHead(200, replyHeaders)
    },
  },
  'writeHead(200, headers), hooked': {
    make() {
      const res = new http.ServerResponse(req)
      res[kSequence] = nextSequence()
      res.writeHead = hookedWriteHead
      return res
    },
    run(res) {
      res.writeHead(200, replyHeaders)
    },
  },
  'request start + finish (emit and detachSocket hooks)': {
    make: appResponse,
    run(res) {
      server.emit('request', req, res)
      finish(res)
    },
    after() {
      // Keep `max=` away from its limit: this case counts requests on the one connection.
      conn.started = conn.finished = 1
    },
  },
  "Node's own keep-alive timer per request (reference)": {
    make: () => socket,
    run(s) {
      // What bare Node does per request with keepAliveTimeout set, and the tracker replaces.
      s.setTimeout(5000 + 1000)
      s.setTimeout(0)
    },
  },
  'stats()': {
    make: () => null,
    run() {
      return ka.stats()
    },
  },
}

async function time(name, minCpuMs) {
  const c = cases[name]
  const stats = await measure(
    function* () {
      yield { [0]: c.make, bench: c.run }
    },
    { min_cpu_time: minCpuMs * 1e6 },
  )
  c.after?.()
  return { p50: stats.p50, avg: stats.avg }
}

/** Bytes allocated per operation: heap growth over `n` operations with no GC in between. */
async function allocation(name, n) {
  const c = cases[name]
  const inputs = Array.from({ length: n }, () => c.make())
  const gcTimes = []
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcTimes.push(entry.startTime)
  })
  observer.observe({ entryTypes: ['gc'] })
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      globalThis.gc()
      const start = performance.now()
      const before = getHeapStatistics().used_heap_size
      for (let i = 0; i < n; i++) c.run(inputs[i])
      const after = getHeapStatistics().used_heap_size
      const end = performance.now()
      // GC entries arrive asynchronously: wait for them, then look for one inside the loop.
      await new Promise((resolve) => setTimeout(resolve, 20))
      if (!gcTimes.some((t) => t >= start && t <= end)) return Math.max(0, (after - before) / n)
      for (let i = 0; i < n; i++) inputs[i] = c.make()
    }
    return null
  } finally {
    observer.disconnect()
    c.after?.()
  }
}

serveCommands(
  {
    time: ({ name, minCpuMs }) => time(name, minCpuMs),
    allocation: ({ name, n }) => allocation(name, n),
  },
  { cases: Object.keys(cases) },
)
