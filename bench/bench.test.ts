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

describe('bench options', () => {
  it.each([
    [['--window', '700'], /--window must be a whole number of requests, a multiple of 500 \(got "700"\)/],
    [['--jobs', '0'], /--jobs must be a whole number from 1 to the \d+ cores here \(got "0"\)/],
    [['--only', '('], /--only must be a regular expression/],
  ])('rejects %j naming the option and what it allows', async (options, message) => {
    const child = spawn(process.execPath, ['bench/run.mjs', ...options, 'instructions'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    const [code] = (await once(child, 'exit')) as [number | null]
    expect(code, output).toBe(2)
    expect(output).toMatch(message)
  })

  it('--only keeps every line a selected line is read against or takes its figures from', async () => {
    type Variant = { name: string; same?: string; against?: string; frameworks?: string[] }
    const suite = (await import(new URL('./suites/instructions.mjs', import.meta.url).href)) as {
      VARIANTS: Variant[]
      selectVariants: (variants: Variant[], only: string | undefined) => Variant[]
    }
    const express = suite.VARIANTS.filter((v) => v.frameworks === undefined || v.frameworks.includes('express'))
    const names = suite.selectVariants(express, 'against the no-op layer recycling').map((v) => v.name)
    expect(names).toEqual([
      'bare + maxRequestsPerSocket: 1000',
      'ours (defaults)',
      'bare + no-op app.use() layer + maxRequestsPerSocket: 1000',
      'ours (defaults), against the no-op layer recycling as often',
    ])
    expect(suite.selectVariants(express, undefined)).toEqual(express)
    expect(() => suite.selectVariants(express, 'no such line')).toThrow(/--only "no such line" matches no variant/)
  })
})
