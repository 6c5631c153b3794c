// Instructions per request: the server runs under valgrind's callgrind, which counts every
// instruction the process executes in user space (all its threads: JavaScript, the JIT, the GC).
// The count does not drift with the machine's clock speed or its other tenants the way CPU time
// does, so differences of a few tenths of a percent show, where the CPU-time suites (`like`) cannot
// tell 1 % from their noise. What it leaves out: the kernel's share of each request (system time),
// and how fast the instructions run (cache misses, branch prediction). Read it beside `like`.
//
// Each variant's server runs twice, fresh, under callgrind: once for a short load of `small`
// requests, once for `large`, from one keep-alive client with a fixed number of requests (not a
// duration: under valgrind the server is some 50 times slower, and what it does per second, JIT
// compilation above all, would otherwise count as per request). Both runs hold the same start-up,
// warm-up and exit, so instructions per request = (large run's total - small run's total) /
// (large - small). The variants run in turn, `pairs` rounds; a second bare server is the A/A line.
import { spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { benchDir, configArg, ensureCommand, fmtInt, fmtPct, median, pinned, pinning, printTable, startChild, warn } from '../lib/util.mjs'

/** The variants, each against the first (bare). */
export const VARIANTS = [
  { name: 'bare', config: {} },
  { name: 'bare again (A/A)', config: {} },
  { name: "Node's two channels, no-op subscribers", config: { channelsOnly: true } },
  { name: 'ours (max: Infinity)', config: { keepalive: { max: Infinity } } },
  { name: 'bare + maxRequestsPerSocket: 1000', config: { maxRequestsPerSocket: 1000 } },
  { name: 'ours (defaults)', config: { keepalive: {} } },
]

let runs = 0

/** Sends `requests` GETs over `connections` keep-alive connections, from a pinned child process; resolves with the errors. */
function fixedLoad(port, requests, connections) {
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

/** One server under callgrind for `requests` requests: the instructions it executed from start to exit. */
async function countRun(framework, variant, requests, connections) {
  const log = join(tmpdir(), `keepalive-callgrind-${process.pid}-${runs++}.log`)
  const prefix = ['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null', `--log-file=${log}`, '--smc-check=all-non-file']
  const server = await startChild('server.mjs', [configArg({ framework, keepalive: null, ...variant.config })], {
    cpu: pinning()?.server ?? null,
    prefix,
    readyTimeoutMs: 180_000,
  })
  let load
  try {
    load = await fixedLoad(server.info.port, requests, connections)
  } finally {
    // Valgrind writes its totals as the process exits.
    await server.stop({ killAfterMs: 120_000 })
  }
  try {
    const collected = /Collected : (\d+)/.exec(readFileSync(log, 'utf8'))
    if (collected === null) throw new Error(`callgrind wrote no totals to ${log}`)
    return { instructions: Number(collected[1]), errors: load.errors }
  } finally {
    rmSync(log, { force: true })
  }
}

async function measureOne(framework, variant, { small, large, connections }) {
  const a = await countRun(framework, variant, small, connections)
  const b = await countRun(framework, variant, large, connections)
  return { perRequest: (b.instructions - a.instructions) / (large - small), errors: a.errors + b.errors }
}

export async function run(ctx) {
  const title = 'instructions per request (callgrind, user space, all threads)'
  const valgrind = ensureCommand('valgrind', 'valgrind', { quick: ctx.quick }) !== null
  if (!valgrind) {
    warn('valgrind is not available (and could not be installed): the instructions suite is skipped')
    printTable(`${title}: skipped, valgrind not available`, ['framework', 'variant'], [])
    return { skipped: 'valgrind not available' }
  }
  const rounds = ctx.pairs ?? (ctx.quick ? 1 : 2)
  const counts = ctx.quick ? { small: 100, large: 300, connections: 10 } : { small: 2000, large: 42_000, connections: 20 }
  // --quick checks the script (each server start under valgrind takes seconds): one variant.
  const variants = ctx.quick ? VARIANTS.filter((v) => v.name === 'ours (max: Infinity)') : VARIANTS
  // Each variant takes about 1.5 minutes here: node:http alone unless --framework names another.
  const framework = ctx.framework ?? 'node'
  const measured = new Map(variants.map((v) => [v.name, []]))
  for (let round = 0; round < rounds; round++) {
    for (const variant of variants) measured.get(variant.name).push(await measureOne(framework, variant, counts))
  }
  const bare = measured.has('bare') ? median(measured.get('bare').map((m) => m.perRequest)) : null
  const rows = variants.map((variant) => {
    const values = measured.get(variant.name).map((m) => m.perRequest)
    const mid = median(values)
    return [
      framework,
      variant.name,
      fmtInt(mid),
      values.map((v) => fmtInt(v)).join(' / '),
      bare === null || variant.name === 'bare' ? '' : `${mid >= bare ? '+' : ''}${fmtInt(mid - bare)}`,
      bare === null || variant.name === 'bare' ? '' : fmtPct(((mid - bare) / bare) * 100, 2),
      String(measured.get(variant.name).reduce((sum, m) => sum + m.errors, 0)),
    ]
  })
  printTable(
    `${title}: ${rounds} round(s), runs of ${counts.small} and ${counts.large} requests over ${counts.connections} keep-alive connections`,
    ['framework', 'variant', 'instructions/req (median)', 'rounds', 'vs bare', 'vs bare %', 'errors'],
    rows,
  )
  return { rounds, ...counts, framework, variants: Object.fromEntries(measured) }
}
