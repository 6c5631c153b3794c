// Connection pressure: a flood of idle keep-alive connections holds slots (twice the cap), then
// fresh clients arrive, each on a new connection. keepalive's maxConnections (closes the
// longest-idle connection to make room) vs Node's server.maxConnections (refuses new connections).
import { fmtInt, fmtMs, fmtSpread, median, pairOrder, pinning, printBars, printTable, startChild, configArg } from '../lib/util.mjs'

function variants(cap) {
  return {
    [`keepalive maxConnections: ${cap}`]: { framework: 'node', keepalive: { maxConnections: cap } },
    [`Node server.maxConnections = ${cap}`]: { framework: 'node', keepalive: null, maxConnections: cap },
  }
}

async function once(client, config, { flood, fresh }) {
  const pins = pinning()
  const server = await startChild('server.mjs', [configArg(config)], { cpu: pins?.server ?? null, nofile: 65_536 })
  const port = server.info.port
  try {
    const held = await client.call('open', { port, n: flood, timeoutMs: 3000 }, 120_000)
    const result = await client.call('fresh', { port, n: fresh, concurrency: 10, timeoutMs: 2000 }, 120_000)
    const still = await client.call('held')
    return { flooded: held.opened, floodFailed: held.failed, heldAfter: still.open, ...result }
  } finally {
    await client.call('closeAll').catch(() => {})
    await server.stop()
  }
}

export async function run(ctx) {
  const pairs = ctx.pairs ?? (ctx.quick ? 1 : 5)
  const cap = ctx.quick ? 100 : 1000
  const flood = cap * 2
  const fresh = ctx.quick ? 50 : 500
  const client = await startChild('clients.mjs', [], { cpu: pinning()?.client ?? null, nofile: 65_536 })
  const configs = variants(cap)
  const names = Object.keys(configs)
  const runs = Object.fromEntries(names.map((n) => [n, []]))
  try {
    for (let i = 0; i < pairs; i++) {
      for (const name of pairOrder(i, names[0], names[1])) runs[name].push(await once(client, configs[name], { flood, fresh }))
    }
  } finally {
    await client.stop()
  }
  const rows = names.map((name) => {
    const r = runs[name]
    const rate = r.map((x) => (x.ok / fresh) * 100)
    const errors = {}
    for (const x of r) for (const [k, v] of Object.entries(x.errors)) errors[k] = (errors[k] ?? 0) + v
    return [
      name,
      `${fmtInt(median(r.map((x) => x.flooded)))} / ${fmtInt(median(r.map((x) => flood - x.flooded)))}`,
      `${median(rate).toFixed(1)}%`,
      fmtMs(median(r.map((x) => x.p50))),
      fmtMs(median(r.map((x) => x.p99))),
      r.some((x) => x.ok === 0) ? '' : fmtSpread(r.map((x) => x.p99)),
      Object.entries(errors)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || '-',
    ]
  })
  printTable(
    `connection pressure: ${fmtInt(flood)} idle keep-alive connections against a cap of ${fmtInt(cap)}, then ${fmtInt(fresh)} fresh clients (10 at a time, 2 s timeout), ${pairs} pair(s)`,
    ['variant', 'flood held / closed', 'fresh clients served', 'p50', 'p99', 'p99 spread', 'fresh client errors (all runs)'],
    rows,
  )
  printBars(
    'fresh clients served',
    names.map((name) => {
      const v = median(runs[name].map((x) => (x.ok / fresh) * 100))
      return { label: name, value: v, text: `${v.toFixed(1)}%` }
    }),
  )
  return { pairs, cap, flood, fresh, runs }
}
