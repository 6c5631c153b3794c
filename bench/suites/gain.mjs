// Keep-alive gain: the same node:http server with the default policy vs `timeout: 0` (every
// response `Connection: close`, so every request pays a new TCP connection). wrk --latency.
import { fmtInt, fmtMs, fmtSpread, median, printBars, printTable } from '../lib/util.mjs'
import { compareRounds, pairRatios } from './overhead.mjs'

export async function run(ctx) {
  const pairs = ctx.pairs ?? (ctx.quick ? 1 : 5)
  const seconds = ctx.seconds ?? (ctx.quick ? 1 : 3)
  const connections = 50
  const { runs, stats } = await compareRounds(
    ctx,
    { 'keep-alive (default policy)': { framework: 'node', keepalive: {} }, 'Connection: close (timeout: 0)': { framework: 'node', keepalive: { timeout: 0 } } },
    { rounds: pairs, seconds, warmupSeconds: ctx.quick ? 0 : 1, connections },
  )
  const [keep, close] = Object.keys(runs)
  const ratios = pairRatios(runs[close], runs[keep], 'rps')
  const rows = Object.entries(runs).map(([name, r]) => [
    name,
    fmtInt(median(r.map((x) => x.rps))),
    fmtSpread(r.map((x) => x.rps)),
    fmtMs(median(r.map((x) => x.p50))),
    fmtMs(median(r.map((x) => x.p99))),
    fmtSpread(r.map((x) => x.p99)),
    String(r.reduce((a, x) => a + x.errors + x.non2xx, 0)),
    String(stats[name]?.closes?.maxRequests ?? ''),
  ])
  printTable(
    `keep-alive gain: node:http + keepalive, ${ctx.load.name}, ${connections} connections, ${pairs} pair(s) × ${seconds} s, fresh servers each pair, order alternating`,
    ['variant', 'req/s', 'spread', 'p50', 'p99', 'p99 spread', 'errors', 'closes (maxRequests)'],
    rows,
  )
  console.log(`keep-alive serves ${median(ratios).toFixed(2)}× the requests per second of Connection: close (median of pair ratios)`)
  printBars(
    'req/s',
    Object.entries(runs).map(([name, r]) => ({ label: name, value: median(r.map((x) => x.rps)), text: fmtInt(median(r.map((x) => x.rps))) })),
  )
  printBars(
    'p99 latency',
    Object.entries(runs).map(([name, r]) => ({ label: name, value: median(r.map((x) => x.p99)), text: fmtMs(median(r.map((x) => x.p99))) })),
  )
  return { pairs, seconds, connections, runs, ratio: median(ratios) }
}
