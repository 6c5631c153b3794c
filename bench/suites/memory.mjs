// Memory: heap and RSS per open idle keep-alive connection, bare node:http vs with keepalive, over
// N idle connections (each served one request). Measured in the server after forced GCs
// (--expose-gc); our own state per connection is the difference of the two. Bare Node keeps a
// keep-alive timer per idle socket, which keepalive replaces with one sweep; a third variant, bare
// Node with its timer off (keepAliveTimeout 0, idle sockets never closed), shows the gross size of
// keepalive's state without that saving.
import { fmtBytes, fmtInt, fmtSpread, median, pinning, printTable, startChild, configArg } from '../lib/util.mjs'

const VARIANTS = {
  bare: { framework: 'node', keepalive: null, keepAliveTimeoutMs: 60_000 },
  keepalive: { framework: 'node', keepalive: { timeout: 60 } },
  untimed: { framework: 'node', keepalive: null, keepAliveTimeoutMs: 0 },
}
const LABELS = {
  bare: 'bare node:http (keepAliveTimeout 60 s)',
  keepalive: 'node:http + keepalive (timeout 60)',
  untimed: "bare node:http, Node's idle timer off (keepAliveTimeout 0)",
}

async function once(client, config, n) {
  const pins = pinning()
  const server = await startChild('server.mjs', [configArg(config)], { cpu: pins?.server ?? null, nofile: 65_536, execArgv: ['--expose-gc'] })
  const port = server.info.port
  try {
    // Warm up: every code path of a connection's life has run once before the baseline.
    await client.call('open', { port, n: 200 }, 60_000)
    await client.call('closeAll')
    for (let i = 0; i < 100 && (await server.call('connections')) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    const before = await server.call('memory')
    const opened = await client.call('open', { port, n }, 120_000)
    if (opened.opened !== n) throw new Error(`opened ${opened.opened} of ${n}: ${JSON.stringify(opened.errors)}`)
    const after = await server.call('memory')
    return { heapPerConn: (after.heapUsed - before.heapUsed) / n, rssPerConn: (after.rss - before.rss) / n }
  } finally {
    await client.call('closeAll').catch(() => {})
    await server.stop()
  }
}

export async function run(ctx) {
  const pairs = ctx.pairs ?? (ctx.quick ? 1 : 5)
  const n = ctx.quick ? 1000 : 10_000
  const client = await startChild('clients.mjs', [], { cpu: pinning()?.client ?? null, nofile: 65_536 })
  const names = Object.keys(VARIANTS)
  const runs = Object.fromEntries(names.map((name) => [name, []]))
  try {
    for (let i = 0; i < pairs; i++) {
      for (let j = 0; j < names.length; j++) {
        const name = names[(i + j) % names.length]
        runs[name].push(await once(client, VARIANTS[name], n))
      }
    }
  } finally {
    await client.stop()
  }
  const ownHeap = runs.keepalive.map((r, i) => r.heapPerConn - runs.bare[i].heapPerConn)
  const ownRss = runs.keepalive.map((r, i) => r.rssPerConn - runs.bare[i].rssPerConn)
  const grossHeap = runs.keepalive.map((r, i) => r.heapPerConn - runs.untimed[i].heapPerConn)
  const grossRss = runs.keepalive.map((r, i) => r.rssPerConn - runs.untimed[i].rssPerConn)
  const range = (values) => `${fmtBytes(Math.min(...values))} … ${fmtBytes(Math.max(...values))}`
  const rows = Object.entries(runs).map(([name, r]) => [
    LABELS[name],
    fmtBytes(median(r.map((x) => x.heapPerConn))),
    fmtSpread(r.map((x) => x.heapPerConn)),
    fmtBytes(median(r.map((x) => x.rssPerConn))),
    fmtSpread(r.map((x) => x.rssPerConn)),
  ])
  rows.push(['keepalive − bare (per round)', fmtBytes(median(ownHeap)), range(ownHeap), fmtBytes(median(ownRss)), range(ownRss)])
  rows.push(["keepalive − bare without Node's timer (gross state)", fmtBytes(median(grossHeap)), range(grossHeap), fmtBytes(median(grossRss)), range(grossRss)])
  printTable(
    `memory per idle keep-alive connection: ${fmtInt(n)} connections, ${pairs} round(s), order rotated (heapUsed and RSS growth after GC / connections)`,
    ['variant', 'heap/conn', 'spread', 'RSS/conn', 'spread'],
    rows,
  )
  const own = median(ownHeap)
  const gross = median(grossHeap)
  console.log(`keepalive's own heap per connection, against bare Node: ${fmtBytes(own)} (target ≤ 150 B): ${own <= 150 ? 'within target' : 'ABOVE TARGET'}`)
  console.log(`  gross, against bare Node without its per-socket idle timer: ${fmtBytes(gross)}`)
  return { pairs, n, runs, ownHeapPerConn: own, ownRssPerConn: median(ownRss), grossHeapPerConn: gross, grossRssPerConn: median(grossRss) }
}
