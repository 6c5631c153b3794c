// Koa with keepalive: `node examples/koa/server.mjs` (PORT defaults to 3000).
// Every response advertises `Keep-Alive: timeout=5, max=<left>`; SIGTERM or Ctrl-C drains
// the connections, prints one report line and exits.
import http from 'node:http'
import Koa from 'koa'
import { gracefulShutdown, keepAlive } from '@keepalive/koa'

const app = new Koa()
const ka = keepAlive() // the defaults: timeout 5 s, max 1000 requests per connection

app.use(ka)
app.use((ctx) => {
  if (ctx.path === '/ready') {
    ctx.respond = false // the readiness handler writes the raw response itself
    graceful.readiness(ctx.req, ctx.res) // 200 `ok`, then 503 once shutdown has started
  } else if (ctx.path === '/stats') {
    ctx.body = ka.stats()
  } else {
    ctx.body = 'hello\n'
  }
})

// app.callback() composes the middleware registered so far: create the server after app.use().
const server = http.createServer(app.callback())
// Behind Kubernetes, add `readinessDelay: 5` so the endpoints controller stops routing here first.
const graceful = gracefulShutdown(server, { keepAlive: ka })

server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})
