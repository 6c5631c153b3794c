// One Express 5 backend behind nginx, started by rolling-restart.mjs (or by hand):
//   node examples/nginx/backend.mjs --port 3001 --name a --idle-timeout 60
//   node examples/nginx/backend.mjs --port 3001 --name a --naive
// Default: @keepalive/express told nginx's upstream keepalive_timeout (`behind`), so it never closes a
// connection nginx may still reuse, and gracefulShutdown drains on SIGTERM: stop accepting (nginx's next
// connect is refused and it moves on to the other backend), answer what is in flight and whatever
// arrives on open connections with `Connection: close`, close idle connections once quiet (1 s), exit.
// --naive: the usual setup: plain Express, server.keepAliveTimeout below nginx's keepalive_timeout,
// and on SIGTERM server.close() then process.exit().
// Prints `listening on http://127.0.0.1:<port>` once it accepts connections.
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { parseArgs } from 'node:util'
import express from 'express'
import { gracefulShutdown, keepAlive } from '@keepalive/express'

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '3000' },
    name: { type: 'string', default: 'backend' },
    naive: { type: 'boolean', default: false },
    // nginx's upstream keepalive_timeout, in seconds.
    'idle-timeout': { type: 'string', default: '60' },
    // Seconds to keep serving as usual after SIGTERM, reporting not-ready, before the drain (see README.md).
    'readiness-delay': { type: 'string', default: '1' },
    // --naive only: server.keepAliveTimeout in seconds.
    'keep-alive-timeout': { type: 'string', default: '1' },
    // Milliseconds each request waits, standing in for a database call, so requests are in flight when SIGTERM comes.
    'work-ms': { type: 'string', default: '20' },
    // Print, when the listener closes, how many connections the kernel had accepted that Node had not
    // yet picked up (the listening socket's accept queue, read from /proc/net/tcp): closing the
    // listener resets each of them, with whatever request the client already wrote on it.
    'trace-accept-queue': { type: 'boolean', default: false },
  },
})

const name = args.name
const workMs = Number(args['work-ms'])
const work = () => new Promise((resolve) => setTimeout(resolve, workMs))

const app = express()
const server = http.createServer(app)

if (args.naive) {
  server.keepAliveTimeout = Number(args['keep-alive-timeout']) * 1000
  process.on('SIGTERM', () => {
    server.close() // stops accepting; Node 19+ also destroys the sockets it sees as idle
    process.exit(0)
  })
} else {
  const ka = keepAlive({ behind: { idleTimeout: Number(args['idle-timeout']) } })
  app.use(ka)
  gracefulShutdown(server, {
    keepAlive: ka,
    readinessDelay: Number(args['readiness-delay']),
    // nginx hands each request to a pooled connection, so it runs its whole pool into the drain's
    // `Connection: close` within a few dozen requests; 1 s leaves room for an nginx that is starved of
    // CPU before the drain closes what it has not reached (README.md: "The idle close against a stalled proxy").
    drainQuiet: 1,
    logger: (line) => console.log(`${name}: ${line}`),
  })
}

app.get('/', async (req, res) => {
  await work()
  res.json({ backend: name })
})

app.post('/orders', express.json(), async (req, res) => {
  await work()
  res.status(201).json({ backend: name, order: req.body })
})

/** The accept queue of the socket listening on `port` (Linux: rx_queue of its LISTEN row), or null. */
function acceptQueue(port) {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text
    try {
      text = readFileSync(table, 'latin1')
    } catch {
      return null // not Linux
    }
    for (const line of text.split('\n').slice(1)) {
      const [, local, , state, queues] = line.trim().split(/\s+/)
      if (state === '0A' && local?.endsWith(`:${hexPort}`)) return parseInt(queues.split(':')[1], 16)
    }
  }
  return null
}

if (args['trace-accept-queue']) {
  const close = server.close
  server.close = function (...rest) {
    if (this.listening) console.log(`${name}: accept queue at close: ${acceptQueue(this.address().port)}`)
    return close.apply(this, rest)
  }
}

server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})
