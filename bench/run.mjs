// `pnpm bench [--quick] [--pairs N] [--seconds S] [--framework node|express|koa|fastify] [--concurrent] [--window N] [--only RE] [--jobs N] [suite ...]`: the benchmark suites of keepalive,
// against the built packages (run `pnpm build` first). Each suite runs its variants in one run,
// alternating, and prints a table of medians, spread and ratio. `--quick` runs every suite for a
// few seconds, to check the scripts, not to measure. `--concurrent` makes the like-with-like suite
// load A and B at the same time, on one core (see suites/like.mjs). The instructions suite takes
// `--window N` (requests per counted window, a multiple of 500), `--only RE` (the variants whose
// names match, with their references) and `--jobs N` (servers counted at once, one per core). Results also go to bench/.out/<date>.json.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { benchDir, createLoadGenerator, pinning, rootDir, warn, wrkVersion } from './lib/util.mjs'
import { checkWindow } from './suites/instructions.mjs'

/** What `--framework` takes: the like-with-like suite then measures that framework alone, the instructions suite that one instead of node:http. */
const FRAMEWORK_NAMES = ['node', 'express', 'koa', 'fastify']
const SUITES = ['overhead', 'like', 'instructions', 'decision', 'gain', 'shutdown', 'memory', 'pressure', 'cluster']

function parseArgs(argv) {
  const args = {
    quick: false,
    pairs: undefined,
    seconds: undefined,
    framework: undefined,
    concurrent: false,
    window: undefined,
    only: undefined,
    jobs: undefined,
    suites: [],
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--quick') args.quick = true
    else if (arg === '--pairs') args.pairs = Number(argv[++i])
    else if (arg === '--seconds') args.seconds = Number(argv[++i])
    else if (arg === '--framework') args.framework = argv[++i]
    else if (arg === '--concurrent') args.concurrent = true
    else if (arg === '--window') args.window = checkWindow(argv[++i], '--window')
    else if (arg === '--only') args.only = argv[++i]
    else if (arg === '--jobs') args.jobs = Number(argv[++i])
    else if (arg === '--help' || arg === '-h') {
      console.log(
        `usage: pnpm bench [--quick] [--pairs N] [--seconds S] [--framework ${FRAMEWORK_NAMES.join('|')}] [--concurrent] [--window N] [--only RE] [--jobs N] [${SUITES.join('|')} ...]`,
      )
      process.exit(0)
    } else if (SUITES.includes(arg)) args.suites.push(arg)
    else {
      console.error(`unknown argument ${arg}; suites: ${SUITES.join(', ')}`)
      process.exit(2)
    }
  }
  if (args.pairs !== undefined && !(Number.isInteger(args.pairs) && args.pairs >= 1)) throw new RangeError('--pairs must be a whole number >= 1')
  if (args.seconds !== undefined && !(args.seconds > 0)) throw new RangeError('--seconds must be > 0')
  if (args.only !== undefined) {
    try {
      new RegExp(args.only)
    } catch (error) {
      throw new RangeError(`--only must be a regular expression: ${error.message}`, { cause: error })
    }
  }
  const cores = availableParallelism()
  if (args.jobs !== undefined && !(Number.isInteger(args.jobs) && args.jobs >= 1 && args.jobs <= cores)) {
    throw new RangeError(`--jobs must be a whole number from 1 to the ${cores} cores here (got ${JSON.stringify(argv[argv.indexOf('--jobs') + 1])})`)
  }
  if (args.framework !== undefined && !FRAMEWORK_NAMES.includes(args.framework)) {
    throw new RangeError(`--framework must be one of ${FRAMEWORK_NAMES.join(', ')}, got ${JSON.stringify(args.framework)}`)
  }
  if (args.suites.length === 0) args.suites = SUITES
  return args
}

function version(name) {
  return JSON.parse(readFileSync(join(rootDir, 'node_modules', name, 'package.json'), 'utf8')).version
}

let args
try {
  args = parseArgs(process.argv.slice(2))
} catch (error) {
  console.error(error.message)
  process.exit(2)
}
for (const pkg of ['core', 'express', 'koa', 'fastify', 'prometheus', 'cluster']) {
  if (!existsSync(join(rootDir, 'packages', pkg, 'dist', 'index.js'))) {
    console.error(`packages/${pkg}/dist is missing: run \`pnpm build\` first (the bench measures the built packages).`)
    process.exit(1)
  }
}

const started = new Date()
const needsLoad = args.suites.some((s) => s === 'overhead' || s === 'like' || s === 'gain')
const load = needsLoad ? createLoadGenerator({ quick: args.quick }) : null
const pins = pinning()
const environment = {
  date: started.toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  loadavg: loadavg().map((n) => Number(n.toFixed(2))),
  loadGenerator: load?.name ?? null,
  pinning: pins === null ? null : `server on cpu ${pins.server}, load generator on cpu ${pins.client}`,
  versions: {
    express: version('express5'),
    koa: version('koa3'),
    fastify: version('fastify5'),
    'http-terminator': version('http-terminator'),
    stoppable: version('stoppable'),
    mitata: version('mitata'),
    wrk: spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' }).stdout.trim() ? wrkVersion('wrk') : null,
  },
  command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
}
console.log(`keepalive bench${args.quick ? ' (--quick: checks the scripts; figures are not measurements)' : ''}`)
console.log(`  ${environment.date}, Node ${environment.node}, ${environment.cpu} × ${environment.cores}, load average ${environment.loadavg.join(' ')}`)
console.log(
  `  Express ${environment.versions.express}, Koa ${environment.versions.koa}, Fastify ${environment.versions.fastify}; load: ${environment.loadGenerator ?? 'n/a'}`,
)
if (pins === null) warn('cannot pin processes to cores (needs taskset and 2+ cores): server and load generator share the CPUs')
if (environment.loadavg[0] > 0.7 && !args.quick) warn(`the machine is busy (1-minute load average ${environment.loadavg[0]}): figures will be noisy`)

const ctx = {
  quick: args.quick,
  pairs: args.pairs,
  seconds: args.seconds,
  framework: args.framework,
  concurrent: args.concurrent,
  window: args.window,
  only: args.only,
  jobs: args.jobs,
  load,
}
const results = { environment, suites: {} }
let failed = false
for (const name of args.suites) {
  const t0 = performance.now()
  console.log(`\n=== ${name} ===`)
  try {
    const suite = await import(`./suites/${name}.mjs`)
    results.suites[name] = await suite.run(ctx)
    console.log(`(${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s)`)
  } catch (error) {
    failed = true
    console.error(`suite ${name} failed:`, error)
  }
}

if (load?.fallback) warn('load came from autocannon, not wrk: the req/s and latency figures above are NOT comparable to wrk runs.')

const out = join(benchDir, '.out')
mkdirSync(out, { recursive: true })
const file = join(out, `${args.quick ? 'quick-' : ''}${started.toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(file, JSON.stringify(results, null, 2))
console.log(`\nresults written to ${file}`)
process.exit(failed ? 1 : 0)
