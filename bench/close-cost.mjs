// `node bench/close-cost.mjs [sockets] [rounds]`: what closing many idle keep-alive sockets costs the
// server, apart from any waiting: a bare node:http server that destroys every idle socket in one loop
// (what http-terminator and stoppable do at the call), keepalive's drain with `drainQuiet: 0`, and
// keepalive's drain at its default quiet period. Each variant is a fresh server process pinned to
// the server core; this process opens the sockets (one request each) from the client core, then the
// server closes them and reports the time until the last one closed and its CPU time (user, system).
import { fork, spawnSync } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { fmtMs, median, pinning, printTable } from './lib/util.mjs'

if (process.argv[2] === '--server') {
  const mode = process.argv[3]
  const { createKeepAlive } = await import('@keepalive/core')
  const ka = mode === 'destroy' ? null : createKeepAlive({ timeout: 60, drainQuiet: mode === 'keepalive-quiet-0' ? 0 : 0.2 })
  const sockets = new Set()
  let allClosed = null
  const server = http.createServer((req, res) => {
    ka?.handle(req, res)
    res.end('ok')
  })
  server.keepAliveTimeout = 60_000
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => {
      sockets.delete(socket)
      if (sockets.size === 0) allClosed?.()
    })
  })
  server.listen(0, '127.0.0.1', () => {
    ka?.attach(server)
    process.send({ port: server.address().port })
  })
  process.on('message', async () => {
    const n = sockets.size
    const cpu = process.cpuUsage()
    const t0 = performance.now()
    const closed = new Promise((resolve) => (allClosed = resolve))
    if (ka !== null) void ka.shutdown({ timeout: 10 })
    else {
      server.close()
      for (const socket of sockets) socket.destroy()
    }
    await closed
    const ms = performance.now() - t0
    const { user, system } = process.cpuUsage(cpu)
    process.send({ n, ms, userMs: user / 1000, systemMs: system / 1000 })
    setTimeout(() => process.exit(0), 50)
  })
} else if (pinning() !== null && process.env.KEEPALIVE_CLOSE_COST_PINNED !== '1') {
  // The client side runs on the load generator's core: start again there.
  const again = spawnSync('taskset', ['-c', String(pinning().client), process.execPath, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, KEEPALIVE_CLOSE_COST_PINNED: '1' },
  })
  process.exit(again.status ?? 1)
} else {
  const count = Number(process.argv[2] ?? 10_000)
  const rounds = Number(process.argv[3] ?? 3)
  const pins = pinning()
  const variants = ['destroy', 'keepalive-quiet-0', 'keepalive']
  const runs = Object.fromEntries(variants.map((v) => [v, []]))
  for (let round = 0; round < rounds; round++) {
    for (const mode of variants) {
      const child = fork(fileURLToPath(import.meta.url), ['--server', mode], {
        ...(pins === null ? {} : { execPath: 'taskset', execArgv: ['-c', String(pins.server), process.execPath] }),
      })
      const { port } = await new Promise((resolve) => child.once('message', resolve))
      const sockets = []
      for (let i = 0; i < count; i += 500) {
        await Promise.all(
          Array.from(
            { length: Math.min(500, count - i) },
            () =>
              new Promise((resolve, reject) => {
                const socket = net.connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: bench\r\n\r\n'))
                socket.once('data', resolve)
                socket.on('error', reject)
                sockets.push(socket)
              }),
          ),
        )
      }
      // Let the server finish what the last requests left it (their responses' ends, a GC) first.
      await new Promise((resolve) => setTimeout(resolve, 500))
      child.send('close')
      runs[mode].push(await new Promise((resolve) => child.once('message', resolve)))
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => child.once('exit', resolve))
    }
  }
  printTable(
    `closing ${count} idle keep-alive sockets, ${rounds} round(s): time until the last closed, and the server's CPU time meanwhile (medians)`,
    ['variant', 'last socket closed', 'user CPU', 'system CPU'],
    variants.map((v) => [
      v,
      fmtMs(median(runs[v].map((r) => r.ms))),
      fmtMs(median(runs[v].map((r) => r.userMs))),
      fmtMs(median(runs[v].map((r) => r.systemMs))),
    ]),
  )
  process.exit(0)
}
