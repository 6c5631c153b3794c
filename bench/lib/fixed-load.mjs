// `node fixed-load.mjs <port> <connections> [period]`: a keep-alive client of a fixed number of
// requests, for the instructions suite (which needs a count of requests, not a duration: see
// suites/instructions.mjs). It keeps `connections` lanes, each one request at a time on its own
// keep-alive connection, for as long as it runs, so that connections live across the suite's
// windows as a real client's do, and a server that closes one after `period` requests (keepalive's
// default `max: 1000`, or Node's `maxRequestsPerSocket: 1000`) is reconnected to mid-window.
// Reads one command per line on stdin and answers each with one JSON line on stdout:
//   stagger   lane i sends period - round(i * period / connections) requests (lane 0 a whole
//             period, the last one period / connections), so that the lanes reach their period at
//             evenly spread moments rather than all in one window. The requests are spread over
//             `period` ticks, each lane sending in its share of them, so that no lane waits long
//             enough for a server's idle timeout to close it: {"errors", "opened", "requests"}
//   <n>       exactly n GET / spread over the lanes: {"errors", "opened": new connections, "requests"}
// It exits when stdin ends.
import http from 'node:http'
import net from 'node:net'
import { createInterface } from 'node:readline'

const [port, connections, period = 1000] = process.argv.slice(2).map(Number)
let opened = 0
let errors = 0

/** One lane: its own agent of one socket, so each lane is one connection at a time. */
function lane() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  agent.createConnection = (options, callback) => {
    opened++
    return net.createConnection(options, callback)
  }
  const one = () =>
    new Promise((resolve) => {
      http
        .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          if (res.statusCode !== 200) errors++
          res.resume()
          res.on('end', resolve)
        })
        .on('error', () => {
          errors++
          resolve()
        })
    })
  return {
    agent,
    async send(n) {
      for (let i = 0; i < n; i++) await one()
    },
  }
}

const lanes = Array.from({ length: connections }, lane)

/** Runs `send` as one batch of `counts[i]` requests per lane: the errors and connections opened meanwhile. */
async function counted(counts, send) {
  opened = 0
  errors = 0
  await send()
  return { errors, opened, requests: counts.reduce((sum, n) => sum + n, 0) }
}

/** Each lane sends its count, all at once: a lane that is done waits for the others. */
function batch(counts) {
  return counted(counts, () => Promise.all(lanes.map((l, i) => l.send(counts[i]))))
}

/** Lane i sends `counts[i]` requests spread evenly over `ticks` ticks; a tick ends when its requests have. */
function spread(counts, ticks) {
  return counted(counts, async () => {
    for (let t = 0; t < ticks; t++) {
      const due = lanes.filter((_, i) => Math.floor(((t + 1) * counts[i]) / ticks) > Math.floor((t * counts[i]) / ticks))
      await Promise.all(due.map((l) => l.send(1)))
    }
  })
}

const commands = createInterface({ input: process.stdin })
for await (const line of commands) {
  const command = line.trim()
  if (command === '') continue
  const n = Number(command)
  const result =
    command === 'stagger'
      ? await spread(
          lanes.map((_, i) => period - Math.round((i * period) / connections)),
          period,
        )
      : await batch(lanes.map((_, i) => Math.floor(n / connections) + (i < n % connections ? 1 : 0)))
  process.stdout.write(`${JSON.stringify(result)}\n`)
}
for (const l of lanes) l.agent.destroy()
