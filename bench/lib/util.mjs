// Shared pieces of the benchmark runner: statistics, tables and charts, child processes pinned to a
// core, and the HTTP load generator (wrk, or autocannon as a visibly flagged fallback).
import { spawn, spawnSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..')
export const rootDir = join(benchDir, '..')

// ---- statistics ------------------------------------------------------------------------------

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Half the min–max range relative to the median, in percent: how far runs of one variant disagree. */
export function spreadPct(values) {
  const m = median(values)
  if (values.length < 2 || !Number.isFinite(m) || m === 0) return 0
  return ((Math.max(...values) - Math.min(...values)) / 2 / Math.abs(m)) * 100
}

export function sum(values) {
  return values.reduce((a, b) => a + b, 0)
}

// ---- formatting ------------------------------------------------------------------------------

export function fmtInt(n) {
  if (!Number.isFinite(n)) return String(n)
  return Math.round(n).toLocaleString('en-US')
}

export function fmtNum(n, digits = 1) {
  if (!Number.isFinite(n)) return String(n)
  return n.toFixed(digits)
}

export function fmtPct(n, digits = 1) {
  if (!Number.isFinite(n)) return String(n)
  return `${n >= 0 ? '+' : ''}${n.toFixed(digits)}%`
}

export function fmtSpread(values, digits = 1) {
  return `±${spreadPct(values).toFixed(digits)}%`
}

export function fmtMs(ms) {
  if (ms === null || Number.isNaN(ms)) return '-'
  if (!Number.isFinite(ms)) return String(ms)
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`
  return `${ms >= 100 ? ms.toFixed(0) : ms.toFixed(1)} ms`
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return String(n)
  if (Math.abs(n) >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`
  if (Math.abs(n) >= 10 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${Math.round(n)} B`
}

const NUMERIC = /^[-+±≥]?\s?[\d.,]/

/** Prints a titled table; `rows` are arrays of cells, figures right-aligned, text left-aligned. */
export function printTable(title, header, rows) {
  const cells = [header, ...rows].map((row) => row.map((cell) => String(cell)))
  const widths = header.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)))
  const line = (row, isHeader) =>
    `| ${row
      .map((cell, i) => {
        const text = cell ?? ''
        return isHeader || !NUMERIC.test(text) ? text.padEnd(widths[i]) : text.padStart(widths[i])
      })
      .join(' | ')} |`
  const out = [`\n${title}`, line(cells[0], true), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`]
  for (const row of cells.slice(1)) out.push(line(row, false))
  console.log(out.join('\n'))
}

/** Horizontal ASCII bars scaled to the largest value; `rows` are { label, value, text }. */
export function printBars(title, rows, width = 48) {
  const max = Math.max(...rows.map((r) => r.value), 0)
  const labelWidth = Math.max(...rows.map((r) => r.label.length))
  const out = [`\n${title}`]
  for (const row of rows) {
    const n = max > 0 && Number.isFinite(row.value) ? Math.max(row.value > 0 ? 1 : 0, Math.round((row.value / max) * width)) : 0
    out.push(`  ${row.label.padEnd(labelWidth)} |${'#'.repeat(n).padEnd(width)}| ${row.text}`)
  }
  console.log(out.join('\n'))
}

export function warn(message) {
  const bar = '!'.repeat(Math.min(100, message.length + 4))
  console.log(`\n${bar}\n! ${message}\n${bar}`)
}

// ---- environment -----------------------------------------------------------------------------

function commandPath(name) {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}

/**
 * Cores to pin the server and the load generator to, or null when pinning is impossible: 0 and 1,
 * or `KEEPALIVE_BENCH_CPUS=<server>,<client>` (the instructions suite counts the same whichever core
 * it runs on, so two of its runs can go at once, one with `1,0`).
 */
export function pinning() {
  if (availableParallelism() < 2 || commandPath('taskset') === null) return null
  const cpus = process.env.KEEPALIVE_BENCH_CPUS
  if (cpus === undefined || cpus === '') return { server: 0, client: 1 }
  const chosen = /^(\d+),(\d+)$/.exec(cpus)
  if (chosen === null) throw new Error(`KEEPALIVE_BENCH_CPUS must be two core numbers, "<server>,<client>" (got ${JSON.stringify(cpus)})`)
  return { server: Number(chosen[1]), client: Number(chosen[2]) }
}

/** Command prefix running a program pinned to one core (empty when pinning is unavailable). */
export function pinned(cpu) {
  return cpu === null || cpu === undefined || pinning() === null ? [] : ['taskset', '-c', String(cpu)]
}

/**
 * Makes sure wrk is present: when missing, installs it with apt-get (root only, bounded in time).
 * Returns its path or null.
 */
export function ensureWrk({ quick }) {
  return ensureCommand('wrk', 'wrk', { quick })
}

/**
 * Makes sure command `name` is present: when missing, installs Debian package `aptPackage` with
 * apt-get (root only, bounded in time). Returns its path or null.
 */
export function ensureCommand(name, aptPackage, { quick }) {
  const found = commandPath(name)
  if (found !== null) return found
  if (process.env.KEEPALIVE_BENCH_NO_INSTALL === '1') return null
  if (typeof process.getuid !== 'function' || process.getuid() !== 0 || commandPath('apt-get') === null) return null
  console.log(`${name} is missing: installing ${aptPackage} with apt-get ...`)
  const timeout = quick ? 120_000 : 300_000
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = () => spawnSync('apt-get', ['install', '-y', '-q', aptPackage], { stdio: 'ignore', timeout, env }).status === 0
  // The package lists may be missing or stale on a fresh machine: update once, then try again.
  if (!install()) {
    spawnSync('apt-get', ['update', '-q'], { stdio: 'ignore', timeout, env })
    install()
  }
  return commandPath(name)
}

export function wrkVersion(path) {
  const r = spawnSync(path, ['--version'], { encoding: 'utf8' })
  return (r.stdout + r.stderr)
    .split('\n')[0]
    .replace(/\s*Copyright.*/, '')
    .trim()
}

// ---- child processes -------------------------------------------------------------------------

/** A server config as a command-line argument; JSON with Infinity kept (as "Infinity"). */
export function configArg(config) {
  return JSON.stringify(config, (_, v) => (v === Infinity ? 'Infinity' : v))
}

/** Reads a configArg() back. */
export function parseConfigArg(text) {
  return JSON.parse(text, (_, v) => (v === 'Infinity' ? Infinity : v))
}

const children = new Set()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/** Shell prefix raising the open-file limit to `nofile` (or as far as the hard limit allows). */
function withFileLimit(nofile, command) {
  if (!nofile) return command
  const script = `ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`
  return ['sh', '-c', script, 'sh', ...command]
}

/**
 * Starts a bench child (server or client) with an IPC channel, optionally pinned to a core, with
 * a raised open-file limit, and run under `prefix` (a command such as valgrind that runs Node). Resolves once the child reported `{ ready: true, ... }`.
 */
export async function startChild(script, args, { cpu = null, nofile = 0, execArgv = [], prefix = [], readyTimeoutMs = 30_000 } = {}) {
  const command = withFileLimit(nofile, [...pinned(cpu), ...prefix, process.execPath, ...execArgv, join(benchDir, 'lib', script), ...args])
  const proc = spawn(command[0], command.slice(1), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], cwd: rootDir })
  children.add(proc)
  const pending = new Map()
  let nextId = 1
  let exited = false
  let readyResolve, readyReject
  const ready = new Promise((resolve, reject) => {
    readyResolve = resolve
    readyReject = reject
  })
  proc.on('message', (message) => {
    if (message.ready) return readyResolve(message)
    const waiter = pending.get(message.id)
    if (waiter === undefined) return
    pending.delete(message.id)
    clearTimeout(waiter.timer)
    if (message.error !== undefined) waiter.reject(new Error(`${script} ${waiter.cmd}: ${message.error}`))
    else waiter.resolve(message.result)
  })
  proc.on('exit', (code, signal) => {
    exited = true
    children.delete(proc)
    const error = new Error(`${script} exited (${signal ?? code})`)
    readyReject(error)
    for (const waiter of pending.values()) {
      clearTimeout(waiter.timer)
      waiter.reject(error)
    }
    pending.clear()
  })
  const readyTimer = setTimeout(() => readyReject(new Error(`${script} did not start in ${readyTimeoutMs} ms`)), readyTimeoutMs)
  let info
  try {
    info = await ready
  } catch (error) {
    proc.kill('SIGKILL')
    throw error
  } finally {
    clearTimeout(readyTimer)
  }
  return {
    info,
    pid: proc.pid,
    call(cmd, payload = {}, timeoutMs = 60_000) {
      if (exited) return Promise.reject(new Error(`${script} has exited`))
      const id = nextId++
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id)
          reject(new Error(`${script} ${cmd}: no answer in ${timeoutMs} ms`))
        }, timeoutMs)
        pending.set(id, { resolve, reject, timer, cmd })
        proc.send({ id, cmd, ...payload })
      })
    },
    /** SIGTERM, then SIGKILL if it has not exited after `killAfterMs`. */
    async stop({ killAfterMs = 5000 } = {}) {
      if (exited) return
      const gone = new Promise((resolve) => proc.once('exit', resolve))
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), killAfterMs)
      await gone
      clearTimeout(timer)
    },
  }
}

// ---- load generation -------------------------------------------------------------------------

function toMs(value, unit) {
  const n = Number(value)
  if (unit === 'us') return n / 1000
  if (unit === 's') return n * 1000
  if (unit === 'm') return n * 60_000
  return n
}

/** Parses wrk's report (with --latency). */
export function parseWrk(text) {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1])
  const latency = {}
  for (const m of text.matchAll(/^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$/gm)) latency[`p${m[1]}`] = toMs(m[2], m[3])
  const total = Number(/(\d+) requests in/.exec(text)?.[1])
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  const errors = socket === null ? 0 : Number(socket[1]) + Number(socket[2]) + Number(socket[3]) + Number(socket[4])
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0)
  return { rps, requests: total, p50: latency.p50, p99: latency.p99, errors, non2xx }
}

function runCommand(command, timeoutMs) {
  return new Promise((resolve, reject) => {
    const proc = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    children.add(proc)
    let out = ''
    proc.stdout.on('data', (d) => (out += d))
    proc.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
    proc.on('error', reject)
    proc.on('close', (code) => {
      clearTimeout(timer)
      children.delete(proc)
      if (code === 0) resolve(out)
      else reject(new Error(`${command.join(' ')} exited ${code}: ${out.slice(0, 500)}`))
    })
  })
}

/**
 * The load generator: wrk pinned to the client core when available; otherwise autocannon in a
 * Node.js child (flagged with a warning: a Node.js generator is slower than the server it loads).
 */
export function createLoadGenerator({ quick }) {
  // KEEPALIVE_BENCH_LOADGEN=autocannon forces the fallback (to check it, or where wrk misbehaves).
  const wrk = process.env.KEEPALIVE_BENCH_LOADGEN === 'autocannon' ? null : ensureWrk({ quick })
  const cpu = pinning()?.client ?? null
  if (wrk !== null) {
    return {
      name: wrkVersion(wrk),
      fallback: false,
      async run({ url, connections, seconds }) {
        const whole = Math.max(1, Math.round(seconds))
        const out = await runCommand([...pinned(cpu), wrk, '-t1', `-c${connections}`, `-d${whole}s`, '--timeout', '5s', '--latency', url], (whole + 20) * 1000)
        const result = parseWrk(out)
        if (!Number.isFinite(result.rps)) throw new Error(`could not read wrk's report:\n${out}`)
        return result
      },
    }
  }
  warn(
    `${process.env.KEEPALIVE_BENCH_LOADGEN === 'autocannon' ? 'KEEPALIVE_BENCH_LOADGEN=autocannon' : 'wrk is not available'}: load comes from autocannon (a Node.js load generator). Figures are NOT comparable to wrk runs.`,
  )
  return {
    name: 'autocannon (fallback)',
    fallback: true,
    async run({ url, connections, seconds }) {
      const out = await runCommand(
        [...pinned(cpu), process.execPath, join(benchDir, 'lib', 'autocannon-child.mjs'), url, String(connections), String(seconds)],
        (seconds + 20) * 1000,
      )
      return JSON.parse(out.trim().split('\n').pop())
    },
  }
}

/** Order of two variants in pair `i`: alternates which one goes first, so drift hits both alike. */
export function pairOrder(i, a, b) {
  return i % 2 === 0 ? [a, b] : [b, a]
}
