// Instructions per request: the server runs under valgrind's callgrind, which counts every
// instruction the process executes in user space (all its threads: JavaScript, the JIT, the GC).
// The count does not drift with the machine's clock speed or its other tenants the way CPU time
// does, so differences of a few tenths of a percent show, where the CPU-time suites (`like`) cannot
// tell 1 % from their noise. What it leaves out: the kernel's share of each request (system time),
// and how fast the instructions run (cache misses, branch prediction). Read it beside `like`.
//
// Each variant's server runs fresh under callgrind and is loaded from one keep-alive client with a
// fixed number of requests (not a duration: under valgrind the server is some 50 times slower, and
// what it does per second would otherwise count as per request). It is warmed up first, then
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

/** Sends `requests` GETs over `connections` keep-alive connections, from a pinned child process; resolves with the errors. */
export function fixedLoad(port, requests, connections) {
  return new Promise((resolve, reject) => {
    const command = [
      ...pinned(pinning()?.client ?? null),
      process.execPath,
      join(benchDir, 'lib', 'fixed-load.mjs'),
      String(port),
      String(requests),
      String(connections),
    ]
    const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (chunk) => (out += chunk))
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`fixed-load exited with ${code}`))))
  })
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
 * One fresh server under callgrind: warmed up with `warmup` requests, then `windows` windows of
 * `window` requests each, counted alone. Resolves with the instructions per request of each window
 * but the first, and the errors.
 */
async function measureOne(framework, variant, { warmup, windows, window, connections }) {
  const dir = mkdtempSync(join(tmpdir(), 'keepalive-callgrind-'))
  const prefix = callgrindPrefix(dir, ['--dump-instr=no'])
  const server = await startChild('server.mjs', [configArg({ framework, keepalive: null, ...variant.config })], {
    cpu: pinning()?.server ?? null,
    execArgv: YOUNG_GENERATION,
    prefix,
    readyTimeoutMs: 180_000,
  })
  const perRequest = []
  let errors = 0
  try {
    errors += (await fixedLoad(server.info.port, warmup, connections)).errors
    for (let i = 0; i < windows; i++) {
      callgrindControl('-z', server.pid)
      errors += (await fixedLoad(server.info.port, window, connections)).errors
      callgrindControl('-d', server.pid)
      const instructions = takeDump(dir)
      if (i > 0) perRequest.push(instructions / window)
    }
  } finally {
    await server.stop({ killAfterMs: 120_000 })
    rmSync(dir, { recursive: true, force: true })
  }
  return { perRequest: median(perRequest), windows: perRequest, errors }
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
  // Express spends some ten times the instructions of the others on a request: smaller windows.
  // Its 12,000 requests over 20 connections stay under max: 1000 per connection, so its lines
  // "recycling as often" recycle nothing (on node:http recycling costs bare some 330 instructions per request, 0.06 % of Express's).
  const scale = framework === 'express' ? 5 : 1
  const counts = ctx.quick
    ? { warmup: 200, windows: 2, window: 200, connections: 10 }
    : { warmup: 10_000 / scale, windows: 5, window: 10_000 / scale, connections: 20 }
  const forFramework = VARIANTS.filter((v) => v.frameworks === undefined || v.frameworks.includes(framework))
  // --quick checks the script (each server start under valgrind takes seconds): one variant.
  const variants = ctx.quick ? forFramework.filter((v) => v.name === 'ours (max: Infinity)') : forFramework
  const runnable = variants.filter((v) => v.same === undefined)
  const measured = new Map(runnable.map((v) => [v.name, []]))
  for (let round = 0; round < rounds; round++) {
    for (const variant of runnable) measured.get(variant.name).push(await measureOne(framework, variant, counts))
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
      String(valuesOf(variant).reduce((sum, m) => sum + m.errors, 0)),
    ]
  })
  printTable(
    `${title}: ${rounds} round(s); each a fresh server, ${counts.warmup} requests of warm-up, then the median of ${counts.windows - 1} windows of ${counts.window} (one more left out) over ${counts.connections} keep-alive connections`,
    ['framework', 'variant', 'instructions/req (median)', 'rounds', 'windows', 'against', 'difference', '%', 'lowest window', '% (lowest)', 'errors'],
    rows,
  )
  return { rounds, ...counts, framework, variants: Object.fromEntries(measured) }
}
