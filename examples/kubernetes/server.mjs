// The Express server of docs/kubernetes.md: `node examples/kubernetes/server.mjs` (PORT defaults to 3000).
// Behind ingress-nginx (its upstream keep-alive timeout is 60 s); /ready is the readiness probe,
// wired to gracefulShutdown's readiness handler; /live is the liveness probe. On SIGTERM (after the
// preStop sleep in deployment.yaml) it reports not-ready for READINESS_DELAY seconds while serving
// as usual, then drains for at most DRAIN_TIMEOUT seconds and exits. kubernetes.test.ts checks that
// deployment.yaml's terminationGracePeriodSeconds covers the preStop sleep, both and a margin.
import http from 'node:http'
import express from 'express'
import { gracefulShutdown, keepAlive } from '@keepalive/express'

/** Seconds /ready answers 503 while serving as usual, so probing load balancers stop routing here. */
const READINESS_DELAY = 5
/** Seconds the drain may take before what is left is destroyed (gracefulShutdown's default). */
const DRAIN_TIMEOUT = 10

const app = express()
const server = http.createServer(app)
const ka = keepAlive({ behind: { idleTimeout: 60 } }) // ingress-nginx upstream-keepalive-timeout
const { readiness } = gracefulShutdown(server, { keepAlive: ka, readinessDelay: READINESS_DELAY, timeout: DRAIN_TIMEOUT })

app.use(ka)
app.get('/', (req, res) => res.send('hello\n'))
app.get('/ready', readiness) // 200 `ok`, then 503 `shutting down` from SIGTERM on
app.get('/live', (req, res) => res.send('ok')) // liveness stays 200 during the drain: never restart a draining pod

server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})
