import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { probe, type ProbeProgress } from './probe.js'
import { formatResult } from './report.js'

const USAGE = `Usage: keepalive probe <url> [options]

Checks whether an HTTP/1.x server keeps the promises of its Connection and Keep-Alive headers:
max= counts down and the server closes when it says, idle connections live as long as advertised,
HTTP/1.0 and conflicting requests are answered consistently.

Options:
  --max-requests <n>  requests sent on one connection to follow max= down (default 20)
  --max-wait <s>      seconds to wait for the server to close an idle connection (default 10)
  -k, --insecure      accept a self-signed or otherwise unverified TLS certificate
  --json              print the result as JSON
  -h, --help          show this help
  -v, --version       show the version

Exit status: 0 when behaviour matches the headers, 1 when it contradicts them, 2 when the probe could not run.
`

/** What the command writes to: process.stdout and process.stderr, or test doubles. */
export interface Output {
  write(text: string): unknown
  isTTY?: boolean
}

/** Runs `keepalive <args>`; resolves with the exit status. */
export async function run(args: readonly string[], stdout: Output, stderr: Output): Promise<number> {
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
    stderr.write(`keepalive: ${(error as Error).message}\n\n${USAGE}`)
    return 2
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
    stderr.write(command === undefined || command === 'probe' ? USAGE : `keepalive: unknown command "${command}"\n\n${USAGE}`)
    return 2
  }
  const maxRequests = numberOption('--max-requests', values['max-requests'], 20)
  const maxWait = numberOption('--max-wait', values['max-wait'], 10)
  if (typeof maxRequests === 'string' || typeof maxWait === 'string') {
    stderr.write(`keepalive: ${typeof maxRequests === 'string' ? maxRequests : maxWait}\n`)
    return 2
  }
  const progress = createProgress(stderr)
  try {
    const result = await probe(url, { maxRequests, maxWait, insecure: values.insecure === true, onProgress: progress.report })
    stdout.write(values.json === true ? `${JSON.stringify(result, null, 2)}\n` : formatResult(result, { color: stdout.isTTY === true && process.env.NO_COLOR === undefined }))
    return result.ok ? 0 : 1
  } catch (error) {
    const message = (error as Error).message
    stderr.write(`${message.startsWith('keepalive:') ? message : `keepalive: ${message}`}\n`)
    return 2
  } finally {
    progress.stop()
  }
}

function numberOption(flag: string, text: string | undefined, fallback: number): number | string {
  if (text === undefined) return fallback
  const value = Number(text)
  if (text.trim() === '' || !Number.isFinite(value) || value < 0) return `${flag} must be a number >= 0, got ${JSON.stringify(text)}`
  if (flag === '--max-requests' && (!Number.isInteger(value) || value < 1)) return `${flag} must be a whole number >= 1, got ${JSON.stringify(text)}`
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
function createProgress(stream: Output): { report: (event: ProbeProgress) => void; stop: () => void } {
  const live = stream.isTTY === true
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
