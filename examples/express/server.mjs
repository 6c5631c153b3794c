// Express with keepalive: `node examples/express/server.mjs` (PORT defaults to 3000).
// Every response advertises `Keep-Alive: timeout=5, max=<left>`; SIGTERM or Ctrl-C drains
// the connections, prints one report line and exits.
import http from 'node:http'
import express from 'express'
import { gracefulShutdown, keepAlive } from '@keepalive/express'

const app = express()
const server = http.createServer(app)
const ka = keepAlive() // the defaults: timeout 5 s, max 1000 requests per connection
// Behind Kubernetes, add `readinessDelay: 5` so the endpoints controller stops routing here first.
const { readiness } = gracefulShutdown(server, { keepAlive: ka })

app.use(ka)
app.get('/', (req, res) => res.send('hello\n'))
app.get('/ready', readiness) // 200 `ok`, then 503 once shutdown has started
app.get('/stats', (req, res) => res.json(ka.stats()))

server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})
