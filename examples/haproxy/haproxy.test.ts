// HAProxy (the config in haproxy.cfg.template, as docs/nginx-haproxy.md shows it) in front of the
// backend of backend.mjs, on free loopback ports, HAProxy in the foreground with its files in a
// temporary directory. HAProxy is installed with apt-get when missing; the tests are skipped,
// saying why, only when that cannot be done.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { KeepAliveController, KeepAliveOptions } from '@keepalive/core'
import { createBackend, options as guideOptions } from './backend.mjs'

const exec = promisify(execFile)
const template = readFileSync(new URL('./haproxy.cfg.template', import.meta.url), 'utf8')

let binary: string | null = null
let skipReason: string | null = null

async function findHaproxy(): Promise<string | null> {
  for (const candidate of ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy', '/usr/local/bin/haproxy']) if (existsSync(candidate)) return candidate
  try {
    const { stdout } = await exec('sh', ['-c', 'command -v haproxy'])
    return stdout.trim() || null
  } catch {
    return null // not on PATH either
  }
}

async function installHaproxy(): Promise<string> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const lock = ['-o', 'DPkg::Lock::Timeout=180'] // wait for another install rather than fail
  console.log('haproxy not found: installing it with apt-get')
  await exec('apt-get', [...lock, 'update'], { env, maxBuffer: 64 * 1024 * 1024 })
  await exec('apt-get', [...lock, 'install', '-y', '--no-install-recommends', 'haproxy'], { env, maxBuffer: 64 * 1024 * 1024 })
  const found = await findHaproxy()
  if (found === null) throw new Error('apt-get install haproxy succeeded but no haproxy binary was found')
  return found
}

beforeAll(async () => {
  binary = await findHaproxy()
  if (binary !== null) return
  try {
    binary = await installHaproxy()
  } catch (error) {
    skipReason = `haproxy is not installed and could not be installed: ${(error as Error).message.split('\n')[0]}`
    console.log(`skipping the HAProxy tests: ${skipReason}`)
  }
}, 600_000)

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

interface Running {
  ka: KeepAliveController
  url: string
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})
/** The backend with these options, and HAProxy in front of it with the guide's configuration. */
async function start(options: KeepAliveOptions): Promise<Running> {
  const { ka, server } = createBackend(options)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(async () => {
    await ka.shutdown({ timeout: 1 })
    server.closeAllConnections()
    if (server.listening) await new Promise((resolve) => server.close(resolve))
  })
  const dir = mkdtempSync(join(tmpdir(), 'keepalive-haproxy-'))
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
  const port = await freePort()
  const config = template
    .replaceAll('{{prefix}}', dir)
    .replaceAll('{{listen}}', `127.0.0.1:${port}`)
    .replaceAll('{{backend}}', `127.0.0.1:${(server.address() as AddressInfo).port}`)
  writeFileSync(join(dir, 'haproxy.cfg'), config)
  // -db: stay in the foreground, no daemon.
  const child: ChildProcess = spawn(binary!, ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
  })
  // HAProxy is ready once its frontend accepts connections: retry connecting until it does or exits.
  const exited = once(child, 'exit').then(([code, signal]) => {
    throw new Error(`haproxy exited (${code ?? signal}) before listening:\n${stderr}`)
  })
  for (;;) {
    const socket = net.connect(port, '127.0.0.1')
    const outcome = await Promise.race([
      once(socket, 'connect').then(
        () => true,
        () => false,
      ),
      exited,
    ])
    socket.destroy()
    if (outcome) break
    await new Promise((resolve) => setImmediate(resolve))
  }
  return { ka, url: `http://127.0.0.1:${port}/` }
}

async function get(url: string, agent: http.Agent): Promise<{ status: number; body: string }> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, { agent }, resolve).on('error', reject))
  let body = ''
  res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk))
  await once(res, 'end')
  return { status: res.statusCode!, body }
}

describe('HAProxy in front of a keepalive backend (examples/haproxy)', () => {
  it("reuses one upstream connection for a client's requests, with the guide's options (timeout: 65)", async (context) => {
    if (skipReason !== null) return context.skip(skipReason)
    expect(guideOptions).toEqual({ timeout: 65 })
    const { ka, url } = await start(guideOptions)
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    cleanups.push(async () => agent.destroy())
    for (let i = 0; i < 20; i++) expect(await get(url, agent)).toEqual({ status: 200, body: 'hello\n' })
    const stats = ka.stats()
    expect(stats.requests).toBe(20)
    expect(stats.timeout).toBe(65)
    // One upstream connection served them all: 19 of 20 requests on a reused connection.
    expect(stats.reuseRatio).toBe(0.95)
    expect(stats.connections.open).toBe(1)
  })

  it('drops an upstream connection the backend closed as idle and serves the next request on a new one, no 502', async (context) => {
    if (skipReason !== null) return context.skip(skipReason)
    // The same policy with a short timeout, so the backend's idle close happens within the test.
    const { ka, url } = await start({ timeout: 0.5, grace: 0.2 })
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    cleanups.push(async () => agent.destroy())
    expect((await get(url, agent)).status).toBe(200)
    const closed = await new Promise<{ reason: string }>((resolve) => ka.once('close', resolve))
    expect(closed.reason).toBe('idleTimeout')
    // The client's connection to HAProxy is still open; HAProxy must not reuse the closed upstream one.
    for (let i = 0; i < 5; i++) expect(await get(url, agent)).toEqual({ status: 200, body: 'hello\n' })
    expect(ka.stats()).toMatchObject({ requests: 6, closes: { idleTimeout: 1 } })
  })
})
