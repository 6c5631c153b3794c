// One file, both roles. Run it with `node examples/cluster/app.mjs` (startCluster forks the workers:
// SIGHUP reloads them one at a time, SIGTERM/SIGINT drains them all) or under PM2 with
// `pm2 start examples/cluster/app.mjs -i 4 --wait-ready --kill-timeout 12000` (`pm2 reload` then
// drains each old worker). PORT: the app (default 3000); ADMIN_PORT: cluster stats and metrics on the
// primary (default 9100); WORKERS: how many (default: one per core).
import cluster from 'node:cluster'
import http from 'node:http'
import { Registry } from 'prom-client'
import { createKeepAlive } from '@keepalive/core'
import { joinCluster, startCluster } from '@keepalive/cluster'
import { createClusterMetrics } from '@keepalive/cluster/metrics'
import { registerKeepAliveMetrics } from '@keepalive/prometheus'

const port = Number(process.env.PORT ?? 3000)
const adminPort = Number(process.env.ADMIN_PORT ?? 9100)

// Under PM2 every instance is a node:cluster worker of PM2's own daemon: only the worker part runs.
if (cluster.isPrimary && process.env.pm_id === undefined) {
  const app = startCluster({ workers: process.env.WORKERS ? Number(process.env.WORKERS) : undefined, timeout: 10 })
  const metrics = createClusterMetrics()
  const admin = http.createServer(async (req, res) => {
    if (req.url === '/metrics') return metrics.handler(req, res)
    if (req.url === '/stats') {
      res.setHeader('Content-Type', 'application/json')
      return res.end(JSON.stringify(await app.stats()))
    }
    res.statusCode = 404
    res.end()
  })
  admin.listen(adminPort, '127.0.0.1')
  await app.ready
  console.log(`listening on http://127.0.0.1:${port}; stats and metrics on http://127.0.0.1:${adminPort}`)
} else {
  const ka = createKeepAlive({ timeout: 5 })
  const registry = new Registry()
  registerKeepAliveMetrics(ka, { registry })
  const server = http.createServer((req, res) => {
    ka.handle(req, res)
    res.end(`hello from ${process.pid}\n`)
  })
  ka.attach(server)
  // Reports listening to the primary (or 'ready' to PM2), answers stats and metrics, drains when told.
  joinCluster(ka, { server, metrics: registry })
  server.listen(port, '127.0.0.1')
}
