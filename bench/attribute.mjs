// `node bench/attribute.mjs [node|express|koa|fastify] [A config JSON] [B config JSON] [window]`: where the
// instructions of B's request go that A's do not. Each server runs under callgrind as in the
// instructions suite (warm-up, then windows counted alone, the young generation fixed), with V8
// writing the address of every function it compiles (--perf-basic-prof), so that the instructions of
// JIT code, which callgrind cannot name, are given to their JavaScript functions. Prints, for the
// window of each whose total is the median of all but the first, the instructions per request by
// function (self cost: what the function's own code executed, not what it called) and the functions
// whose share moved most between A and B.
// By default A is the bare server and B the same with keepalive (`max: Infinity`). Read with care:
// V8 may free code and reuse its addresses, which names a few instructions after a function that is
// gone; and where inlining differs between A and B, cost moves between a caller and its callees.
// `window` (requests, a multiple of 500) sets the windows as the suite's `--window` does. A and B run
// at once, one on each core (with 2 cores and taskset), each with its client on the other.
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { callgrindControl, callgrindPrefix, checkWindow, coresFor, countsFor, startLoad, YOUNG_GENERATION } from './suites/instructions.mjs'
import { configArg, ensureCommand, fmtInt, parseConfigArg, printTable, startChild } from './lib/util.mjs'

const framework = process.argv[2] ?? 'node'
const configs = [parseConfigArg(process.argv[3] ?? '{}'), parseConfigArg(process.argv[4] ?? '{"keepalive":{"max":"Infinity"}}')]
// The instructions suite's windows and connections (500 requests per connection a window, connections living throughout).
let windowArg
try {
  windowArg = process.argv[5] === undefined ? undefined : checkWindow(process.argv[5], 'window')
} catch (error) {
  console.error(error.message)
  process.exit(2)
}
const { window: WINDOW, connections: CONNECTIONS } = countsFor(framework, false, windowArg)
const WINDOWS = 4

/** The functions V8 compiled, from its perf map: sorted starts, each with its end and name (a later entry at one start wins). */
function readPerfMap(file) {
  const byStart = new Map()
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line)
    if (match === null) continue
    const start = parseInt(match[1], 16)
    byStart.set(start, { end: start + parseInt(match[2], 16), name: match[3].replace(/^JS:[~^+*]?/, '') })
  }
  const starts = [...byStart.keys()].sort((a, b) => a - b)
  return (address) => {
    let lo = 0
    let hi = starts.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (starts[mid] <= address) lo = mid + 1
      else hi = mid - 1
    }
    const entry = hi >= 0 ? byStart.get(starts[hi]) : undefined
    return entry !== undefined && address < entry.end ? entry.name : '(JIT code not in the map)'
  }
}

/** Self instructions by function in one callgrind dump (written with --dump-instr=yes and no compression). */
function selfCost(file, nameOf) {
  const costs = new Map()
  let total = 0
  let object = ''
  let fn = ''
  let afterCall = false
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('ob=')) object = line.slice(3)
    else if (line.startsWith('fn=')) fn = line.slice(3)
    else if (line.startsWith('calls=')) afterCall = true
    else {
      const match = /^(0x[0-9a-f]+) (\d+)$/.exec(line)
      if (match === null) continue
      // The line after calls= is the inclusive cost of that call: the callee's, not this function's.
      if (afterCall) {
        afterCall = false
        continue
      }
      const cost = Number(match[2])
      total += cost
      const name = object === '???' ? nameOf(parseInt(match[1], 16)) : fn
      costs.set(name, (costs.get(name) ?? 0) + cost)
    }
  }
  return { costs, total }
}

async function measure(config, cores) {
  const dir = mkdtempSync(join(tmpdir(), 'keepalive-attribute-'))
  // Every instruction's address, and names written out in full: what selfCost() reads.
  const prefix = callgrindPrefix(dir, ['--dump-instr=yes', '--compress-pos=no', '--compress-strings=no'])
  const server = await startChild('server.mjs', [configArg({ framework, keepalive: null, ...config })], {
    cpu: cores?.server ?? null,
    execArgv: ['--perf-basic-prof', '--no-compact-code-space', ...YOUNG_GENERATION],
    prefix,
    readyTimeoutMs: 180_000,
  })
  const map = `/tmp/perf-${server.pid}.map`
  const load = startLoad(server.info.port, CONNECTIONS, 1000, cores?.client ?? null)
  try {
    await load.stagger()
    await load.run(WINDOW)
    for (let i = 0; i < WINDOWS; i++) {
      callgrindControl('-z', server.pid)
      await load.run(WINDOW)
      callgrindControl('-d', server.pid)
    }
    const dumps = readdirSync(dir)
      .filter((f) => /^callgrind\.out\.\d+$/.test(f))
      .sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()))
    if (!existsSync(map)) throw new Error(`V8 wrote no perf map at ${map}`)
    const nameOf = readPerfMap(map)
    // The window whose total is the median: one with a compilation or a major GC in it is left aside.
    const windows = dumps.slice(1).map((f) => selfCost(join(dir, f), nameOf))
    const byTotal = [...windows].sort((x, y) => x.total - y.total)
    return { ...byTotal[(byTotal.length - 1) >> 1], totals: windows.map((w) => w.total) }
  } finally {
    await load.close()
    await server.stop({ killAfterMs: 120_000 })
    rmSync(dir, { recursive: true, force: true })
    rmSync(map, { force: true })
  }
}

if (ensureCommand('valgrind', 'valgrind', { quick: false }) === null) {
  console.error('valgrind is not available (and could not be installed)')
  process.exit(1)
}
const [a, b] = await Promise.all(configs.map((config, job) => measure(config, coresFor(job, 2))))
const perRequest = (n) => n / WINDOW
const show = (config) => JSON.stringify(config, (_, v) => (v === Infinity ? 'Infinity' : v))
const windows = (m) => m.totals.map((t) => fmtInt(perRequest(t))).join(' ')
console.log(`A ${show(configs[0])}: ${fmtInt(perRequest(a.total))} instructions per request (windows: ${windows(a)})`)
console.log(
  `B ${show(configs[1])}: ${fmtInt(perRequest(b.total))} instructions per request (windows: ${windows(b)}), ${fmtInt(perRequest(b.total - a.total))} more`,
)
const names = new Set([...a.costs.keys(), ...b.costs.keys()])
const moved = [...names].map((name) => [name, perRequest((b.costs.get(name) ?? 0) - (a.costs.get(name) ?? 0))]).sort((x, y) => y[1] - x[1])
const row = ([name, delta]) => [
  name.slice(0, 110),
  fmtInt(perRequest(a.costs.get(name) ?? 0)),
  fmtInt(perRequest(b.costs.get(name) ?? 0)),
  `${delta >= 0 ? '+' : ''}${fmtInt(delta)}`,
]
const header = ['function (self cost)', 'A', 'B', 'B − A']
printTable(
  `${framework}: most added in B, instructions per request (the median of the last ${WINDOWS - 1} windows of ${WINDOW} by total)`,
  header,
  moved.slice(0, 30).map(row),
)
printTable(`${framework}: most removed in B`, header, moved.slice(-15).reverse().map(row))
