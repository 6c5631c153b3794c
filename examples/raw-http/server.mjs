// Plain node:http with keepalive: `node examples/raw-http/server.mjs` (PORT defaults to 3000).
// Every response advertises `Keep-Alive: timeout=5, max=<left>`; SIGTERM or Ctrl-C drains
// the connections, prints one report line and exits.
import http from 'node:http'
import { createKeepAlive, gracefulShutdown } from '@keepalive/core'

const ka = createKeepAlive() // the defaults: timeout 5 s, max 1000 requests per connection

const server = http.createServer((req, res) => {
  ka.handle(req, res)
  if (req.url === '/ready') return graceful.readiness(req, res) // 200 `ok`, then 503 once shutdown has started
  if (req.url === '/stats') {
    res.setHeader('Content-Type', 'application/json')
    return res.end(JSON.stringify(ka.stats()))
  }
  res.end('hello\n')
})
ka.attach(server)
// Behind Kubernetes, add `readinessDelay: 5` so the endpoints controller stops routing here first.
const graceful = gracefulShutdown(server, { keepAlive: ka })

server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})
