// Overhead: req/s of hello-world JSON on each framework, bare vs with keepalive (default options,
// used as documented), keep-alive load from wrk, server pinned to one core and wrk to the other.
// A full run also separates the per-request mechanism from the default policy's connection
// recycling (`max: 1000`): keepalive with `max: Infinity` (not on Express, too noisy to separate
// it), and bare node:http recycling as often with Node's own maxRequestsPerSocket.
import { configArg, fmtInt, fmtMs, fmtPct, fmtSpread, median, pinning, printBars, printTable, startChild } from '../lib/util.mjs'

export const FRAMEWORKS = [
  { label: 'node:http', framework: 'node' },
  { label: 'Express 5', framework: 'express' },
  { label: 'Koa 3', framework: 'koa' },
  { label: 'Fastify 5', framework: 'fastify' },
]

/**
 * Rounds of load runs; each round starts a fresh server process per variant (so no variant keeps
 * one process's lucky or unlucky JIT for the whole suite), warms each up, then runs every variant
 * once, in an order that rotates every round.
 */
export async function compareRounds(ctx, variants, { rounds, seconds, warmupSeconds, connections, path = '/' }) {
  const names = Object.keys(variants)
  const runs = Object.fromEntries(names.map((n) => [n, []]))
  const stats = {}
  for (let round = 0; round < rounds; round++) {
    const servers = {}
    try {
      for (const name of names) servers[name] = await startChild('server.mjs', [configArg(variants[name])], { cpu: pinning()?.server ?? null })
      const url = (name) => `http://127.0.0.1:${servers[name].info.port}${path}`
      // Warm-up only has to get each server's code optimised: load them all at once.
      if (warmupSeconds > 0) await Promise.all(names.map((name) => ctx.load.run({ url: url(name), connections, seconds: warmupSeconds })))
      for (let i = 0; i < names.length; i++) {
        const name = names[(i + round) % names.length]
        runs[name].push(await ctx.load.run({ url: url(name), connections, seconds }))
      }
      for (const name of names) stats[name] = (await servers[name].call('stats')) ?? undefined
    } finally {
      for (const s of Object.values(servers)) await s.stop()
    }
  }
  return { runs, stats }
}

/** Per-round ratio b/a of a field: rounds cancel slow drifts of the machine. */
export function pairRatios(runsA, runsB, field) {
  return runsA.map((a, i) => runsB[i][field] / a[field])
}

function change(ratios) {
  return `${fmtPct((median(ratios) - 1) * 100, 2)} (${fmtPct((Math.min(...ratios) - 1) * 100, 1)} … ${fmtPct((Math.max(...ratios) - 1) * 100, 1)})`
}

export async function run(ctx) {
  const rounds = ctx.pairs ?? (ctx.quick ? 1 : 5)
  const seconds = ctx.seconds ?? (ctx.quick ? 1 : 2)
  const warmupSeconds = ctx.quick ? 0 : 1
  const connections = 50
  const breakdown = !ctx.quick
  const rows = []
  const detail = []
  const result = { rounds, seconds, connections, frameworks: {} }
  for (const { label, framework } of FRAMEWORKS) {
    const variants = { bare: { framework, keepalive: null }, keepalive: { framework, keepalive: {} } }
    if (breakdown) {
      // Recycling each connection after 1000 requests (our default `max`) has a price of its own:
      // `max: Infinity` removes it, Node's own maxRequestsPerSocket shows it without keepalive.
      // Not on Express: its rounds vary by ±10 % or more, far more than what this would separate.
      if (framework !== 'express') variants['keepalive, max: Infinity (no recycling)'] = { framework, keepalive: { max: Infinity } }
      if (framework === 'node') variants['bare + Node maxRequestsPerSocket: 1000'] = { framework, keepalive: null, maxRequestsPerSocket: 1000 }
    }
    const { runs } = await compareRounds(ctx, variants, { rounds, seconds, warmupSeconds, connections })
    const rpsBare = runs.bare.map((r) => r.rps)
    const rpsOurs = runs.keepalive.map((r) => r.rps)
    const ratios = pairRatios(runs.bare, runs.keepalive, 'rps')
    const ratio = median(ratios)
    result.frameworks[label] = { runs, ratio, lossPct: (1 - ratio) * 100 }
    rows.push([
      label,
      fmtInt(median(rpsBare)),
      fmtSpread(rpsBare),
      fmtInt(median(rpsOurs)),
      fmtSpread(rpsOurs),
      ratio.toFixed(4),
      change(ratios),
      `${fmtMs(median(runs.bare.map((r) => r.p99)))} / ${fmtMs(median(runs.keepalive.map((r) => r.p99)))}`,
      String(Object.values(runs).reduce((a, rs) => a + rs.reduce((b, r) => b + r.errors + r.non2xx, 0), 0)),
    ])
    for (const name of Object.keys(variants)) {
      const rps = runs[name].map((r) => r.rps)
      detail.push([label, name, fmtInt(median(rps)), fmtSpread(rps), name === 'bare' ? '' : change(pairRatios(runs.bare, runs[name], 'rps'))])
    }
  }
  printTable(
    `overhead: hello-world JSON, keep-alive load (${ctx.load.name}, ${connections} connections, ${rounds} round(s) × ${seconds} s, fresh servers each round, order rotated)`,
    ['framework', 'bare req/s', 'spread', 'keepalive req/s', 'spread', 'ratio', 'req/s change: median (round range)', 'p99 bare / ours', 'errors'],
    rows,
  )
  if (breakdown) {
    printTable(`overhead breakdown: every variant against bare in the same rounds`, ['framework', 'variant', 'req/s', 'spread', 'req/s change vs bare'], detail)
  }
  printBars(
    'req/s, bare (b) vs with keepalive (k)',
    Object.entries(result.frameworks).flatMap(([label, f]) => [
      { label: `${label} b`, value: median(f.runs.bare.map((r) => r.rps)), text: fmtInt(median(f.runs.bare.map((r) => r.rps))) },
      { label: `${label} k`, value: median(f.runs.keepalive.map((r) => r.rps)), text: fmtInt(median(f.runs.keepalive.map((r) => r.rps))) },
    ]),
  )
  return result
}
