// A proxy still routing to a draining server (#16, measured behind nginx): a pooled connection whose
// response says `Connection: close` makes it open a new connection for its next request. Opened
// after the turn's poll and before the listener closes, that connection is reset by the close, with
// the request already written on it (a POST becomes a 502). Here the proxy is a worker thread, and
// the server's turn is held (Atomics.wait) until the proxy has written its next request, as a busy
// machine holds it: the response written in the drain's first turn must keep the connection, so the
// next request goes on it and is answered (docs/architecture.md §7).
import http from 'node:http'
import { Worker } from 'node:worker_threads'
import { createKeepAlive } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { useResources } from '../helpers/resources.js'

const resources = useResources()

/**
 * The proxy: one pooled connection; GET /stop on it, then its next request on the same connection
 * if the response kept it, else on a new one. It sets the shared flag once that request is written
 * and posts what the next request got: its status line, or the socket error.
 */
const PROXY = `
const net = require('node:net')
const { workerData, parentPort } = require('node:worker_threads')
const flag = new Int32Array(workerData.shared)
const request = (path) => 'GET ' + path + ' HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'
function written() {
  Atomics.store(flag, 0, 1)
  Atomics.notify(flag, 0)
}
function next(socket) {
  let text = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk) => {
    text += chunk
    if (text.includes('\\r\\n\\r\\n')) {
      parentPort.postMessage({ status: text.split('\\r\\n')[0] })
      socket.destroy()
    }
  })
  socket.on('error', (error) => parentPort.postMessage({ error: error.code ?? error.message }))
  socket.on('end', () => text.includes('\\r\\n\\r\\n') || parentPort.postMessage({ error: 'closed without a response' }))
}
const pooled = net.connect(workerData.port, '127.0.0.1', () => pooled.write(request('/stop')))
let head = ''
pooled.setEncoding('latin1')
pooled.on('data', function first(chunk) {
  head += chunk
  if (!head.includes('\\r\\n\\r\\n')) return
  pooled.off('data', first)
  if (/\\r\\nconnection: close\\r\\n/i.test(head)) {
    const fresh = net.connect(workerData.port, '127.0.0.1', () => fresh.write(request('/next'), written))
    next(fresh)
    fresh.on('error', written)
  } else {
    next(pooled)
    pooled.write(request('/next'), written)
  }
})
`

describe('the drain and the listener close', () => {
  it('answers the next request of a proxy that was answered while the listener was still open', async () => {
    const ka = createKeepAlive()
    const shared = new SharedArrayBuffer(4)
    const flag = new Int32Array(shared)
    let drained: Promise<unknown> | null = null
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      if (req.url !== '/stop') return void res.end('next')
      drained = ka.shutdown({ timeout: 5 })
      res.end('stopping')
      // The rest of this turn takes as long as the proxy needs to send its next request (bounded).
      Atomics.wait(flag, 0, 0, 5000)
    })
    ka.attach(server)
    const port = await resources.listen(server)
    const proxy = resources.add(new Worker(PROXY, { eval: true, workerData: { port, shared } }), (w) => w.terminate())
    const outcome = await new Promise<{ status?: string; error?: string }>((resolve, reject) => {
      proxy.once('message', resolve)
      proxy.once('error', reject)
    })
    expect(Atomics.load(flag, 0)).toBe(1)
    expect(outcome).toEqual({ status: 'HTTP/1.1 200 OK' })
    expect(await drained).toMatchObject({ forced: 0 })
    expect(server.listening).toBe(false)
  })
})
