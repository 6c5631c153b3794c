// Instructions per request: the server runs under valgrind's callgrind, which counts every
// instruction the process executes in user space (all its threads: JavaScript, the JIT, the GC).
// The count does not drift with the machine's clock speed or its other tenants the way CPU time
// does, so differences of a few tenths of a percent show, where the CPU-time suites (`like`) cannot
// tell 1 % from their noise. What it leaves out: the kernel's share of each request (system time),
// and how fast the instructions run (cache misses, branch prediction). Read it beside `like`.
//
// Each variant's server runs fresh under callgrind and is loaded from one keep-alive client with a
// fixed number of requests (not a duration: under valgrind the server is some 50 times slower, and
// what it does per second would otherwise count as per request). The client's connections live
// from the first request to the last, as a real client's do, and are reconnected whenever the
// server closes one; their lifetimes are staggered first, so that a server closing each after 1000
// requests does so about once per 1000 requests in every window. (Until 2026-12-03 every window
// opened fresh connections that served 500 requests each: no line recycled anything, so "the
// defaults" there counted `max=` without the reconnects it causes.) It is warmed up first, then
// counted in windows: `callgrind_control -z` zeroes the counters, a window of requests runs, and
// `callgrind_control -d` dumps what they cost. The first window is left out (the JIT is still
// settling there); the variant's figure is the median of the others. Counting a whole process
// instead (start-up, warm-up and exit included, as this suite did before 2026-12-02) moved by 2 to
// 5 % between runs of the same server, with the JIT's and the GC's timing; the steady-state windows
// of one process agree within a few tenths of a percent. The young generation is fixed at 16 MB a
// semi-space (V8's largest by default on 64-bit): left to V8's heuristics, which look at the time
// between collections, one server of a variant ran 20 scavenges per 10,000 requests and another 142,
// each costing some 300,000 instructions, a few percent either way that no code of either caused.
// Fixed, the number of scavenges follows what a variant allocates. Some windows still count 3,000
// to 9,000 instructions per request more than their neighbours, in bare and in ours alike: a
// compilation (TurboFan's compiler, seen by bench/attribute.mjs) or a major GC fell in them. So the
// table gives, beside the median, each server's lowest window: the steady state without such an
// event. The variants run in turn, `pairs` rounds; a second bare server is the A/A line.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { benchDir, configArg, ensureCommand, fmtInt, fmtPct, median, pinned, pinning, printTable, startChild, warn } from '../lib/util.mjs'

/**
 * The variants, each read against the one it names (`against`). Express and Koa get more: the
 * middleware layer any `app.use()` adds to their router costs instructions of its own, so the
 * mechanism and the defaults are read with `attach()` alone, and `app.use(keepAlive())` against a
 * no-op layer (recycling as often, for the defaults).
 */
export const VARIANTS = [
  { name: 'bare', config: {} },
  { name: 'bare again (A/A)', config: {}, against: 'bare' },
  { name: 'bare + no-op app.use() layer', config: { noopMiddleware: true }, against: 'bare', frameworks: ['express', 'koa'] },
  { name: 'ours, attach() only (max: Infinity)', config: { keepalive: { max: Infinity }, middleware: false }, against: 'bare', frameworks: ['express', 'koa'] },
  { name: 'ours (max: Infinity)', config: { keepalive: { max: Infinity } }, against: 'bare' },
  {
    name: 'ours (max: Infinity), against the no-op layer',
    same: 'ours (max: Infinity)',
    against: 'bare + no-op app.use() layer',
    frameworks: ['express', 'koa'],
  },
  // Fastify hands its headers to writeHead() in one object: the same on node:http, to tell that path's cost from Fastify's.
  { name: 'bare, headers in one writeHead() object', config: { headersObject: true }, frameworks: ['node'] },
  {
    name: 'ours (max: Infinity), headers in one writeHead() object',
    config: { headersObject: true, keepalive: { max: Infinity } },
    against: 'bare, headers in one writeHead() object',
    frameworks: ['node'],
  },
  { name: 'bare + maxRequestsPerSocket: 1000', config: { maxRequestsPerSocket: 1000 } },
  { name: 'ours (defaults)', config: { keepalive: {} }, against: 'bare + maxRequestsPerSocket: 1000' },
  // The defaults like with like on Express and Koa: attach() alone against bare recycling as often,
  // and app.use(keepAlive()) against bare with a no-op layer recycling as often.
  {
    name: 'ours, attach() only (defaults)',
    config: { keepalive: {}, middleware: false },
    against: 'bare + maxRequestsPerSocket: 1000',
    frameworks: ['express', 'koa'],
  },
  {
    name: 'bare + no-op app.use() layer + maxRequestsPerSocket: 1000',
    config: { noopMiddleware: true, maxRequestsPerSocket: 1000 },
    frameworks: ['express', 'koa'],
  },
  {
    name: 'ours (defaults), against the no-op layer recycling as often',
    same: 'ours (defaults)',
    against: 'bare + no-op app.use() layer + maxRequestsPerSocket: 1000',
    frameworks: ['express', 'koa'],
  },
]

/** The valgrind command a counted server runs under, writing its dumps and log to `dir`; `extra` are more callgrind options. */
export function callgrindPrefix(dir, extra = []) {
  return [
    'valgrind',
    '--tool=callgrind',
    `--callgrind-out-file=${join(dir, 'callgrind.out')}`,
    `--log-file=${join(dir, 'valgrind.log')}`,
    '--smc-check=all-non-file',
    '--dump-line=no',
    ...extra,
  ]
}

/** V8 flags of every server: a young generation of one fixed size (see the top of this file). */
export const YOUNG_GENERATION = ['--min-semi-space-size=16', '--max-semi-space-size=16']

/**
 * Starts the pinned load client (lib/fixed-load.mjs): `connections` keep-alive connections that
 * live until `close()`, reconnected whenever the server closes one. `run(n)` sends exactly n
 * requests over them, `stagger()` spreads the moments they reach `period` requests; each resolves
 * with the errors and the connections opened meanwhile.
 */
export function startLoad(port, connections, period = 1000, cpu = pinning()?.client ?? null) {
  const command = [...pinned(cpu), process.execPath, join(benchDir, 'lib', 'fixed-load.mjs'), String(port), String(connections), String(period)]
  const child = spawn(command[0], command.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] })
  const waiting = []
  let buffered = ''
  let failed = null
  const fail = (error) => {
    failed = error
    for (const w of waiting.splice(0)) w.reject(error)
  }
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    buffered += chunk
    let end
    while ((end = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, end)
      buffered = buffered.slice(end + 1)
      waiting.shift()?.resolve(JSON.parse(line))
    }
  })
  child.on('error', fail)
  const exited = new Promise((resolve) => {
    child.on('exit', resolve)
    child.on('error', () => resolve(null))
  })
  void exited.then((code) => fail(new Error(`fixed-load exited with ${code}`)))
  const send = (line) =>
    new Promise((resolve, reject) => {
      if (failed !== null) return reject(failed)
      waiting.push({ resolve, reject })
      child.stdin.write(`${line}\n`)
    })
  return {
    run: (requests) => send(String(requests)),
    stagger: () => send('stagger'),
    close: () => {
      child.stdin.end()
      return exited
    },
  }
}

export function callgrindControl(flag, pid) {
  const result = spawnSync('callgrind_control', [flag, String(pid)], { encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`callgrind_control ${flag} ${pid} failed: ${result.stdout}${result.stderr}`)
}

/** Reads and removes the dumps callgrind wrote since the last call: the instructions of the last one. */
function takeDump(dir) {
  const files = readdirSync(dir).filter((f) => f.startsWith('callgrind.out'))
  let last = null
  for (const file of files.sort()) {
    const text = readFileSync(join(dir, file), 'utf8')
    const totals = /^(?:totals|summary): (\d+)/m.exec(text)
    if (totals !== null) last = Number(totals[1])
    rmSync(join(dir, file))
  }
  if (last === null) throw new Error(`callgrind wrote no totals to ${dir}`)
  return last
}

/**
 * One fresh server under callgrind: warmed up by the stagger and `warmup` requests more, then `windows` windows of
 * `window` requests each, counted alone, all from one client whose connections live throughout
 * (their lifetimes staggered first over `period` requests). Resolves with the instructions per request of
 * each window but the first, the connections opened in each of those, and the errors. `cores` pins
 * the server and its client (`{ server, client }`, or null).
 */
async function measureOne(framework, variant, { warmup, windows, window, connections, period }, cores) {
  const dir = mkdtempSync(join(tmpdir(), 'keepalive-callgrind-'))
  const prefix = callgrindPrefix(dir, ['--dump-instr=no'])
  const server = await startChild('server.mjs', [configArg({ framework, keepalive: null, ...variant.config })], {
    cpu: cores?.server ?? null,
    execArgv: YOUNG_GENERATION,
    prefix,
    readyTimeoutMs: 180_000,
  })
  const perRequest = []
  const opened = []
  let errors = 0
  const load = startLoad(server.info.port, connections, period, cores?.client ?? null)
  let staggered
  try {
    // The stagger is the warm-up (10,500 requests over 20 lanes, 2,500 over Express's default 4), and `warmup` more in --quick.
    staggered = await load.stagger()
    errors += staggered.errors
    if (warmup > 0) errors += (await load.run(warmup)).errors
    for (let i = 0; i < windows; i++) {
      callgrindControl('-z', server.pid)
      const result = await load.run(window)
      callgrindControl('-d', server.pid)
      errors += result.errors
      const instructions = takeDump(dir)
      if (i > 0) {
        perRequest.push(instructions / window)
        opened.push(result.opened)
      }
    }
  } finally {
    await load.close()
    await server.stop({ killAfterMs: 120_000 })
    rmSync(dir, { recursive: true, force: true })
  }
  return { perRequest: median(perRequest), windows: perRequest, opened, errors, warmedUp: staggered.requests + warmup }
}

/**
 * What each server of `framework` is sent. Express spends some ten times the instructions of the
 * others on a request: smaller windows, over fewer connections, so that each still serves 500
 * requests a window. Then a server closing connections at 1000 requests (the "recycling as often"
 * lines, and ours at the defaults) is reconnected to about once per 1000 requests in every window:
 * the stagger spreads the moments. `quick` checks the script and measures nothing. `window`
 * (requests, a multiple of 500) overrides the window: Express's of 2,000 move by a few percent
 * between neighbours, as a major GC or a compilation falls in one or not.
 */
export function countsFor(framework, quick, window = undefined) {
  if (quick) return { warmup: 200, windows: 2, window: 200, connections: 10, period: 20 }
  const requests = window ?? (framework === 'express' ? 2_000 : 10_000)
  return { warmup: 0, windows: 5, window: requests, connections: requests / 500, period: 1000 }
}

/** `value` (a string or a number) as a window of requests, a whole multiple of 500; else throws, naming `option`. */
export function checkWindow(value, option) {
  const window = Number(value)
  if (Number.isInteger(window) && window >= 500 && window % 500 === 0) return window
  throw new RangeError(`${option} must be a whole number of requests, a multiple of 500 (got ${JSON.stringify(value)})`)
}

/**
 * Where the server and the client of job `job` of `jobs` counted at once run: one job keeps the
 * usual pinning; several put each server on its own core and its client on another. Null where
 * nothing can be pinned.
 */
export function coresFor(job, jobs) {
  const pins = pinning()
  if (pins === null) return null
  return jobs === 1 ? pins : { server: job, client: (job + 1) % jobs }
}

/**
 * The variants `only` (a regular expression, or undefined for all) selects, with those they are
 * read against or take their figures from, so that every selected line has its reference.
 */
export function selectVariants(variants, only) {
  if (only === undefined) return variants
  const pattern = new RegExp(only)
  const wanted = new Set(variants.filter((v) => pattern.test(v.name)).map((v) => v.name))
  if (wanted.size === 0) throw new RangeError(`--only ${JSON.stringify(only)} matches no variant; they are: ${variants.map((v) => v.name).join('; ')}`)
  // Until nothing is added: a line brought in as a source or a reference has its own reference.
  for (let size = 0; size !== wanted.size;) {
    size = wanted.size
    for (const v of variants) {
      if (!wanted.has(v.name)) continue
      if (v.same !== undefined) wanted.add(v.same)
      if (v.against !== undefined) wanted.add(v.against)
    }
  }
  return variants.filter((v) => wanted.has(v.name))
}

export async function run(ctx) {
  const title = 'instructions per request (callgrind, user space, all threads; 16 MB semi-spaces)'
  const valgrind = ensureCommand('valgrind', 'valgrind', { quick: ctx.quick }) !== null
  if (!valgrind) {
    warn('valgrind is not available (and could not be installed): the instructions suite is skipped')
    printTable(`${title}: skipped, valgrind not available`, ['framework', 'variant'], [])
    return { skipped: 'valgrind not available' }
  }
  const rounds = ctx.pairs ?? (ctx.quick ? 1 : 2)
  // Each variant takes about 2 minutes here: node:http alone unless --framework names another.
  const framework = ctx.framework ?? 'node'
  const counts = countsFor(framework, ctx.quick, ctx.window)
  const forFramework = VARIANTS.filter((v) => v.frameworks === undefined || v.frameworks.includes(framework))
  // --quick checks the script (each server start under valgrind takes seconds): one variant.
  const variants = ctx.quick ? forFramework.filter((v) => v.name === 'ours (max: Infinity)') : selectVariants(forFramework, ctx.only)
  const runnable = variants.filter((v) => v.same === undefined)
  const measured = new Map(runnable.map((v) => [v.name, []]))
  // --jobs 2 counts two servers at once, one on each core, each with its client on the other: the
  // instructions a server executes do not depend on which core runs it or what else runs there.
  const jobs = ctx.jobs ?? 1
  for (let round = 0; round < rounds; round++) {
    for (let first = 0; first < runnable.length; first += jobs) {
      const batch = runnable.slice(first, first + jobs)
      const results = await Promise.all(batch.map((variant, job) => measureOne(framework, variant, counts, coresFor(job, jobs))))
      batch.forEach((variant, job) => measured.get(variant.name).push(results[job]))
    }
  }
  const valuesOf = (variant) => measured.get(variant.same ?? variant.name) ?? null
  const rows = variants.map((variant) => {
    const values = valuesOf(variant).map((m) => m.perRequest)
    const mid = median(values)
    const reference = variant.against === undefined ? null : measured.get(variant.against)
    const base = reference == null ? null : median(reference.map((m) => m.perRequest))
    // The lowest window of each server: the steady state with no compilation or major GC in it.
    const lowest = median(valuesOf(variant).map((m) => Math.min(...m.windows)))
    const lowestBase = reference == null ? null : median(reference.map((m) => Math.min(...m.windows)))
    return [
      framework,
      variant.name,
      fmtInt(mid),
      values.map((v) => fmtInt(v)).join(' / '),
      valuesOf(variant)
        .map((m) => m.windows.map((v) => fmtInt(v)).join(' '))
        .join(' / '),
      base === null ? '' : variant.against,
      base === null ? '' : `${mid >= base ? '+' : ''}${fmtInt(mid - base)}`,
      base === null ? '' : fmtPct(((mid - base) / base) * 100, 2),
      fmtInt(lowest),
      lowestBase === null ? '' : fmtPct(((lowest - lowestBase) / lowestBase) * 100, 2),
      valuesOf(variant)
        .map((m) => m.opened.join(' '))
        .join(' / '),
      String(valuesOf(variant).reduce((sum, m) => sum + m.errors, 0)),
    ]
  })
  printTable(
    `${title}: ${rounds} round(s); each a fresh server, ${measured.values().next().value[0].warmedUp} requests of warm-up (the stagger's, then ${counts.warmup} more), then the median of ${counts.windows - 1} windows of ${counts.window} (one more left out) over ${counts.connections} keep-alive connections that live across windows${jobs > 1 ? `; ${jobs} servers counted at once, one per core` : ''}`,
    [
      'framework',
      'variant',
      'instructions/req (median)',
      'rounds',
      'windows',
      'against',
      'difference',
      '%',
      'lowest window',
      '% (lowest)',
      'connections opened per window',
      'errors',
    ],
    rows,
  )
  return { rounds, ...counts, jobs, framework, variants: Object.fromEntries(measured) }
}
