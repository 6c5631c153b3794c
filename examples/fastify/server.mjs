// Fastify with keepalive: `node examples/fastify/server.mjs` (PORT defaults to 3000).
// Every response advertises `Keep-Alive: timeout=5, max=<left>` (not Fastify's own 72 s);
// SIGTERM or Ctrl-C drains the connections, prints one report line and exits.
import Fastify from 'fastify'
import keepAlive, { gracefulShutdown } from '@keepalive/fastify'

const app = Fastify()
await app.register(keepAlive) // the defaults: timeout 5 s, max 1000 requests per connection

// The plugin also drains in a preClose hook, so a bare `app.close()` is graceful too. Here the
// signal handler drains first and calls app.close() only once every connection is gone: Fastify
// marks itself closing (return503OnClosing) only when close() starts, so no request that arrives
// during the drain is refused with a 503; it is answered normally, with `Connection: close`.
// close() then finds the drain done and runs the app's onClose hooks.
const { readiness } = gracefulShutdown(app.server, {
  keepAlive: app.keepAlive,
  onShutdown: () => app.close(),
})

app.get('/', async () => 'hello\n')
app.get('/ready', (request, reply) => {
  reply.hijack() // the readiness handler writes the raw response itself
  readiness(request.raw, reply.raw) // 200 `ok`, then 503 once shutdown has started
})
app.get('/stats', async () => app.keepAlive.stats())

await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
console.log(`listening on http://127.0.0.1:${app.server.address().port}`)
