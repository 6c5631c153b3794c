// docs/kubernetes.md's configuration, run: deployment.yaml's shutdown budget checked against the
// server's settings, and examples/kubernetes/server.mjs started as its own process, exactly as the
// pod runs it, then sent SIGTERM as the kubelet does after the preStop sleep.
// The server imports the built packages: run `pnpm build` first (`pnpm test` does).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Client } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))
const manifest = readFileSync(new URL('./deployment.yaml', import.meta.url), 'utf8')
const source = readFileSync(new URL('./server.mjs', import.meta.url), 'utf8')

function number(text: string, pattern: RegExp, what: string): number {
  const match = pattern.exec(text)
  if (match === null) throw new Error(`${what} not found`)
  return Number(match[1])
}

const gracePeriod = number(manifest, /^\s*terminationGracePeriodSeconds: (\d+)$/m, 'terminationGracePeriodSeconds')
const preStopSleep = number(manifest, /preStop:\n(?:\s*#.*\n)*\s*sleep:\n\s*seconds: (\d+)/, 'the preStop sleep')
const readinessDelay = number(source, /^const READINESS_DELAY = (\d+)$/m, 'READINESS_DELAY')
const drainTimeout = number(source, /^const DRAIN_TIMEOUT = (\d+)$/m, 'DRAIN_TIMEOUT')

let child: ChildProcessWithoutNullStreams | null = null
let client: Client | null = null
afterEach(async () => {
  await client?.destroy()
  client = null
  if (child !== null && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL')
    await once(child, 'exit')
  }
  child = null
})

describe('Kubernetes (examples/kubernetes, docs/kubernetes.md)', () => {
  it('sizes terminationGracePeriodSeconds for the preStop sleep, the readiness delay, the drain and a margin', () => {
    expect({ gracePeriod, preStopSleep, readinessDelay, drainTimeout }).toEqual({ gracePeriod: 30, preStopSleep: 5, readinessDelay: 5, drainTimeout: 10 })
    expect(preStopSleep + readinessDelay + drainTimeout + 5).toBeLessThanOrEqual(gracePeriod)
    // The probes point at the server's routes.
    expect(manifest).toMatch(/readinessProbe:\n\s*httpGet:\n\s*path: \/ready\n/)
    expect(manifest).toMatch(/livenessProbe:\n\s*httpGet:\n\s*path: \/live\n/)
    expect(source).toContain("app.get('/ready', readiness)")
  })

  it('keeps serving with keep-alive while /ready answers 503, then drains and exits 0 within the grace period', async () => {
    const started = spawn(process.execPath, ['examples/kubernetes/server.mjs'], { cwd: root, env: { ...process.env, PORT: '0' } })
    child = started
    let stdout = ''
    started.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    started.stderr.resume()
    const exited = once(started, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
    const line = async (pattern: RegExp): Promise<RegExpExecArray> => {
      for (;;) {
        const match = pattern.exec(stdout)
        if (match !== null) return match
        await Promise.race([once(started.stdout, 'data'), exited.then(() => Promise.reject(new Error(`server exited:\n${stdout}`)))])
      }
    }
    const url = (await line(/^listening on (http:\/\/127\.0\.0\.1:\d+)$/m))[1]!
    client = new Client(url, { pipelining: 1, keepAliveTimeoutThreshold: 0 })
    const get = async (path: string) => {
      const response = await client!.request({ method: 'GET', path })
      return { status: response.statusCode, headers: response.headers, body: await response.body.text() }
    }

    const first = await get('/')
    expect(first.headers).toMatchObject({ connection: 'keep-alive', 'keep-alive': 'timeout=65, max=999' })
    expect((await get('/ready')).status).toBe(200)

    started.kill('SIGTERM')
    const signalledAt = performance.now()
    await line(/^keepalive: SIGTERM received: reporting not ready; draining in 5s$/m)
    const notReady = await get('/ready')
    expect(notReady).toMatchObject({ status: 503, body: 'shutting down' })
    // During the readiness delay: served as usual, on the same connection, still keep-alive.
    const during = await get('/')
    expect(during.status).toBe(200)
    expect(during.headers.connection).toBe('keep-alive')
    expect((await get('/live')).status).toBe(200)

    const [code, signal] = await exited
    const took = (performance.now() - signalledAt) / 1000
    expect({ code, signal }).toEqual({ code: 0, signal: null })
    expect(stdout).toMatch(/^keepalive: drained in \d+\.\d\ds: 1 idle closed, 0 requests completed, 0 forced$/m)
    expect(took).toBeGreaterThanOrEqual(readinessDelay - 0.05)
    // What the kubelet allows after the preStop sleep, with room to spare.
    expect(preStopSleep + took).toBeLessThan(gracePeriod - drainTimeout)
  }, 30_000)
})
