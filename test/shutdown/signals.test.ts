import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { agentRequest, type Outcome } from '../helpers/traffic.js'
import { useResources } from '../helpers/resources.js'

const resources = useResources()

/** Runs outside vitest, so it imports the built packages: `pnpm build` must have run. */
const APP = fileURLToPath(new URL('../fixtures/graceful-app.mjs', import.meta.url))

const REPORT_LINE = /^keepalive: drained in \d+\.\d\ds: (\d+) idle closed, (\d+) requests completed, (\d+) forced$/

interface App {
  child: ChildProcess
  port: number
  lines: string[]
  /** Resolves with the first stdout line (seen or still to come) matching `pattern`. */
  line(pattern: RegExp): Promise<string>
  exited: Promise<number | null>
}

async function startApp(env: Record<string, string> = {}): Promise<App> {
  const child = spawn(process.execPath, [APP], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  resources.add(child, (c) => {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  const lines: string[] = []
  const watchers: { pattern: RegExp; resolve: (line: string) => void }[] = []
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  createInterface({ input: child.stdout! }).on('line', (text) => {
    lines.push(text)
    for (const w of watchers.filter((w) => w.pattern.test(text))) {
      watchers.splice(watchers.indexOf(w), 1)
      w.resolve(text)
    }
  })
  function line(pattern: RegExp): Promise<string> {
    const seen = lines.find((l) => pattern.test(l))
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      watchers.push({ pattern, resolve })
      void exited.then((code) => reject(new Error(`app exited (${code}) before printing ${pattern}; stderr: ${stderr}`)))
    })
  }
  const listening = await line(/^listening \d+$/)
  return { child, port: Number(listening.split(' ')[1]), lines, line, exited }
}

function keepAliveAgent(): http.Agent {
  return resources.add(new http.Agent({ keepAlive: true, maxSockets: 1 }), (a) => a.destroy())
}

describe('gracefulShutdown in a child process (Express 5, built packages)', () => {
  it('on SIGTERM finishes the in-flight request, logs the report line and exits 0', async () => {
    const app = await startApp()
    const agent = keepAliveAgent()
    const warm = await agentRequest(agent, app.port, '/slow?ms=1')
    expect(warm).toMatchObject({ kind: 'ok', status: 200, headers: { connection: 'keep-alive' } })
    const idle = keepAliveAgent()
    expect(await agentRequest(idle, app.port, '/slow?ms=1')).toMatchObject({ kind: 'ok', status: 200 })

    const response = agentRequest(agent, app.port, '/slow?ms=400')
    await app.line(/^started \/slow$/)
    const signalledAt = performance.now()
    app.child.kill('SIGTERM')
    const outcome: Outcome = await response
    const code = await app.exited
    const seconds = (performance.now() - signalledAt) / 1000

    expect(outcome).toMatchObject({ kind: 'ok', status: 200, reused: true, headers: { connection: 'close', keepAlive: null } })
    expect(code).toBe(0)
    const report = app.lines.find((l) => REPORT_LINE.test(l))
    expect(report, app.lines.join('\n')).toBeDefined()
    // One idle keep-alive socket closed, the in-flight request (and only it) completed, nothing forced.
    expect(REPORT_LINE.exec(report!)!.slice(1)).toEqual(['1', '1', '0'])
    expect(seconds).toBeLessThan(5)
  })

  it('forces at once on a second SIGTERM during a long request and exits 1', async () => {
    const app = await startApp({ SHUTDOWN_TIMEOUT: '30' })
    const agent = keepAliveAgent()
    const response = agentRequest(agent, app.port, '/hang')
    await app.line(/^started \/hang$/)
    app.child.kill('SIGTERM')
    await app.line(/^draining$/)
    const signalledAt = performance.now()
    app.child.kill('SIGTERM')
    const code = await app.exited
    const seconds = (performance.now() - signalledAt) / 1000

    expect(code).toBe(1)
    expect(seconds).toBeLessThan(5) // not the 30 s deadline
    expect(app.lines).toContain('keepalive: second signal, closing every connection now')
    expect(await response).toMatchObject({ kind: 'failed', on: 'fresh' })
  })

  it('exits 1 with the forced count in its report when the deadline passes', async () => {
    const app = await startApp({ SHUTDOWN_TIMEOUT: '0.3' })
    const agent = keepAliveAgent()
    const response = agentRequest(agent, app.port, '/hang')
    await app.line(/^started \/hang$/)
    app.child.kill('SIGTERM')
    expect(await app.exited).toBe(1)
    const report = app.lines.find((l) => REPORT_LINE.test(l))
    expect(report, app.lines.join('\n')).toBeDefined()
    expect(REPORT_LINE.exec(report!)!.slice(1)).toEqual(['0', '0', '1'])
    expect(await response).toMatchObject({ kind: 'failed' })
  })

  it('keeps serving as usual and reports not-ready during the readiness delay, then drains', async () => {
    const app = await startApp({ READINESS_DELAY: '1' })
    const agent = keepAliveAgent()
    expect(await agentRequest(agent, app.port, '/ready')).toMatchObject({ kind: 'ok', status: 200 })
    app.child.kill('SIGTERM')
    await app.line(/^keepalive: SIGTERM received: reporting not ready; draining in 1s$/)
    const ready = await agentRequest(agent, app.port, '/ready')
    expect(ready).toMatchObject({ kind: 'ok', status: 503, reused: true, headers: { connection: 'keep-alive' } })
    const served = await agentRequest(agent, app.port, '/slow?ms=1')
    expect(served).toMatchObject({ kind: 'ok', status: 200, reused: true, headers: { connection: 'keep-alive' } })
    expect(app.lines).not.toContain('draining')
    await app.line(/^draining$/)
    expect(await app.exited).toBe(0)
    expect(app.lines.some((l) => REPORT_LINE.test(l))).toBe(true)
  })
})
