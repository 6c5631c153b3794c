import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { MAX_SECONDS } from '@keepalive/core/check'
import { MAX_WAIT_CAP_SECONDS, probe, type ProbeProgress } from './probe.js'
import { formatResult } from './report.js'
import { canRedraw, colorEnabled, escapeTerminal, stringifyForTerminal, type ColorTarget } from './terminal.js'

const USAGE = `Usage: keepalive probe <url> [options]

Checks whether an HTTP/1.x server keeps the promises of its Connection and Keep-Alive headers:
max= counts down and the server closes when it says (within 1 s of its Connection: close), idle
connections live as long as advertised, HTTP/1.0 and conflicting requests are answered consistently.

Options:
  --max-requests <n>  requests sent on one connection to follow max= down (default 20)
  --max-wait <s>      seconds to wait for the server to close an idle connection
                      (default: the advertised timeout + 5, at most ${MAX_WAIT_CAP_SECONDS}; 10 if none is advertised)
  -k, --insecure      accept a self-signed or otherwise unverified TLS certificate
  --json              print the result, or the error, as JSON
  -h, --help          show this help
  -v, --version       show the version

Marks: ✓ consistent, ✗ contradicts the headers, – nothing to verify, ? not checked.
Colour: on a terminal; NO_COLOR (non-empty) or TERM=dumb turn it off, FORCE_COLOR=1 or 0 decides.
Exit status: 0 when behaviour matches the headers, 1 when it contradicts them, 2 when the probe could not run.
`

/** What the command writes to: process.stdout and process.stderr, or test doubles. */
export interface Output extends ColorTarget {
  write(text: string): unknown
}

/** Runs `keepalive <args>`; resolves with the exit status. `env` decides colour (`NO_COLOR`, `FORCE_COLOR`, `TERM`). */
export async function run(
  args: readonly string[],
  stdout: Output,
  stderr: Output,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<number> {
  // Decided before parsing, so a usage error under --json is JSON too.
  const json = args.includes('--json')
  const failWith = (code: string, message: string, usage = false): number => {
    if (json) stdout.write(`${stringifyForTerminal({ ok: false, error: { code, message } })}\n`)
    else stderr.write(`${escapeTerminal(message)}\n${usage ? `\n${USAGE}` : ''}`)
    return 2
  }
  let parsed
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        'max-requests': { type: 'string' },
        'max-wait': { type: 'string' },
        insecure: { type: 'boolean', short: 'k' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    })
  } catch (error) {
    return failWith('ERR_KEEPALIVE_USAGE', `keepalive: ${(error as Error).message}`, true)
  }
  const { values, positionals } = parsed
  if (values.help === true) {
    stdout.write(USAGE)
    return 0
  }
  if (values.version === true) {
    stdout.write(`${version()}\n`)
    return 0
  }
  const [command, url, ...rest] = positionals
  if (command !== 'probe' || url === undefined || rest.length > 0) {
    if (command === undefined || command === 'probe') {
      if (json) return failWith('ERR_KEEPALIVE_USAGE', 'keepalive: probe needs a URL: keepalive probe <url> [options]')
      stderr.write(USAGE)
      return 2
    }
    return failWith('ERR_KEEPALIVE_USAGE', `keepalive: unknown command ${JSON.stringify(command)}`, true)
  }
  const maxRequests = numberOption('--max-requests', values['max-requests'])
  const maxWait = numberOption('--max-wait', values['max-wait'])
  if (typeof maxRequests === 'string' || typeof maxWait === 'string') {
    return failWith('ERR_KEEPALIVE_USAGE', `keepalive: ${typeof maxRequests === 'string' ? maxRequests : maxWait}`)
  }
  const progress = createProgress(stderr, env)
  try {
    const result = await probe(url, { maxRequests, maxWait, insecure: values.insecure === true, onProgress: progress.report })
    progress.stop()
    stdout.write(json ? `${stringifyForTerminal(result)}\n` : formatResult(result, { color: colorEnabled(stdout, env) }))
    return result.ok ? 0 : 1
  } catch (error) {
    progress.stop()
    const message = error instanceof Error ? error.message : String(error)
    const code = (error as { code?: unknown } | null)?.code
    return failWith(typeof code === 'string' ? code : 'ERR_KEEPALIVE_PROBE', message.startsWith('keepalive:') ? message : `keepalive: ${message}`)
  }
}

/** A flag's number, undefined when not given, or the message saying what is wrong with it. */
function numberOption(flag: '--max-requests' | '--max-wait', text: string | undefined): number | undefined | string {
  if (text === undefined) return undefined
  const value = Number(text)
  if (text.trim() === '' || !Number.isFinite(value) || value < 0) return `${flag} must be a number >= 0, got ${JSON.stringify(text)}`
  if (flag === '--max-requests' && (!Number.isInteger(value) || value < 1)) return `${flag} must be a whole number >= 1, got ${JSON.stringify(text)}`
  // Node's timers hold at most 2^31 - 1 ms; a longer wait would end at once.
  if (flag === '--max-wait' && value > MAX_SECONDS) return `${flag} must be at most ${MAX_SECONDS} seconds, got ${JSON.stringify(text)}`
  return value
}

function version(): string {
  // dist/cli.js sits one folder below package.json, as src/command.ts does.
  const pkg = createRequire(import.meta.url)('../package.json') as { version: string }
  return pkg.version
}

/**
 * Progress of the idle wait on stderr: a line redrawn in place on a terminal, plain lines otherwise
 * (logs, pipes). Nothing else is printed while the probe runs.
 */
function createProgress(stream: Output, env: Readonly<Record<string, string | undefined>>): { report: (event: ProbeProgress) => void; stop: () => void } {
  const live = canRedraw(stream, env)
  let timer: ReturnType<typeof setInterval> | null = null
  const stop = (): void => {
    if (timer === null) return
    clearInterval(timer)
    timer = null
    stream.write('\r\x1b[2K')
  }
  const report = (event: ProbeProgress): void => {
    const advertised = event.advertised === null ? 'no timeout advertised' : `advertised timeout=${event.advertised}`
    if (event.type === 'idleWait') {
      if (!live) {
        stream.write(`keepalive: waiting up to ${event.limit} s for the server to close an idle connection (${advertised})\n`)
        return
      }
      const started = performance.now()
      const draw = (): void => {
        const elapsed = (performance.now() - started) / 1000
        stream.write(`\r\x1b[2K  waiting for the idle connection to close: ${elapsed.toFixed(1)} s (${advertised}; gives up at ${event.limit} s)`)
      }
      draw()
      timer = setInterval(draw, 100)
      timer.unref()
      return
    }
    stop()
    if (!live) {
      stream.write(
        event.elapsed === null
          ? `keepalive: the idle connection is still open after ${event.limit} s\n`
          : `keepalive: the server closed the idle connection after ${event.elapsed.toFixed(2)} s\n`,
      )
    }
  }
  return { report, stop }
}
