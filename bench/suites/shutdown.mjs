// Shutdown: N idle keep-alive sockets plus in-flight slow requests, then each variant's shutdown.
// Measured in the server: until the call resolved, until every idle socket was closed, until every
// socket was closed; in the client: in-flight requests that did not get their full response.
// Two scenarios: idle sockets used just before the call (< grace ago) and quiet ones (> grace).
import { fmtInt, fmtMs, fmtSpread, median, pinning, printBars, printTable, startChild, configArg } from '../lib/util.mjs'

export const VARIANTS = [
  { label: 'keepalive (node:http)', shutdown: 'keepalive', framework: 'node', keepalive: {} },
  { label: 'keepalive (Fastify plugin)', shutdown: 'keepalive-fastify', framework: 'fastify', keepalive: {} },
  { label: 'http-terminator', shutdown: 'http-terminator', framework: 'node', keepalive: null },
  { label: 'stoppable', shutdown: 'stoppable', framework: 'node', keepalive: null },
  { label: 'close() + closeIdleConnections()', shutdown: 'close', framework: 'node', keepalive: null },
  { label: 'Fastify close()', shutdown: 'fastify', framework: 'fastify', keepalive: null },
]

/**
 * `close()` + `closeIdleConnections()` and Fastify's `close()` destroy idle sockets at once however
 * long they have been quiet, so the second scenario runs only the variants that could differ.
 */
const SCENARIOS = [
  { key: 'justUsed', label: 'idle sockets used just before the call (< grace)', quietMs: 0, variants: VARIANTS },
  {
    key: 'quiet',
    label: 'idle sockets quiet for longer than grace (1 s)',
    quietMs: 1300,
    variants: VARIANTS.filter((v) => v.shutdown !== 'close' && v.shutdown !== 'fastify'),
  },
]

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function once(client, variant, scenario, { idle, inflight, slowMs, limitMs, quick }) {
  const pins = pinning()
  const server = await startChild(
    'server.mjs',
    [configArg({ framework: variant.framework, keepalive: variant.keepalive, shutdown: variant.shutdown, track: true, slowMs })],
    { cpu: pins?.server ?? null, nofile: 65_536 },
  )
  const port = server.info.port
  try {
    const opened = await client.call('open', { port, n: idle }, 120_000)
    if (opened.opened !== idle) throw new Error(`opened ${opened.opened} of ${idle} idle connections: ${JSON.stringify(opened.errors)}`)
    await client.call('touch', {}, 120_000)
    // Quick mode waits just past the default grace (1 s); a full run leaves a wider margin.
    if (scenario.quietMs > 0) await sleep(quick ? 1100 : scenario.quietMs)
    await client.call('startSlow', { port, n: inflight })
    await server.call('awaitInflight', { n: inflight }, 20_000)
    const measures = await server.call('shutdown', { variant: variant.shutdown, limitMs }, limitMs + 15_000)
    const slow = await client.call('slowResults', {}, 30_000)
    return { ...measures, failed: slow.failed, errors: slow.errors }
  } finally {
    await client.call('closeAll').catch(() => {})
    await server.stop()
  }
}

export async function run(ctx) {
  const rounds = ctx.pairs ?? (ctx.quick ? 1 : 5)
  const idle = ctx.quick ? 200 : 10_000
  const inflight = ctx.quick ? 10 : 50
  const slowMs = ctx.quick ? 300 : 500
  /** A shutdown still running after this is cut short and reported as "≥ limit". */
  const limitMs = ctx.quick ? 1000 : 7000
  const ms = (v) => (v === null ? `≥ ${fmtMs(limitMs)} (limit)` : fmtMs(v))
  const medianOrLimit = (values) => {
    const m = median(values.map((v) => v ?? Infinity))
    return Number.isFinite(m) ? m : null
  }
  const pins = pinning()
  const client = await startChild('clients.mjs', [], { cpu: pins?.client ?? null, nofile: 65_536 })
  const result = { rounds, idle, inflight, slowMs, scenarios: {} }
  try {
    for (const scenario of SCENARIOS) {
      const variants = scenario.variants
      const runs = Object.fromEntries(variants.map((v) => [v.label, []]))
      for (let round = 0; round < rounds; round++) {
        const order = variants.map((_, i) => variants[(i + round) % variants.length])
        for (const variant of order) runs[variant.label].push(await once(client, variant, scenario, { idle, inflight, slowMs, limitMs, quick: ctx.quick }))
      }
      result.scenarios[scenario.key] = runs
      const rows = variants.map(({ label }) => {
        const r = runs[label]
        const failed = r.reduce((a, x) => a + x.failed, 0)
        const left = r.reduce((a, x) => a + x.openLeft, 0)
        const idleGone = r.map((x) => x.idleGoneMs)
        const closed = r.map((x) => x.allClosedMs)
        return [
          label,
          ms(medianOrLimit(r.map((x) => x.doneMs))),
          ms(medianOrLimit(idleGone)),
          idleGone.includes(null) ? '' : fmtSpread(idleGone),
          ms(medianOrLimit(closed)),
          closed.includes(null) ? '' : fmtSpread(closed),
          `${failed} of ${inflight * r.length}`,
          left === 0 ? '0' : `${fmtInt(left)} in ${r.filter((x) => x.openLeft > 0).length} run(s)`,
        ]
      })
      printTable(
        `shutdown, ${scenario.label}: ${fmtInt(idle)} idle + ${inflight} in-flight requests (${slowMs} ms each), ${rounds} round(s), order rotated`,
        ['variant', 'call resolved', 'idle sockets gone', 'spread', 'all sockets closed', 'spread', 'in-flight failed', 'left open'],
        rows,
      )
      printBars(
        `time until every socket is closed (${scenario.key})`,
        variants.map(({ label }) => {
          const v = medianOrLimit(runs[label].map((x) => x.allClosedMs))
          return { label, value: v ?? limitMs, text: ms(v) }
        }),
      )
    }
  } finally {
    await client.stop()
  }
  result.limitMs = limitMs
  return result
}
