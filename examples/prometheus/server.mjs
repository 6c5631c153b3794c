// Prometheus metrics for keepalive: `node examples/prometheus/server.mjs` (PORT defaults to 3000),
// then scrape http://127.0.0.1:3000/metrics. Connections by state, requests, closes by reason,
// requests per connection, load and the advertised timeout and max are read at scrape time.
import http from 'node:http'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { createKeepAlive, gracefulShutdown } from '@keepalive/core'
import { registerKeepAliveMetrics } from '@keepalive/prometheus'

const ka = createKeepAlive() // the defaults: timeout 5 s, max 1000 requests per connection
const registry = new Registry()
collectDefaultMetrics({ register: registry })
registerKeepAliveMetrics(ka, { registry }) // keepalive_connections, keepalive_connection_duration_seconds, …

const server = http.createServer(async (req, res) => {
  ka.handle(req, res)
  if (req.url === '/metrics') {
    res.setHeader('Content-Type', registry.contentType)
    return res.end(await registry.metrics())
  }
  res.end('hello\n')
})
ka.attach(server)
gracefulShutdown(server, { keepAlive: ka })

server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})
