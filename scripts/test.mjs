// The whole test suite, as `pnpm test` runs it: build, type-check, lint, every vitest suite on this
// Node.js, the benchmark scripts in quick mode (alone, as they load both cores), then the wire-level
// suites (conformance, the hostile and model-based lifecycle suites, HTTPS/HTTP/2, shutdown) again on Node 22, 24 and 26.
// Ends with one line "N passed, N failed" and writes the same figures to .cache/test-summary.json.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { nodeBinary } from './node-binary.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const cache = join(root, '.cache')
mkdirSync(cache, { recursive: true })
const args = process.argv.slice(2)
const quick = args.includes('--no-matrix') || process.env.KEEPALIVE_NO_MATRIX === '1'
/** The suites that run on every Node.js version of the matrix. */
const MATRIX_SUITES = [
  'test/conformance',
  'test/hostile.test.ts',
  'test/model.test.ts',
  'test/header-paths.test.ts',
  'test/response-hook.test.ts',
  'test/node-versions.test.ts',
  'test/https.test.ts',
  'test/http2.test.ts',
  'test/shutdown',
  'test/tracking.test.ts',
]
const MATRIX_MAJORS = [22, 24, 26]
/** Suites under those paths whose subject does not depend on the Node version: Node 20 runs them once. */
const MATRIX_EXCLUDED = ['test/conformance.fallback.test.ts', 'test/shutdown/reconnect.test.ts', 'test/shutdown/spread.test.ts']

let passed = 0
let failed = 0
const lines = []

function run(label, command, commandArgs, env = {}) {
  console.log(`\n> ${label}`)
  const result = spawnSync(command, commandArgs, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } })
  return result.status === 0
}

function step(label, command, commandArgs) {
  const ok = run(label, command, commandArgs)
  if (!ok) failed++
  lines.push(`${ok ? 'ok  ' : 'FAIL'} ${label}`)
  return ok
}

function vitest(label, node, files, report, env = {}) {
  rmSync(report, { force: true })
  const vitestBin = join(root, 'node_modules', 'vitest', 'vitest.mjs')
  const binDir = dirname(node)
  const ok = run(label, node, [vitestBin, 'run', ...files, `--outputFile.json=${report}`], {
    PATH: `${binDir}:${process.env.PATH}`,
    ...env,
  })
  if (!existsSync(report)) {
    failed++
    lines.push(`FAIL ${label}: no report`)
    return
  }
  const r = JSON.parse(readFileSync(report, 'utf8'))
  // A file that fails to load has no tests of its own: count it as one failure.
  const broken = r.testResults.filter((f) => f.status === 'failed' && f.assertionResults.length === 0).length
  passed += r.numPassedTests
  failed += r.numFailedTests + broken
  if (!ok && r.numFailedTests + broken === 0) failed++
  lines.push(`${ok ? 'ok  ' : 'FAIL'} ${label}: ${r.numPassedTests} passed, ${r.numFailedTests + broken} failed`)
}

const pnpm = process.platform === 'win32' ? 'pnpm.cmd' : 'pnpm'
const built = step('build', pnpm, ['-r', '--filter', './packages/*', 'run', 'build'])
step('typecheck', process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'])
step('lint', process.execPath, [join(root, 'node_modules', 'eslint', 'bin', 'eslint.js'), '.'])
step('format', process.execPath, [join(root, 'node_modules', 'prettier', 'bin', 'prettier.cjs'), '--check', '.'])
if (built) {
  vitest(`vitest on Node ${process.versions.node}`, process.execPath, ['--exclude', 'bench/**'], join(cache, 'vitest-report.json'))
  // `pnpm bench --quick` keeps both cores busy: run alone, after the timing-sensitive suites.
  vitest('benchmark scripts (--quick)', process.execPath, ['bench'], join(cache, 'vitest-bench.json'))
  if (!quick) {
    for (const major of MATRIX_MAJORS) {
      let node
      try {
        node = nodeBinary(major)
      } catch (error) {
        failed++
        lines.push(`FAIL Node ${major}: could not get a binary: ${error.message}`)
        continue
      }
      const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim()
      vitest(
        `wire suites on Node ${version}`,
        node,
        [...MATRIX_SUITES, ...MATRIX_EXCLUDED.flatMap((file) => ['--exclude', file])],
        join(cache, `vitest-node${major}.json`),
        {
          KEEPALIVE_MODEL_RUNS: '4',
        },
      )
    }
  }
}

console.log(`\n${lines.join('\n')}`)
writeFileSync(join(cache, 'test-summary.json'), JSON.stringify({ passed, failed }))
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
