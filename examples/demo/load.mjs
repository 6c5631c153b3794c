// The demo's load generator, run in a worker thread so the server's event loop (and its measured
// utilisation) is the server's own. Clients are loops over one undici Pool of keep-alive connections;
// the main thread sets how many loops run and what they request, and reads the counters back.
import { setTimeout as sleep } from 'node:timers/promises'
import { parentPort, workerData } from 'node:worker_threads'
import { Pool } from 'undici'

// undici stops reusing a connection whose advertised timeout is within keepAliveTimeoutThreshold
// (2 s by default) of running out; 0.5 s keeps it reusing down to timeout=1, so what changes in
// the demo is the server's policy, not the client's caution.
const pool = new Pool(workerData.url, { connections: workerData.connections, pipelining: 1, keepAliveTimeoutThreshold: 500 })

let load = { phase: 'idle', users: 0, think: 0, wait: 0, cpu: 0 }
let stopping = false
const users = new Set()
const counters = {
  keepAlive: 0,
  close: 0,
  /** The last response's connection header(s), as a client saw them. */
  lastSent: '',
  /** Per phase: responses, connections refused (the server had stopped accepting), requests that failed otherwise. */
  phases: {},
  lostErrors: [],
}

function phaseCounters() {
  return (counters.phases[load.phase] ??= { answered: 0, refused: 0, lost: 0 })
}

async function user(id) {
  while (!stopping && id < load.users) {
    const { wait, cpu, think } = load
    try {
      const response = await pool.request({ method: 'GET', path: `/work?wait=${wait}&cpu=${cpu}` })
      await response.body.text()
      phaseCounters().answered++
      const keepAlive = response.headers['keep-alive']
      if (response.headers.connection === 'close') counters.close++
      else counters.keepAlive++
      counters.lastSent = keepAlive === undefined ? 'Connection: close' : `Keep-Alive: ${keepAlive}`
    } catch (error) {
      if (error.code === 'ECONNREFUSED') {
        phaseCounters().refused++ // only once the server has stopped accepting: a load balancer retries elsewhere
        return
      }
      phaseCounters().lost++
      const reason = error.code ?? error.message
      if (!counters.lostErrors.includes(reason)) counters.lostErrors.push(reason)
      if (load.phase === 'shutdown') return
    }
    if (think > 0) await sleep(think * (0.5 + Math.random()))
  }
}

function startUsers() {
  for (let id = 0; id < load.users; id++) {
    if (users.has(id)) continue
    users.add(id)
    void user(id).finally(() => users.delete(id))
  }
}

const report = setInterval(() => parentPort.postMessage({ type: 'counters', counters }), 100)

parentPort.on('message', async (message) => {
  if (message.type === 'load') {
    load = message.load
    startUsers()
  } else if (message.type === 'stop') {
    // Clients end on their own once a new connection is refused; give them a moment to find out.
    const deadline = Date.now() + 2000
    while (users.size > 0 && Date.now() < deadline) await sleep(10)
    stopping = true
    clearInterval(report)
    while (users.size > 0) await sleep(10)
    await pool.destroy()
    parentPort.postMessage({ type: 'done', counters })
    parentPort.close()
  }
})
