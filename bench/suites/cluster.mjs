// Rolling reload of 4 node:cluster workers under continuous keep-alive load (an undici Pool of 32
// connections, GET and POST mixed): @keepalive/cluster's reload() against the naive reload (fork,
// wait for 'listening', SIGINT, server.close()). Measured: requests lost (errors, resets, or no answer
// within 10 s) and the time from the call until the last old worker exited. The apps are the
// cluster suite's fixtures (test/cluster/fixtures), run from the built packages.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { Pool } from 'undici'
import { fmtInt, fmtMs, fmtSpread, median, printTable, rootDir } from '../lib/util.mjs'

const fixtures = join(rootDir, 'test', 'cluster', 'fixtures')
const VARIANTS = [
  { label: 'keepalive: startCluster reload()', script: 'primary.mjs' },
  { label: 'naive: SIGINT → server.close()', script: 'naive-primary.mjs' },
]

async function freePort() {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  await once(server, 'close')
  return port
}

async function startPrimary(script, port, workers) {
  const child = fork(join(fixtures, script), [], {
    env: { ...process.env, PORT: String(port), WORKERS: String(workers) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  const exited = once(child, 'exit')
  await new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message.event !== 'ready') return
      child.off('message', onMessage)
      resolve()
    }
    child.on('message', onMessage)
    exited.then(([code, signal]) => reject(new Error(`${script} exited (${code ?? signal}) before ready`)))
  })
  let next = 0
  const call = (cmd) =>
    new Promise((resolve, reject) => {
      const id = next++
      const onMessage = (message) => {
        if (message.id !== id) return
        child.off('message', onMessage)
        if (message.error) reject(new Error(message.error))
        else resolve(message.result)
      }
      child.on('message', onMessage)
      child.send({ id, cmd })
    })
  return {
    call,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGKILL') // its workers exit once the IPC channel closes
      await exited
    },
  }
}

function startLoad(origin, connections) {
  const pool = new Pool(origin, { connections, pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000 })
  const body = 'x'.repeat(512)
  const state = { ok: 0, lost: 0, running: true }
  const waiters = []
  async function loop(n) {
    for (let i = n; state.running; i++) {
      const post = i % 2 === 0
      try {
        const response = await pool.request({ method: post ? 'POST' : 'GET', path: '/', ...(post ? { body } : {}) })
        await response.body.text()
        if (response.statusCode === 200) state.ok++
        else state.lost++
      } catch {
        state.lost++
      }
      for (const w of waiters.filter((w) => state.ok >= w.at)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
    }
  }
  const loops = Array.from({ length: connections }, (_, n) => loop(n))
  return {
    answered: (n) => new Promise((resolve) => waiters.push({ at: state.ok + n, resolve })),
    async stop() {
      state.running = false
      await Promise.all(loops)
      await pool.close()
      return { ok: state.ok, lost: state.lost }
    },
  }
}

async function once1(variant, workers) {
  const port = await freePort()
  const primary = await startPrimary(variant.script, port, workers)
  try {
    const load = startLoad(`http://127.0.0.1:${port}`, 32)
    await load.answered(1000)
    const t0 = performance.now()
    await primary.call('reload')
    const reloadMs = performance.now() - t0
    await load.answered(500)
    const { ok, lost } = await load.stop()
    return { reloadMs, ok, lost }
  } finally {
    await primary.stop()
  }
}

export async function run(ctx) {
  const rounds = ctx.pairs ?? (ctx.quick ? 1 : 3)
  const workers = 4
  const runs = Object.fromEntries(VARIANTS.map((v) => [v.label, []]))
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()
    for (const variant of order) runs[variant.label].push(await once1(variant, workers))
  }
  printTable(
    `rolling reload of ${workers} workers under keep-alive load (undici Pool, 32 connections, GET and POST): ${rounds} round(s), order alternated`,
    ['variant', 'requests', 'lost', 'reload time', 'spread'],
    VARIANTS.map(({ label }) => {
      const r = runs[label]
      const times = r.map((x) => x.reloadMs)
      return [
        label,
        fmtInt(r.reduce((a, x) => a + x.ok + x.lost, 0)),
        `${fmtInt(r.reduce((a, x) => a + x.lost, 0))} (${r.map((x) => x.lost).join(', ')})`,
        fmtMs(median(times)),
        fmtSpread(times),
      ]
    }),
  )
  return { rounds, workers, runs }
}
