// keepalive, live: `pnpm demo` (builds the packages first), or after a build:
//   node examples/demo.mjs [--framework express|koa|fastify|raw] [--json] [--quick]
//
// Starts a server with keepalive's load-adaptive policy in this process, drives a real keep-alive
// load against it (an undici Pool in a worker thread), and shows what the server advertises and why,
// in four phases: steady load, a load spike, recovery, graceful shutdown. With a TTY the view redraws
// in place; without one it prints one plain line per tick; --json prints one JSON object per line.
import { once } from 'node:events'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { frameworks, start } from './demo/servers.mjs'

const { values: args } = parseArgs({
  options: {
    framework: { type: 'string', default: 'express' },
    json: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (args.help || !frameworks.includes(args.framework)) {
  console.log(`usage: node examples/demo.mjs [--framework ${frameworks.join('|')}] [--json] [--quick]`)
  process.exit(args.help ? 0 : 2)
}

// ---- the script ------------------------------------------------------------------------------

const POOL_CONNECTIONS = 16
const TICK_MS = 500
const duration = (full, quick) => (args.quick ? quick : full)
const readinessDelay = 0.5
const spikeSeconds = duration(10, 2.5)
/** The simulated dependency signal climbs from 0 to 1 over this share of the spike. */
const RAMP_SHARE = 0.5
const steady = { users: 16, think: 20, wait: 2, cpu: 0 }

const phases = [
  {
    name: 'steady',
    title: 'steady load',
    seconds: duration(8, 1.5),
    load: steady,
    about: [
      `${steady.users} clients each send a request every ~${steady.think} ms over a ${POOL_CONNECTIONS}-connection undici Pool; handlers wait ${steady.wait} ms on a downstream call.`,
      'Connections are reused; the server advertises its defaults, Keep-Alive: timeout=5, max=<1000 - n>.',
    ],
  },
  {
    name: 'spike',
    title: 'load spike',
    seconds: spikeSeconds,
    load: { users: 48, think: 0, wait: 10, cpu: 2 },
    about: [
      '48 clients send back to back and every handler also burns 2 ms of CPU: the event loop gets busy for real.',
      'The load factor is the maximum of event-loop utilisation, event-loop delay and adaptive.signal, smoothed, sampled every 0.25 s.',
      `Here adaptive.signal is simulated dependency pressure (think: a saturated database pool) that the demo ramps from 0 to 1 over ${(spikeSeconds * RAMP_SHARE).toFixed(1)} s, so the phase plays out alike on every machine.`,
      'From load 0.5 the advertised timeout and max shrink; from 0.95 every response carries Connection: close (keep-alive is shed).',
    ],
  },
  {
    name: 'recovery',
    title: 'recovery',
    seconds: duration(7, 1.5),
    load: steady,
    about: ['Back to the steady load, dependency signal 0: the load factor decays, keep-alive comes back, the timeout grows back to 5 s.'],
  },
  {
    name: 'shutdown',
    title: 'graceful shutdown',
    load: { ...steady, users: 6 },
    about: [
      `What SIGTERM starts: /ready answers 503 for readinessDelay ${readinessDelay} s while connections stay keep-alive; then the drain:`,
      'every response carries Connection: close, the server stops accepting, lets in-flight requests finish, and closes each idle socket',
      'once it has been quiet for grace (1 s), so a request already on the wire is still answered. 6 clients keep sending (the load',
      'balancer is moving the rest away) until a new connection is refused.',
    ],
  },
]

// ---- output ----------------------------------------------------------------------------------

const mode = args.json ? 'json' : process.stdout.isTTY ? 'tty' : 'plain'
const started = performance.now()
const elapsed = () => Number(((performance.now() - started) / 1000).toFixed(2))
const int = (n) => Math.round(n).toLocaleString('en-US')
const pct = (x) => `${Math.round(x * 100)}%`
/** The live block at the bottom of a TTY, redrawn in place each tick. */
let block = []
let blockLines = 0

function write(lines) {
  if (mode !== 'tty') {
    for (const line of lines) process.stdout.write(`${line}\n`)
    return
  }
  const width = Math.max(40, (process.stdout.columns || 100) - 1)
  let out = blockLines > 0 ? `\x1b[${blockLines}F\x1b[J` : '' // back to the block's first line, clear below
  for (const line of lines) out += `${line}\n`
  for (const line of block) out += `${line.length > width ? `${line.slice(0, width - 1)}…` : line}\n`
  blockLines = block.length
  process.stdout.write(out)
}

/** Prints an event: a JSON object with --json, else lines that stay above the live block. */
function emit(object, lines) {
  if (mode === 'json') process.stdout.write(`${JSON.stringify({ ...object, t: elapsed() })}\n`)
  else write(lines)
}

// ---- server ----------------------------------------------------------------------------------

/** When the spike began (performance.now() ms); null outside it. */
let spikeStart = null
/** The simulated dependency pressure: a ramp from 0 to 1 during the spike, 0 otherwise. */
function dependencyPressure() {
  if (spikeStart === null) return 0
  return Math.min(1, (performance.now() - spikeStart) / (spikeSeconds * RAMP_SHARE * 1000))
}

// Defaults otherwise: timeout 5, max 1000, grace 1; adaptive from 0.5, shedAt 0.95, minTimeout 1, minMax 10.
const keepAliveOptions = { adaptive: { interval: 0.25, signal: dependencyPressure } }
let reportLine = ''
const server = await start(args.framework, {
  keepAlive: keepAliveOptions,
  shutdown: { readinessDelay, timeout: 10, logger: (line) => (reportLine = line) },
})
const controller = server.controller

// ---- load ------------------------------------------------------------------------------------

const worker = new Worker(new URL('./demo/load.mjs', import.meta.url), { workerData: { url: server.url, connections: POOL_CONNECTIONS } })
let counters = { keepAlive: 0, close: 0, lastSent: '', phases: {}, lostErrors: [] }
const workerDone = new Promise((resolve, reject) => {
  worker.on('message', (message) => {
    counters = message.counters
    if (message.type === 'done') resolve()
  })
  worker.once('error', reject)
})
const clientTotals = () => {
  const all = Object.values(counters.phases)
  return { answered: all.reduce((n, p) => n + p.answered, 0), refused: all.reduce((n, p) => n + p.refused, 0), lost: all.reduce((n, p) => n + p.lost, 0) }
}

// ---- live view -------------------------------------------------------------------------------

let phase = phases[0]
let phaseIndex = 0
const delay = monitorEventLoopDelay({ resolution: 10 })
delay.enable()
let previous = { time: performance.now(), requests: 0, reused: 0, elu: performance.eventLoopUtilization(), shed: 0, keepAlive: 0, close: 0 }
/** Inputs while keep-alive was being shed, to say which drove it. */
const shedInputs = { ticks: 0, loop: 0, signal: 0 }

function closesText(closes, all) {
  const entries = Object.entries(closes).filter(([, n]) => all || n > 0)
  return entries.length === 0 ? 'none yet' : entries.map(([reason, n]) => `${reason} ${int(n)}`).join(all ? ' · ' : ', ')
}

function tick() {
  const now = performance.now()
  const stats = controller.stats()
  const elu = performance.eventLoopUtilization()
  const loop = performance.eventLoopUtilization(elu, previous.elu).utilization
  const delayP99 = delay.count > 0 ? delay.percentile(99) / 1e6 : 0
  delay.reset()
  const signal = dependencyPressure()
  const reused = stats.reuseRatio * stats.requests
  const served = stats.requests - previous.requests
  const shed = stats.closes.shed - previous.shed
  const seen = counters.keepAlive - previous.keepAlive + (counters.close - previous.close)
  const data = {
    type: 'tick',
    phase: phase.name,
    stats,
    rps: Math.round(served / ((now - previous.time) / 1000)),
    /** Share of this tick's requests served on an already-used connection. */
    reuseNow: served === 0 ? null : Number(((reused - previous.reused) / served).toFixed(3)),
    /** Connections closed this tick because keep-alive was shed. */
    shed,
    /** Share of this tick's responses the clients saw with keep-alive. */
    keepAliveShare: seen === 0 ? null : Number(((counters.keepAlive - previous.keepAlive) / seen).toFixed(3)),
    lastSent: counters.lastSent,
    inputs: { eventLoopUtilization: Number(loop.toFixed(3)), eventLoopDelayP99Ms: Number(delayP99.toFixed(1)), signal: Number(signal.toFixed(3)) },
    clients: clientTotals(),
  }
  previous = { time: now, requests: stats.requests, reused, elu, shed: stats.closes.shed, keepAlive: counters.keepAlive, close: counters.close }
  if (shed > 0 && phase.name === 'spike') {
    shedInputs.ticks++
    shedInputs.loop += loop
    shedInputs.signal += signal
  }
  if (mode === 'json') {
    process.stdout.write(`${JSON.stringify({ ...data, t: elapsed() })}\n`)
    return
  }

  const c = stats.connections
  const policy = stats.draining
    ? 'draining: Connection: close'
    : `timeout=${Math.floor(stats.timeout)}${stats.max === null ? '' : `, max=${stats.max}`}${shed > 0 ? `, shedding (${shed} closed)` : ''}`
  const inputs = `loop ${loop.toFixed(2)}, delay ${delayP99.toFixed(0)} ms, dependency ${signal.toFixed(2)}`
  const reuse = data.reuseNow === null ? '-' : pct(data.reuseNow)
  if (mode === 'plain') {
    const sent = counters.lastSent.replace('Keep-Alive: ', '').replace('Connection: close', 'close') || '-'
    write([
      `[${elapsed().toFixed(1).padStart(4)}s] ${phase.name.padEnd(8)} ${c.open} conns (${c.active} active) | ${int(data.rps)} req/s, reuse ${reuse} | policy ${policy} | sent ${sent} | load ${stats.load.toFixed(2)} (${inputs}) | closes ${closesText(stats.closes, false)}`,
    ])
    return
  }
  const bar = '█'.repeat(Math.round(stats.load * 20)).padEnd(20, '░')
  const share =
    data.keepAliveShare === null ? 'no responses this tick' : `${pct(data.keepAliveShare)} keep-alive, ${pct(1 - data.keepAliveShare)} Connection: close`
  block = [
    '',
    `  \x1b[1mphase ${phaseIndex + 1}/4 · ${phase.title}\x1b[0m · t ${elapsed().toFixed(1)} s · ${args.framework} on ${server.url}`,
    `  connections  open ${c.open} · active ${c.active} · idle ${c.idle}`,
    `  traffic      ${int(data.rps)} req/s · reuse ${reuse} now, ${pct(stats.reuseRatio)} overall · ${int(stats.requests)} requests`,
    `  policy       ${policy}`,
    `  clients saw  ${share} · last: ${counters.lastSent || '-'}`,
    `  load         ${stats.load.toFixed(2)} ${bar} (${inputs})`,
    `  closes       ${closesText(stats.closes, true)}`,
  ]
  write([])
}

// The policy's numbers, each time the published load moves them.
const policyOf = (stats) => `timeout=${Math.floor(stats.timeout)}${stats.max === null ? '' : `, max=${stats.max}`}`
let lastPolicy = policyOf(controller.stats())
controller.on('load', (load) => {
  const stats = controller.stats()
  const policy = policyOf(stats)
  if (policy === lastPolicy) return
  lastPolicy = policy
  emit({ type: 'policy', load, timeout: stats.timeout, max: stats.max }, [
    `  [${elapsed().toFixed(1)}s] load ${load.toFixed(2)} → ${policy}${load >= 0.95 ? ', and load ≥ shedAt 0.95: keep-alive is shed' : ''}`,
  ])
})

// ---- run -------------------------------------------------------------------------------------

let interrupted = false
const interrupt = new Promise((resolve) => {
  const onSignal = () => {
    if (interrupted) process.exit(130) // a second signal: stop at once
    interrupted = true
    resolve()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
})

emit({ type: 'start', framework: args.framework, url: server.url, quick: args.quick, pool: POOL_CONNECTIONS }, [
  `keepalive demo: ${args.framework} on ${server.url} with keepAlive({ adaptive: { interval: 0.25, signal } }), other options at their defaults`,
  `load: an undici Pool of ${POOL_CONNECTIONS} keep-alive connections in a worker thread${mode === 'tty' ? '; Ctrl-C skips to the shutdown' : ''}`,
])

// Sampled in the check phase, after the loop iteration has read and started new requests.
const ticker = setInterval(() => setImmediate(tick), TICK_MS)
for (const [index, p] of phases.entries()) {
  if (interrupted && p.name !== 'shutdown') continue
  phase = p
  phaseIndex = index
  emit({ type: 'phase', index: index + 1, name: p.name, title: p.title, about: p.about.join(' ') }, [
    '',
    `phase ${index + 1}/4: ${p.title}`,
    ...p.about.map((line) => `  ${line}`),
  ])
  spikeStart = p.name === 'spike' ? performance.now() : null
  worker.postMessage({ type: 'load', load: { ...p.load, phase: p.name } })
  if (p.name === 'shutdown') break
  await Promise.race([sleep(p.seconds * 1000), interrupt])
  if (p.name === 'spike') {
    // Which input drove the shedding: the load factor is their maximum.
    const loop = shedInputs.ticks === 0 ? 0 : shedInputs.loop / shedInputs.ticks
    const signal = shedInputs.ticks === 0 ? 0 : shedInputs.signal / shedInputs.ticks
    const drivers = [loop >= 0.9 && 'the event loop', signal >= 0.9 && 'the simulated dependency signal'].filter(Boolean)
    emit({ type: 'spike', shedTicks: shedInputs.ticks, eventLoopUtilization: Number(loop.toFixed(3)), signal: Number(signal.toFixed(3)) }, [
      shedInputs.ticks === 0
        ? '  the load did not reach shedAt (0.95) in this spike: keep-alive was not shed'
        : `  while keep-alive was shed, event-loop utilisation averaged ${loop.toFixed(2)} and the simulated dependency signal ${signal.toFixed(2)}: ${drivers.join(' and ') || 'neither alone, their smoothed maximum'} drove it`,
    ])
  }
}

const report = await server.graceful.shutdown()
worker.postMessage({ type: 'stop' })
await workerDone
await once(worker, 'exit')
clearInterval(ticker)
tick()
delay.disable()
// The last live view stays on screen; the report and summary go under it.
block = []
blockLines = 0

const stats = controller.stats()
const connections = Object.values(stats.closes).reduce((a, b) => a + b, 0) + stats.connections.open
const totals = clientTotals()
const shutdown = counters.phases.shutdown ?? { answered: 0, refused: 0, lost: 0 }
emit({ type: 'report', line: reportLine, report }, ['', reportLine])
emit(
  {
    type: 'summary',
    requests: stats.requests,
    connections,
    reuseRatio: stats.reuseRatio,
    closes: stats.closes,
    clients: totals,
    shutdown,
    lostErrors: counters.lostErrors,
  },
  [
    `summary: ${int(stats.requests)} requests over ${int(connections)} connections in ${elapsed().toFixed(1)} s, ${pct(stats.reuseRatio)} of them on a reused connection`,
    `  closes: ${closesText(stats.closes, false)}`,
    `  during the shutdown: ${int(shutdown.answered)} requests answered (with Connection: close), ${int(shutdown.refused)} new connections refused once the server stopped accepting, ${shutdown.lost} lost`,
    ...(totals.lost > 0 ? [`  requests that failed: ${totals.lost} (${counters.lostErrors.join(', ')})`] : []),
  ],
)
process.exitCode = report.forced > 0 ? 1 : 0
