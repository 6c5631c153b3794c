// Runs the demo as a user would (`node examples/demo.mjs --json --quick`) and reads its JSON lines.
// The demo imports the built packages: run `pnpm build` first (`pnpm test` does).
import { once } from 'node:events'
import { expect, it } from 'vitest'
import { useExamples } from '../test/helpers/example.js'

const PHASES = ['steady', 'spike', 'recovery', 'shutdown']

interface Line {
  type: string
  [key: string]: unknown
}
interface Tick extends Line {
  phase: string
  stats: { requests: number; timeout: number; draining: boolean }
}

const { spawn } = useExamples(['core', 'express', 'koa', 'fastify'])

async function runDemo(...args: string[]): Promise<{ code: number | null; lines: Line[]; stderr: string }> {
  const child = spawn(['examples/demo.mjs', '--json', '--quick', ...args])
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const [code] = (await once(child, 'exit')) as [number | null]
  const lines = stdout
    .trim()
    .split('\n')
    .map((text) => {
      try {
        return JSON.parse(text) as Line
      } catch {
        throw new Error(`not a JSON line: ${text}\nstderr: ${stderr}`)
      }
    })
  return { code, lines, stderr }
}

it('runs the four phases in order with --json --quick, ends with a clean shutdown report and exits 0', async () => {
  const { code, lines, stderr } = await runDemo()
  expect(code, stderr).toBe(0)

  expect(lines[0]).toMatchObject({ type: 'start', framework: 'express', quick: true })
  expect(lines.filter((l) => l.type === 'phase').map((l) => l.name)).toEqual(PHASES)

  const ticks = lines.filter((l): l is Tick => l.type === 'tick')
  const order = ticks.map((t) => PHASES.indexOf(t.phase))
  expect(order.every((index, i) => index >= 0 && (i === 0 || index >= order[i - 1]!))).toBe(true)
  for (const phase of PHASES)
    expect(
      ticks.some((t) => t.phase === phase),
      `a tick in ${phase}`,
    ).toBe(true)
  expect(ticks.at(-1)!.stats.requests).toBeGreaterThan(0)
  expect(ticks.at(-1)!.stats.draining).toBe(true)

  // The spike makes the policy advertise a shorter timeout than the default 5 s.
  const spikeStart = lines.findIndex((l) => l.type === 'phase' && l.name === 'spike')
  const recoveryStart = lines.findIndex((l) => l.type === 'phase' && l.name === 'recovery')
  const spikePolicy = lines.slice(spikeStart, recoveryStart).filter((l) => l.type === 'policy')
  expect(Math.min(...spikePolicy.map((l) => l.timeout as number))).toBeLessThan(5)

  const report = lines.find((l) => l.type === 'report')
  expect(report).toBeDefined()
  expect(report!.report).toMatchObject({ forced: 0 })
  expect(report!.line).toMatch(/^keepalive: drained in \d+\.\d\ds: \d+ idle closed, \d+ requests completed, 0 forced$/)

  const summary = lines.at(-1)!
  expect(summary.type).toBe('summary')
  expect(summary.requests).toBeGreaterThan(0)
  // Every request the clients sent was answered, apart from new connections refused once the server stopped accepting.
  expect(summary.clients).toMatchObject({ lost: 0 })
})

it('runs on the Koa, Fastify and raw node:http servers too (--framework)', async () => {
  const frameworks = ['koa', 'fastify', 'raw']
  const runs = await Promise.all(frameworks.map((framework) => runDemo('--framework', framework)))
  for (const [i, { code, lines, stderr }] of runs.entries()) {
    expect(code, `${frameworks[i]}: ${stderr}`).toBe(0)
    expect(lines[0]).toMatchObject({ type: 'start', framework: frameworks[i] })
    expect(lines.filter((l) => l.type === 'phase').map((l) => l.name)).toEqual(PHASES)
    expect(lines.find((l) => l.type === 'report')?.report).toMatchObject({ forced: 0 })
  }
}, 60_000)
