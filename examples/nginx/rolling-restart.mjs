// Rolling restart behind real nginx: `pnpm demo:nginx` (or `node examples/nginx/rolling-restart.mjs`).
// nginx with upstream keepalive in front of two Express backends (backend.mjs); constant GET and POST
// load through nginx; each backend in turn gets SIGTERM, exits and starts again on the same port.
// Runs it twice: with @keepalive/express + gracefulShutdown, and with the usual naive setup, then
// prints a table of what the clients saw. nginx is installed with apt-get when it is missing.
//
//   --quick            shorter phases and fewer clients (what the test runs)
//   --mode <m>         keepalive, naive or both (default both)
//   --rounds <n>       restart each backend n times (default 2)
//   --concurrency <n>  concurrent client loops (default 12, quick 8)
//   --readiness-delay <s>  the keepalive backends' readinessDelay (default 1; see README.md)
//   --post-share <f>   the share of requests that are POSTs, 0 to 1 (default 0.5)
//   --json             print the results as one JSON line at the end
//   --ensure-nginx     only find or install nginx: print its path, or the reason and exit 2
import { spawn, spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, rmSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { once } from 'node:events'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'

const here = path.dirname(fileURLToPath(import.meta.url))

/** nginx's upstream keepalive_timeout (its default, 60 s); the keepalive backends are told it via `behind`. */
const NGINX_KEEPALIVE_TIMEOUT = 60
/** The naive backends' server.keepAliveTimeout: below nginx's, as Node's 5 s default is; 1 s so the race shows in seconds. */
const NAIVE_KEEPALIVE_TIMEOUT = 1
/**
 * Seconds a keepalive backend keeps serving as usual after SIGTERM, reporting not-ready, before it
 * drains. Plain nginx has no readiness probe, so it keeps routing here during the delay (README.md).
 */
const READINESS_DELAY = 1

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    mode: { type: 'string', default: 'both' },
    rounds: { type: 'string' },
    concurrency: { type: 'string' },
    json: { type: 'boolean', default: false },
    'ensure-nginx': { type: 'boolean', default: false },
    'readiness-delay': { type: 'string' },
    'post-share': { type: 'string' },
  },
})

const settings = {
  rounds: Number(args.rounds ?? 2),
  concurrency: Number(args.concurrency ?? (args.quick ? 8 : 12)),
  /** Load before the first restart, so nginx holds idle upstream connections to both backends. */
  warmupMs: args.quick ? 1000 : 2000,
  /** Load after a backend is back, before the next restart, so nginx reuses connections to it again. */
  settleMs: args.quick ? 1200 : 2000,
  /** Upper bound on requests per mode, so a runaway loop ends. */
  maxRequests: 200_000,
  readinessDelay: Number(args['readiness-delay'] ?? READINESS_DELAY),
  postShare: Number(args['post-share'] ?? 0.5),
}
if (!(settings.postShare >= 0 && settings.postShare <= 1)) throw new RangeError(`--post-share must be between 0 and 1, got ${args['post-share']}`)
const modes = args.mode === 'both' ? ['keepalive', 'naive'] : [args.mode]
for (const mode of modes) {
  if (mode !== 'keepalive' && mode !== 'naive') throw new Error(`--mode must be keepalive, naive or both, got ${mode}`)
}

/** Every child process and temporary directory still around, so a signal can clean them up. */
const children = new Set()
const dirs = new Set()

function track(child) {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    const exits = [...children].map((child) => {
      child.kill('SIGKILL')
      return once(child, 'exit')
    })
    await Promise.all(exits)
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
    process.exit(1)
  })
}

/** Progress goes to stderr so that --json leaves stdout to the result. */
const log = (line) => process.stderr.write(`${line}\n`)

// ---- nginx ---------------------------------------------------------------------------------

function findNginx() {
  const candidates = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']
  for (const dir of candidates) {
    const file = path.join(dir, 'nginx')
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {
      continue // not in this directory
    }
  }
  return null
}

/** Finds nginx, or installs it with apt-get; resolves with `{ path }` or `{ reason }`. */
function ensureNginx() {
  const found = findNginx()
  if (found !== null) return { path: found }
  if (process.getuid?.() !== 0) return { reason: 'nginx is not installed and installing it with apt-get needs root' }
  if (spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status !== 0) return { reason: 'nginx is not installed and apt-get is not available' }
  log('nginx not found: apt-get update && apt-get install -y nginx')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const options = { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 600_000 }
  const update = spawnSync('apt-get', ['update'], options)
  if (update.status !== 0) return { reason: `apt-get update failed: ${lastLine(update.stderr ?? update.error?.message)}` }
  const install = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'nginx'], options)
  if (install.status !== 0) return { reason: `apt-get install nginx failed: ${lastLine(install.stderr ?? install.error?.message)}` }
  const installed = findNginx()
  return installed === null ? { reason: 'apt-get installed nginx but no nginx binary was found' } : { path: installed }
}

function lastLine(text) {
  return (
    String(text ?? '')
      .trim()
      .split('\n')
      .pop() ?? ''
  )
}

function nginxVersion(nginx) {
  const out = spawnSync(nginx, ['-v'], { encoding: 'utf8' })
  return /nginx\/(\S+)/.exec(`${out.stderr}${out.stdout}`)?.[1] ?? 'unknown'
}

/** Writes nginx.conf from the template and runs nginx in the foreground; resolves once it accepts connections. */
async function startNginx(nginx, dir, { port, backends }) {
  const template = await readFile(path.join(here, 'nginx.conf.template'), 'utf8')
  const values = {
    prefix: dir,
    listen: `127.0.0.1:${port}`,
    backendA: `127.0.0.1:${backends[0]}`,
    backendB: `127.0.0.1:${backends[1]}`,
    keepaliveTimeout: String(NGINX_KEEPALIVE_TIMEOUT),
  }
  const conf = template.replace(/\{\{(\w+)\}\}/g, (_, key) => values[key])
  await writeFile(path.join(dir, 'nginx.conf'), conf)
  // -e: the error log from the first line on, before the config is read (nginx >= 1.19.5).
  const flags = ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log'), '-g', 'daemon off; master_process off;']
  const child = track(spawn(nginx, flags, { stdio: ['ignore', 'ignore', 'pipe'] }))
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk))
  const exited = once(child, 'exit')
  // nginx in the foreground says nothing once it listens: try to connect until it accepts.
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nginx exited before listening:\n${stderr}`)
    if (await canConnect(port)) break
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`nginx did not listen on 127.0.0.1:${port} within 15 s:\n${stderr}`)
    }
    await sleep(50)
  }
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

async function freePort() {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  await once(server, 'close')
  return port
}

/** nginx's error log lines about upstreams, counted by cause (the part before the connection details). */
async function upstreamErrors(dir) {
  const text = await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '')
  const causes = {}
  for (const line of text.split('\n')) {
    const match = /\[(?:error|warn)\] \d+#\d+: \*\d+ (.+?)(?:, client:|$)/.exec(line)
    if (match === null || !match[1].includes('upstream')) continue
    const cause = match[1].replace(/ from upstream$/, '')
    causes[cause] = (causes[cause] ?? 0) + 1
  }
  return causes
}

// ---- backends ------------------------------------------------------------------------------

/** Starts backend.mjs as a child process; resolves once it prints its listening line. */
async function startBackend(mode, name, port) {
  const flags = [
    '--trace-accept-queue',
    ...(mode === 'naive'
      ? ['--naive', '--keep-alive-timeout', String(NAIVE_KEEPALIVE_TIMEOUT)]
      : ['--idle-timeout', String(NGINX_KEEPALIVE_TIMEOUT), '--readiness-delay', String(settings.readinessDelay)]),
  ]
  const child = track(
    spawn(process.execPath, [path.join(here, 'backend.mjs'), '--port', String(port), '--name', name, ...flags], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk))
  const exited = once(child, 'exit')
  await new Promise((resolve, reject) => {
    const onData = () => {
      if (!/^listening on /m.test(stdout)) return
      child.stdout.off('data', onData)
      resolve()
    }
    child.stdout.on('data', onData)
    exited.then(([code, signal]) => reject(new Error(`backend ${name} exited (${code ?? signal}) before listening:\n${stdout}${stderr}`)))
  })
  return {
    name,
    child,
    output: () => stdout + stderr,
    exited,
    /** SIGTERM, then wait for the process to exit; resolves with its exit code and what it printed after listening. */
    async terminate() {
      const before = stdout.length
      child.kill('SIGTERM')
      const [code, signal] = await exited
      return { code, signal, printed: (stdout.slice(before) + stderr).trim() }
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      return exited
    },
  }
}

// ---- load ----------------------------------------------------------------------------------

function emptyCounts() {
  return { requests: 0, posts: 0, ok: 0, s502: 0, s504: 0, other: 0, errors: 0, failedGet: 0, failedPost: 0 }
}

/** Constant GET and POST load through nginx on keep-alive connections, until stop(). */
function startLoad(origin, { concurrency, maxRequests, postShare }) {
  const pool = new Pool(origin, { connections: concurrency, pipelining: 1, headersTimeout: 30_000, bodyTimeout: 30_000 })
  const counts = emptyCounts()
  const samples = []
  let stopped = false

  function fail(method, what) {
    if (method === 'POST') counts.failedPost++
    else counts.failedGet++
    if (samples.length < 5) samples.push(`${method}: ${what}`)
  }

  async function loop(index) {
    for (let n = index; !stopped && counts.requests < maxRequests; n++) {
      // Exactly postShare of the requests are POSTs, spread evenly.
      const post = Math.floor((n + 1) * postShare) > Math.floor(n * postShare)
      counts.requests++
      if (post) counts.posts++
      try {
        const { statusCode, body } = await pool.request(
          post
            ? { method: 'POST', path: '/orders', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ item: 'book', quantity: n }) }
            : { method: 'GET', path: '/' },
        )
        const text = await body.text()
        if (statusCode >= 200 && statusCode < 300) counts.ok++
        else {
          if (statusCode === 502) counts.s502++
          else if (statusCode === 504) counts.s504++
          else counts.other++
          fail(post ? 'POST' : 'GET', `${statusCode} ${text.slice(0, 60).replace(/\s+/g, ' ')}`)
        }
      } catch (error) {
        counts.errors++
        fail(post ? 'POST' : 'GET', error.code ?? error.message)
      }
    }
  }

  const loops = Array.from({ length: concurrency }, (_, i) => loop(i))
  return {
    counts,
    samples,
    async stop() {
      stopped = true
      await Promise.all(loops)
      await pool.close()
    },
  }
}

// ---- the scenario --------------------------------------------------------------------------

async function runMode(nginx, mode) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'keepalive-nginx-'))
  dirs.add(dir)
  const ports = [await freePort(), await freePort()]
  const nginxPort = await freePort()
  const names = ['a', 'b']
  const backends = []
  let proxy = null
  let load = null
  const restarts = []
  try {
    for (const [i, name] of names.entries()) backends[i] = await startBackend(mode, name, ports[i])
    proxy = await startNginx(nginx, dir, { port: nginxPort, backends: ports })
    log(`${mode}: nginx on 127.0.0.1:${nginxPort}, backends on ${ports.join(', ')}; ${settings.concurrency} clients`)
    load = startLoad(`http://127.0.0.1:${nginxPort}`, settings)
    await sleep(settings.warmupMs)
    for (let round = 0; round < settings.rounds; round++) {
      for (const [i, name] of names.entries()) {
        const started = performance.now()
        const { code, signal, printed } = await backends[i].terminate()
        const down = performance.now()
        backends[i] = await startBackend(mode, name, ports[i])
        const up = performance.now()
        const queued = /accept queue at close: (\d+)/.exec(printed)
        restarts.push({
          backend: name,
          exit: code ?? signal,
          acceptQueue: queued === null ? null : Number(queued[1]),
          stopSeconds: (down - started) / 1000,
          startSeconds: (up - down) / 1000,
        })
        log(
          `${mode}: ${name} stopped in ${((down - started) / 1000).toFixed(2)} s (exit ${code ?? signal})${printed ? ` [${printed}]` : ''}, back in ${((up - down) / 1000).toFixed(2)} s`,
        )
        await sleep(settings.settleMs)
      }
    }
    await load.stop()
    const { counts, samples } = load
    load = null
    await proxy.stop()
    proxy = null
    const nginxErrors = await upstreamErrors(dir)
    return {
      mode,
      ...counts,
      failed: counts.requests - counts.ok,
      // Requests nginx had sent that a backend dropped (reset, or closed before answering).
      resets: Object.entries(nginxErrors).reduce((sum, [cause, n]) => sum + (/reset by peer|prematurely closed/.test(cause) ? n : 0), 0),
      restarts,
      samples,
      nginxErrors,
    }
  } finally {
    await load?.stop()
    await proxy?.stop()
    await Promise.all(backends.map((backend) => backend?.kill()))
    await rm(dir, { recursive: true, force: true })
    dirs.delete(dir)
  }
}

/** What each nginx error means for the client. */
const CAUSES = [
  [/^connect\(\) failed \(111/, 'backend down: nginx tried the other one, no client saw it'],
  [/prematurely closed|reset by peer/, 'the backend dropped a request nginx had sent: a GET is retried on the other backend, a POST gets 502'],
]

function table(results) {
  const rows = [
    ['mode', 'requests', '2xx', '502', '504', 'other', 'client errors', 'failed (GET / POST)', 'resets in nginx log', 'accept queue at close'],
    ...results.map((r) => [
      r.mode,
      r.requests,
      r.ok,
      r.s502,
      r.s504,
      r.other,
      r.errors,
      `${r.failed} (${r.failedGet} / ${r.failedPost})`,
      r.resets,
      r.restarts.map((x) => x.acceptQueue ?? '?').join(' '),
    ]),
  ].map((row) => row.map(String))
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)))
  const line = (row) => `| ${row.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`
  return [line(rows[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n')
}

async function main() {
  const nginx = ensureNginx()
  if (args['ensure-nginx']) {
    if (nginx.path === undefined) {
      console.log(nginx.reason)
      process.exitCode = 2
    } else console.log(nginx.path)
    return
  }
  if (nginx.path === undefined) throw new Error(nginx.reason)
  const expressDist = path.join(here, '..', '..', 'packages', 'express', 'dist', 'index.js')
  if (!existsSync(expressDist)) throw new Error('the backends run the built packages: run `pnpm build` first')

  const version = nginxVersion(nginx.path)
  const results = []
  for (const mode of modes) results.push(await runMode(nginx.path, mode))

  if (args.json) {
    console.log(JSON.stringify({ nginx: version, settings, results }))
    return
  }
  console.log(
    [
      '',
      `Rolling restart behind nginx ${version} (upstream keepalive 32, keepalive_timeout ${NGINX_KEEPALIVE_TIMEOUT}s, max_fails=0):`,
      `${settings.concurrency} clients sending GET and POST (${Math.round(settings.postShare * 100)} % POST) through nginx; each of 2 backends restarted ${settings.rounds === 1 ? 'once' : `${settings.rounds} times`}.`,
      `keepalive: @keepalive/express with behind: { idleTimeout: ${NGINX_KEEPALIVE_TIMEOUT} }, gracefulShutdown (readinessDelay ${settings.readinessDelay})`,
      `naive:     plain Express, keepAliveTimeout ${NAIVE_KEEPALIVE_TIMEOUT} s, SIGTERM -> server.close(); process.exit()`,
      '',
      table(results),
    ].join('\n'),
  )
  for (const result of results) {
    const causes = Object.entries(result.nginxErrors)
    if (causes.length === 0) continue
    console.log(`\n${result.mode}: nginx error log`)
    for (const [cause, count] of causes) {
      const meaning = CAUSES.find(([pattern]) => pattern.test(cause))?.[1]
      console.log(`  ${String(count).padStart(5)} × ${cause}${meaning ? `\n          (${meaning})` : ''}`)
    }
  }
}

await main()
