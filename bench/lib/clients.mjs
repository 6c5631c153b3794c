// A bench client in its own process: holds many idle keep-alive connections, sends slow in-flight
// requests, and plays fresh clients, over raw sockets (exact HTTP/1.1 bytes, no client pool).
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { serveCommands } from './child.mjs'

/** Idle keep-alive connections this client holds open. */
const held = new Set()
let slow = []

const noop = () => {}

function connect(port, timeoutMs) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' })
    socket.on('error', noop)
    const timer = setTimeout(() => done('connect-timeout'), timeoutMs)
    function done(error) {
      clearTimeout(timer)
      socket.off('connect', onConnect)
      socket.off('error', onError)
      socket.off('close', onClose)
      if (error !== null) socket.destroy()
      resolve({ socket, error })
    }
    const onConnect = () => done(null)
    const onError = (e) => done(e.code ?? 'error')
    const onClose = () => done('closed')
    socket.once('connect', onConnect)
    socket.on('error', onError)
    socket.once('close', onClose)
  })
}

/** Sends one GET and reads its response; resolves `{ error, status }` (error null when complete). */
function exchange(socket, path, timeoutMs) {
  return new Promise((resolve) => {
    let buffer = ''
    let expected = -1
    let status = 0
    const timer = setTimeout(() => finish('timeout'), timeoutMs)
    function finish(error) {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.off('error', onError)
      resolve({ error, status })
    }
    function onData(chunk) {
      buffer += chunk.toString('latin1')
      if (expected < 0) {
        const end = buffer.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buffer.slice(0, end)
        status = Number(head.slice(9, 12))
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)
        if (length !== null) expected = end + 4 + Number(length[1])
        else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) expected = Infinity
        else expected = end + 4
      }
      if (expected === Infinity ? buffer.endsWith('0\r\n\r\n') : buffer.length >= expected) finish(null)
    }
    const onClose = () => finish('closed')
    const onError = (e) => finish(e.code ?? 'error')
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.on('error', onError)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  })
}

/** Runs `task(i)` for i in [0, n) with at most `limit` at a time. */
async function mapLimit(n, limit, task) {
  const results = new Array(n)
  let next = 0
  async function worker() {
    while (next < n) {
      const i = next++
      results[i] = await task(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker))
  return results
}

function countErrors(results) {
  const errors = {}
  for (const r of results) if (r.error !== null) errors[r.error] = (errors[r.error] ?? 0) + 1
  return errors
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

function hold(socket) {
  held.add(socket)
  socket.once('close', () => held.delete(socket))
}

serveCommands({
  /** Opens `n` connections, each answering one request, and keeps them idle. */
  async open({ port, n, concurrency = 200, timeoutMs = 10_000 }) {
    const t0 = performance.now()
    const results = await mapLimit(n, concurrency, async () => {
      const { socket, error } = await connect(port, timeoutMs)
      if (error !== null) return { error }
      const r = await exchange(socket, '/', timeoutMs)
      if (r.error === null && !socket.destroyed) hold(socket)
      else socket.destroy()
      return r
    })
    return { opened: held.size, failed: results.filter((r) => r.error !== null).length, errors: countErrors(results), ms: performance.now() - t0 }
  },

  /** Sends one more request on every held connection, so each was used just now. */
  async touch({ concurrency = 200, timeoutMs = 10_000 }) {
    const sockets = [...held]
    const t0 = performance.now()
    const results = await mapLimit(sockets.length, concurrency, (i) => exchange(sockets[i], '/', timeoutMs))
    return { ok: results.filter((r) => r.error === null).length, failed: results.filter((r) => r.error !== null).length, ms: performance.now() - t0 }
  },

  /** Opens `n` connections and sends GET /slow on each; the answers are collected by slowResults. */
  async startSlow({ port, n, timeoutMs = 20_000 }) {
    const connections = await mapLimit(n, n, () => connect(port, timeoutMs))
    slow = connections.map(({ socket, error }) => (error !== null ? Promise.resolve({ error }) : exchange(socket, '/slow', timeoutMs)))
    return { sent: connections.filter((c) => c.error === null).length }
  },

  async slowResults() {
    const results = await Promise.all(slow)
    slow = []
    return {
      ok: results.filter((r) => r.error === null && r.status === 200).length,
      failed: results.filter((r) => r.error !== null || r.status !== 200).length,
      errors: countErrors(results),
    }
  },

  /** `n` fresh clients: each opens a new connection, sends one request and hangs up. */
  async fresh({ port, n, concurrency = 10, timeoutMs = 2000 }) {
    const results = await mapLimit(n, concurrency, async () => {
      const t0 = performance.now()
      const { socket, error } = await connect(port, timeoutMs)
      if (error !== null) return { error, ms: performance.now() - t0 }
      const r = await exchange(socket, '/', timeoutMs)
      socket.destroy()
      return { error: r.error ?? (r.status === 200 ? null : `status ${r.status}`), ms: performance.now() - t0 }
    })
    const ok = results.filter((r) => r.error === null)
    const latencies = ok.map((r) => r.ms).sort((a, b) => a - b)
    return {
      ok: ok.length,
      failed: results.length - ok.length,
      errors: countErrors(results),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
    }
  },

  held: () => ({ open: held.size }),

  closeAll() {
    for (const socket of held) socket.destroy()
    held.clear()
    return null
  },
})
