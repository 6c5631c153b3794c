// The backend behind HAProxy (examples/haproxy/haproxy.cfg.template), as docs/nginx-haproxy.md shows it:
//   node examples/haproxy/backend.mjs            # PORT defaults to 3000
// HAProxy keeps idle upstream connections with no idle timeout of its own, so there is no proxy
// timeout for `behind` to outlive: the backend's own `timeout` closes them, and HAProxy drops a
// pooled connection the backend closed. A long timeout (nginx's 60 s and 5 more) keeps closes rare.
import http from 'node:http'
import { pathToFileURL } from 'node:url'
import { createKeepAlive, gracefulShutdown } from '@keepalive/core'

/** The options the guide recommends behind HAProxy; haproxy.test.ts starts its backend with them. */
export const options = { timeout: 65 }

export function createBackend(keepAliveOptions = options) {
  const ka = createKeepAlive(keepAliveOptions)
  const server = http.createServer((req, res) => {
    ka.handle(req, res)
    res.setHeader('content-type', 'text/plain')
    res.end('hello\n')
  })
  ka.attach(server)
  return { ka, server }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { ka, server } = createBackend()
  gracefulShutdown(server, { keepAlive: ka, readinessDelay: 1 })
  server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    console.log(`listening on http://127.0.0.1:${server.address().port}`)
  })
}
