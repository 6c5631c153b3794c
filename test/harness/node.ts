import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import { setTimeout as delay } from 'node:timers/promises'
import { createKeepAlive } from '@keepalive/core'
import { delayOf, listenerHarness, type Harness } from './harness.js'

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) })
  res.end(body)
}

/** The route contract of harness.ts on plain node:http. */
async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname
  if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 404, 'Not Found')
  switch (path) {
    case '/':
      return text(res, 200, 'ok')
    case '/stream':
      res.writeHead(200, { 'Content-Type': 'text/plain' })
      res.write('hello ')
      await delay(0)
      res.end('world')
      return
    case '/app-keepalive':
      res.setHeader('Keep-Alive', 'timeout=30')
      return text(res, 200, 'ok')
    case '/app-close':
      res.setHeader('Connection', 'close')
      return text(res, 200, 'ok')
    case '/slow':
      await delay(delayOf(req.url))
      return text(res, 200, 'ok')
    case '/throw':
      throw new Error('boom')
    default:
      return text(res, 404, 'Not Found')
  }
}

/** Raw node:http: `createKeepAlive` + `handle(req, res)` in the request handler + `attach(server)`. */
export const nodeHarness: Harness = listenerHarness('node:http', (options) => {
  const controller = createKeepAlive(options)
  const server = http.createServer((req, res) => {
    controller.handle(req, res)
    // Raw node has no framework to answer a throwing handler: this is its error response.
    route(req, res).catch(() => {
      if (!res.headersSent) text(res, 500, 'Internal Server Error')
      else res.destroy()
    })
  })
  return { controller, app: { listen: (port, host) => server.listen(port, host) } }
})
