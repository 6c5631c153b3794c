// Shutdown (#16 point 6): 10,000 idle keep-alive sockets, each used just before the call, plus 50
// in-flight requests, then each variant's shutdown: keepalive, http-terminator and stoppable, in one
// run, the order rotating each round. The in-flight requests are answered while the variant is
// closing idle sockets: the i-th of n at (i + 1) / n × 500 ms after the call.
// Measured in the server: until the call resolved, until the last idle socket closed, until every
// socket closed, and how late each in-flight response finished against its planned moment (what the
// closing work costs a response that is due meanwhile); in the client: in-flight requests that did
// not get their full 200 response. Then the targets, checked round by round.
import { fmtInt, fmtMs, fmtSpread, median, pinning, printTable, startChild, configArg } from '../lib/util.mjs'

// Every variant keeps idle sockets 60 s, so none times out while 10,000 are being opened on a busy
// machine (the idle timeout plays no part in any variant's shutdown).
export const VARIANTS = [
  { label: 'keepalive (node:http)', shutdown: 'keepalive', framework: 'node', keepalive: { timeout: 60 } },
  { label: 'http-terminator', shutdown: 'http-terminator', framework: 'node', keepalive: null, keepAliveTimeoutMs: 60_000 },
  { label: 'stoppable', shutdown: 'stoppable', framework: 'node', keepalive: null, keepAliveTimeoutMs: 60_000 },
]
const OURS = VARIANTS[0].label
const TERMINATOR = VARIANTS[1].label

/** keepalive's default quiet period (drainQuiet, 0.2 s), in ms: the targets allow for it. */
const DRAIN_QUIET_MS = 200
/** The slack the targets allow: on the resolve time, and on how late an in-flight response may finish. */
const SLACK_MS = 50

async function once(client, variant, { idle, inflight, slowMs, limitMs }) {
  const pins = pinning()
  const server = await startChild(
    'server.mjs',
    [
      configArg({
        framework: variant.framework,
        keepalive: variant.keepalive,
        keepAliveTimeoutMs: variant.keepAliveTimeoutMs,
        shutdown: variant.shutdown,
        track: true,
        slowMs,
        staggered: true,
      }),
    ],
    { cpu: pins?.server ?? null, nofile: 65_536 },
  )
  const port = server.info.port
  try {
    const opened = await client.call('open', { port, n: idle }, 120_000)
    if (opened.opened !== idle) throw new Error(`opened ${opened.opened} of ${idle} idle connections: ${JSON.stringify(opened.errors)}`)
    await client.call('startSlow', { port, n: inflight })
    await server.call('awaitInflight', { n: inflight }, 20_000)
    // Every idle socket serves one more request now: each was used just before the call.
    const touched = await client.call('touch', {}, 120_000)
    const measures = await server.call('shutdown', { variant: variant.shutdown, limitMs }, limitMs + 15_000)
    const slow = await client.call('slowResults', {}, 30_000)
    const delays = measures.inflightDelaysMs.filter((d) => d !== null)
    return {
      ...measures,
      openMs: opened.ms,
      touchMs: touched.ms,
      maxDelayMs: delays.length > 0 ? Math.max(...delays) : null,
      failed: slow.failed,
      errors: slow.errors,
    }
  } finally {
    await client.call('closeAll').catch(() => {})
    await server.stop()
  }
}

export async function run(ctx) {
  const rounds = ctx.pairs ?? (ctx.quick ? 1 : 5)
  const idle = ctx.quick ? 200 : 10_000
  const inflight = ctx.quick ? 10 : 50
  const slowMs = 500
  /** A shutdown still running after this is cut short and reported as "≥ limit". */
  const limitMs = ctx.quick ? 3000 : 5000
  const ms = (v) => (v === null ? `≥ ${fmtMs(limitMs)} (limit)` : fmtMs(v))
  const medianOrLimit = (values) => {
    const m = median(values.map((v) => v ?? Infinity))
    return Number.isFinite(m) ? m : null
  }
  const pins = pinning()
  const client = await startChild('clients.mjs', [], { cpu: pins?.client ?? null, nofile: 65_536 })
  const runs = Object.fromEntries(VARIANTS.map((v) => [v.label, []]))
  try {
    for (let round = 0; round < rounds; round++) {
      const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length])
      for (const variant of order) runs[variant.label].push(await once(client, variant, { idle, inflight, slowMs, limitMs }))
    }
  } finally {
    await client.stop()
  }

  const rows = VARIANTS.map(({ label }) => {
    const r = runs[label]
    const failed = r.reduce((a, x) => a + x.failed, 0)
    const left = r.reduce((a, x) => a + x.openLeft, 0)
    const done = r.map((x) => x.doneMs)
    const idleGone = r.map((x) => x.idleGoneMs)
    const delay = r.map((x) => x.maxDelayMs)
    return [
      label,
      ms(medianOrLimit(done)),
      done.includes(null) ? '' : fmtSpread(done),
      ms(medianOrLimit(idleGone)),
      idleGone.includes(null) ? '' : fmtSpread(idleGone),
      ms(medianOrLimit(r.map((x) => x.allClosedMs))),
      `${ms(medianOrLimit(delay))} (worst ${ms(Math.max(...delay.map((d) => d ?? Infinity)))})`,
      `${failed} of ${inflight * r.length}`,
      left === 0 ? '0' : `${fmtInt(left)} in ${r.filter((x) => x.openLeft > 0).length} run(s)`,
    ]
  })
  printTable(
    `shutdown, idle sockets used just before the call: ${fmtInt(idle)} idle + ${inflight} in-flight requests (answered over the ${slowMs} ms after the call), ${rounds} round(s), order rotated`,
    [
      'variant',
      'call resolved',
      'spread',
      'idle sockets gone',
      'spread',
      'all sockets closed',
      'in-flight responses late by (max per run: median, worst)',
      'in-flight failed',
      'left open',
    ],
    rows,
  )

  // The targets of #16, for keepalive, round by round (each round runs every variant once).
  const ours = runs[OURS]
  const terminator = runs[TERMINATOR]
  const perRound = (test) => ours.map((x, i) => test(x, terminator[i]))
  const verdict = (oks) => (oks.every(Boolean) ? 'met' : `not met in ${oks.filter((ok) => !ok).length} of ${oks.length} rounds`)
  const targets = [
    ['0 in-flight requests failed', `${ours.reduce((a, x) => a + x.failed, 0)} failed`, verdict(perRound((x) => x.failed === 0))],
    [
      `shutdown() resolves ≤ slowest in-flight + drainQuiet (${DRAIN_QUIET_MS} ms) + ${SLACK_MS} ms`,
      ours.map((x) => `${fmtMs(x.doneMs)} vs ${fmtMs(x.inflightLastMs + DRAIN_QUIET_MS + SLACK_MS)}`).join(', '),
      verdict(perRound((x) => x.doneMs !== null && x.doneMs <= x.inflightLastMs + DRAIN_QUIET_MS + SLACK_MS)),
    ],
    [
      'idle sockets gone no later than http-terminator in the same round',
      ours.map((x, i) => `${fmtMs(x.idleGoneMs)} vs ${fmtMs(terminator[i].idleGoneMs)}`).join(', '),
      verdict(perRound((x, t) => x.idleGoneMs !== null && t.idleGoneMs !== null && x.idleGoneMs <= t.idleGoneMs)),
    ],
    [
      `in-flight responses late by ≤ ${SLACK_MS} ms`,
      ours.map((x) => fmtMs(x.maxDelayMs)).join(', '),
      verdict(perRound((x) => x.maxDelayMs !== null && x.maxDelayMs <= SLACK_MS)),
    ],
  ]
  printTable(`shutdown targets (#16) for ${OURS}${ctx.quick ? ' (--quick: not a measurement)' : ''}`, ['target', 'per round', 'result'], targets)
  return { rounds, idle, inflight, slowMs, limitMs, runs, targets: targets.map(([target, values, result]) => ({ target, values, result })) }
}
