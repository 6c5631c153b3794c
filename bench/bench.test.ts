// Runs `node bench/run.mjs --quick` as a user would (`pnpm bench --quick`), so the benchmark scripts
// cannot rot: it must exit 0 and every suite must print its table. Nothing is asserted about speed.
// The bench imports the built packages: run `pnpm build` first (`pnpm test` does).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Each suite's section header and the title its table starts with. */
const SUITES: Record<string, RegExp[]> = {
  overhead: [/^overhead: hello-world JSON/m],
  like: [/^like with like: CPU µs per request/m],
  instructions: [/^instructions per request \(callgrind/m],
  decision: [/^per-response cost/m],
  gain: [/^keep-alive gain:/m],
  shutdown: [/^shutdown, idle sockets used just before the call/m, /^shutdown targets \(#16\)/m],
  memory: [/^memory per idle keep-alive connection/m],
  pressure: [/^connection pressure:/m],
  cluster: [/^rolling reload of 4 workers under keep-alive load/m],
}

/** The text of one suite's section: from its `=== name ===` line to the next section. */
function section(output: string, name: string): string {
  const start = output.indexOf(`\n=== ${name} ===\n`)
  if (start < 0) return ''
  const next = output.indexOf('\n=== ', start + 1)
  return output.slice(start, next < 0 ? undefined : next)
}

describe('pnpm bench --quick', () => {
  it('runs every suite to the end and prints a table for each', { timeout: 600_000 }, async () => {
    const child = spawn(process.execPath, ['bench/run.mjs', '--quick'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    // Bounded: a bench that hangs fails here instead of holding the test run.
    const limit = setTimeout(() => child.kill('SIGKILL'), 540_000)
    const [code] = (await once(child, 'exit')) as [number | null]
    clearTimeout(limit)

    expect(code, output).toBe(0)
    for (const [name, titles] of Object.entries(SUITES)) {
      const text = section(output, name)
      expect(text, `suite ${name} printed no section:\n${output}`).not.toBe('')
      for (const title of titles) {
        const at = text.search(title)
        expect(at, `suite ${name} printed no table ${title}:\n${text}`).toBeGreaterThan(-1)
        // A title, a header row, a separator and at least one data row.
        const table = text.slice(at).split('\n').slice(1, 4)
        expect(table[0], text).toMatch(/^\| .+ \|$/)
        expect(table[1], text).toMatch(/^\|-[-|]+\|$/)
        expect(table[2], text).toMatch(/^\| .+ \|$/)
      }
    }
  })
})
