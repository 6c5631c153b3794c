// Per-response cost, in process (mitata): the decision, the writeHead hook, the per-request
// channel bookkeeping and stats(), in ns/op and bytes allocated per op. Rounds alternate the cases.
import { fmtBytes, fmtNum, fmtSpread, median, pinning, printBars, printTable, startChild } from '../lib/util.mjs'

export async function run(ctx) {
  const rounds = ctx.pairs ?? (ctx.quick ? 1 : 5)
  const minCpuMs = ctx.quick ? 5 : 100
  const allocationOps = ctx.quick ? 1000 : 20_000
  const child = await startChild('decision-child.mjs', [], {
    cpu: pinning()?.server ?? null,
    // A young generation large enough that the allocation loops run without a collection.
    execArgv: ['--expose-gc', '--min-semi-space-size=64', '--max-semi-space-size=64'],
  })
  const result = { rounds, cases: {} }
  try {
    const names = child.info.cases
    const times = Object.fromEntries(names.map((n) => [n, []]))
    for (let round = 0; round < rounds; round++) {
      // Rotate the order every round, so no case always runs first (colder) or last.
      const order = names.map((_, i) => names[(i + round) % names.length])
      for (const name of order) times[name].push((await child.call('time', { name, minCpuMs })).p50)
    }
    for (const name of names) {
      const bytes = await child.call('allocation', { name, n: allocationOps })
      result.cases[name] = { ns: times[name], medianNs: median(times[name]), bytesPerOp: bytes }
    }
  } finally {
    await child.stop()
  }
  const c = result.cases
  const hookNs = c['writeHead, hooked (hook + decide)'].medianNs - c['writeHead, bare'].medianNs
  const hookBytes = c['writeHead, hooked (hook + decide)'].bytesPerOp - c['writeHead, bare'].bytesPerOp
  const objectNs = c['writeHead(200, headers), hooked'].medianNs - c['writeHead(200, headers), bare'].medianNs
  const objectBytes = c['writeHead(200, headers), hooked'].bytesPerOp - c['writeHead(200, headers), bare'].bytesPerOp
  Object.assign(result, { hookNs, hookBytes, objectNs, objectBytes })
  const rows = Object.entries(c).map(([name, r]) => [name, fmtNum(r.medianNs, 1), fmtSpread(r.ns), fmtBytes(r.bytesPerOp)])
  rows.push(['= hook + decide, net (hooked − bare writeHead)', fmtNum(hookNs, 1), '', fmtBytes(hookBytes)])
  rows.push(['= the same with a headers argument (Fastify)', fmtNum(objectNs, 1), '', fmtBytes(objectBytes)])
  printTable(
    `per-response cost (mitata p50 per round, median of ${rounds} round(s); bytes: heap growth per op, no GC in between)`,
    ['case', 'ns/op', 'spread', 'allocated/op'],
    rows,
  )
  const target = 150
  const decideNs = c['decide: keep-alive response'].medianNs
  console.log(`decision: ${fmtNum(decideNs, 1)} ns/op (target ≤ ${target} ns): ${decideNs <= target ? 'within target' : 'ABOVE TARGET'}`)
  printBars(
    'ns per operation',
    Object.entries(c).map(([name, r]) => ({ label: name, value: r.medianNs, text: `${fmtNum(r.medianNs, 0)} ns` })),
    40,
  )
  return result
}
