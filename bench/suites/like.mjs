// Like with like: CPU time per request and req/s of keepalive at its defaults against the bare
// framework, and against the bare framework recycling connections as often (Node's own
// maxRequestsPerSocket: 1000, keepalive's default `max`), with a bare-vs-bare (A/A) line in the same
// output so the machine's noise is visible next to the differences.
//
// Each comparison runs in ABBA pairs: fresh server processes for A and B, then A, B, B, A for
// `seconds` each, so a drift during the pair hits both sides alike. A pair's ratio is B's total
// over A's total; the table gives the median ratio over the pairs and their range. CPU per request
// is the server's own process.cpuUsage() (user + system) over each measured run, divided by the
// requests the load generator completed in it.
import { configArg, fmtInt, fmtPct, median, pinning, printTable, startChild } from '../lib/util.mjs'
import { FRAMEWORKS } from './overhead.mjs'

/** The comparisons per framework: B against A. `aa` is the same bare server twice. */
export const COMPARISONS = [
  { name: 'A/A: bare vs bare', a: {}, b: {} },
  { name: 'mechanism: ours (max: Infinity) vs bare', a: {}, b: { keepalive: { max: Infinity } } },
  { name: 'ours (defaults) vs bare', a: {}, b: { keepalive: {} } },
  { name: 'ours (defaults) vs bare + maxRequestsPerSocket: 1000', a: { maxRequestsPerSocket: 1000 }, b: { keepalive: {} } },
]

/**
 * Express only: the policy applied through `attach()` alone, without `app.use()`: Node's request
 * channel brings every request to keepalive; and `app.use(keepAlive())` against bare with a no-op
 * `app.use()` layer. Both separate Express's cost of one more middleware layer from keepalive's own.
 */
export const EXPRESS_COMPARISONS = [
  {
    name: 'ours (defaults) vs bare + maxRequestsPerSocket: 1000 + a no-op app.use() layer',
    a: { maxRequestsPerSocket: 1000, noopMiddleware: true },
    b: { keepalive: {} },
  },
  {
    name: 'ours (defaults, attach() only, no app.use) vs bare + maxRequestsPerSocket: 1000',
    a: { maxRequestsPerSocket: 1000 },
    b: { keepalive: {}, middleware: false },
  },
]

/** One measured run: req/s, requests and the server's CPU µs over the run. */
async function measure(ctx, server, connections, seconds) {
  const acceptedBefore = await server.call('accepted')
  const before = await server.call('cpu')
  const load = await ctx.load.run({ url: `http://127.0.0.1:${server.info.port}/`, connections, seconds })
  const after = await server.call('cpu')
  const accepted = (await server.call('accepted')) - acceptedBefore
  return { rps: load.rps, requests: load.requests, cpuUs: after - before, accepted, errors: load.errors + load.non2xx }
}

const total = (rs) => ({
  rps: rs.reduce((sum, r) => sum + r.rps, 0) / rs.length,
  requests: rs.reduce((sum, r) => sum + r.requests, 0),
  cpuUs: rs.reduce((sum, r) => sum + r.cpuUs, 0),
  accepted: rs.reduce((sum, r) => sum + r.accepted, 0),
  errors: rs.reduce((sum, r) => sum + r.errors, 0),
})

/** One pair's runs, one side at a time: A, B, B, A, so a drift during the pair hits both sides alike. */
async function inTurn(ctx, a, b, { seconds, warmupSeconds, connections }) {
  if (warmupSeconds > 0) {
    for (const s of [a, b]) await ctx.load.run({ url: `http://127.0.0.1:${s.info.port}/`, connections, seconds: warmupSeconds })
  }
  const runs = { a: [], b: [] }
  for (const side of ['a', 'b', 'b', 'a']) runs[side].push(await measure(ctx, side === 'a' ? a : b, connections, seconds))
  return runs
}

/**
 * One pair's runs, A and B at the same time: the two server processes share the server core, each
 * under its own load generator, over the same windows (2 runs). Whatever slows the machine during a
 * window slows both sides alike. The price: the core and its caches are shared, so costs that come
 * from memory traffic may weigh more than they do alone. Read it beside the pairs run in turn.
 */
async function atOnce(ctx, a, b, { seconds, warmupSeconds, connections }) {
  const both = (s) => Promise.all([a, b].map((server) => measure(ctx, server, connections, s)))
  if (warmupSeconds > 0) await both(warmupSeconds)
  const runs = { a: [], b: [] }
  for (let i = 0; i < 2; i++) {
    const [ra, rb] = await both(seconds)
    runs.a.push(ra)
    runs.b.push(rb)
  }
  return runs
}

/**
 * The pairs of one comparison, fresh A and B server processes each; the runs in turn (ABBA) or,
 * `concurrent`, at once. Returns each pair's totals per side.
 */
export async function abbaPairs(ctx, framework, comparison, { pairs, concurrent = false, ...timing }) {
  const runPair = concurrent ? atOnce : inTurn
  const results = []
  for (let pair = 0; pair < pairs; pair++) {
    const config = (side) => configArg({ framework, keepalive: null, ...side })
    const a = await startChild('server.mjs', [config(comparison.a)], { cpu: pinning()?.server ?? null })
    let b = null
    try {
      b = await startChild('server.mjs', [config(comparison.b)], { cpu: pinning()?.server ?? null })
      const runs = await runPair(ctx, a, b, timing)
      results.push({ a: total(runs.a), b: total(runs.b) })
    } finally {
      await a.stop()
      await b?.stop()
    }
  }
  return results
}

const cpuPerRequest = (side) => side.cpuUs / side.requests
const perThousand = (share) => (share * 1000).toFixed(2)
const range = (ratios) =>
  `${fmtPct((median(ratios) - 1) * 100, 2)} (${fmtPct((Math.min(...ratios) - 1) * 100, 1)} … ${fmtPct((Math.max(...ratios) - 1) * 100, 1)})`

export async function run(ctx) {
  const pairs = ctx.pairs ?? (ctx.quick ? 1 : 10)
  // Short runs, many pairs: a pair's four runs sit close together in time, which is what cancels drift.
  const seconds = ctx.seconds ?? (ctx.quick ? 0.5 : 1)
  const warmupSeconds = ctx.quick ? 0 : 0.5
  const connections = 50
  const rows = []
  const result = { pairs, seconds, connections, frameworks: {} }
  // --quick checks the script, not the figures: one framework is enough for that.
  const frameworks = ctx.framework !== undefined ? FRAMEWORKS.filter((f) => f.framework === ctx.framework) : ctx.quick ? FRAMEWORKS.slice(0, 1) : FRAMEWORKS
  for (const { label, framework } of frameworks) {
    result.frameworks[label] = {}
    for (const comparison of framework === 'express' ? [...COMPARISONS, ...EXPRESS_COMPARISONS] : COMPARISONS) {
      const measured = await abbaPairs(ctx, framework, comparison, {
        pairs,
        seconds,
        warmupSeconds,
        connections,
        concurrent: ctx.concurrent === true,
      })
      const cpuRatios = measured.map((p) => cpuPerRequest(p.b) / cpuPerRequest(p.a))
      const rpsRatios = measured.map((p) => p.b.rps / p.a.rps)
      result.frameworks[label][comparison.name] = { pairs: measured, cpuRatio: median(cpuRatios), rpsRatio: median(rpsRatios) }
      rows.push([
        label,
        comparison.name,
        median(measured.map((p) => cpuPerRequest(p.a))).toFixed(2),
        median(measured.map((p) => cpuPerRequest(p.b))).toFixed(2),
        range(cpuRatios),
        `${fmtInt(median(measured.map((p) => p.a.rps)))} / ${fmtInt(median(measured.map((p) => p.b.rps)))}`,
        range(rpsRatios),
        `${perThousand(median(measured.map((p) => p.a.accepted / p.a.requests)))} / ${perThousand(median(measured.map((p) => p.b.accepted / p.b.requests)))}`,
        String(measured.reduce((sum, p) => sum + p.a.errors + p.b.errors, 0)),
      ])
    }
  }
  printTable(
    `like with like: CPU µs per request (server process.cpuUsage() / requests served) and req/s, ${pairs} ABBA pair(s) × 4 runs of ${seconds} s, ${ctx.load.name}, ${connections} connections, ${ctx.concurrent ? 'A and B at the same time on one core, 2 runs per pair' : 'fresh servers per pair'}`,
    [
      'framework',
      'B vs A',
      'CPU µs/req A',
      'CPU µs/req B',
      'CPU/req change: median (pair range)',
      'req/s A / B',
      'req/s change: median (pair range)',
      'new connections per 1000 requests A / B',
      'errors',
    ],
    rows,
  )
  return result
}
