// The probe against real nginx (`keepalive_timeout 2 2`, `keepalive_requests 5`), run in the
// foreground on a free loopback port with its config, pid and logs in a temporary prefix. nginx is
// installed with apt-get when missing; the tests are skipped, saying why, only if that fails.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { probe, formatResult } from '@keepalive/cli'
import { allPass, statuses } from './checks.js'
import { freePort } from './servers.js'

const exec = promisify(execFile)
const bin = fileURLToPath(new URL('../dist/cli.js', import.meta.url))

let nginx: ChildProcess | null = null
let prefix: string | null = null
let url = ''
let skipReason: string | null = null

/** The nginx binary: on PATH, or where Debian installs it (/usr/sbin is not always on PATH). */
async function findNginx(): Promise<string | null> {
  for (const candidate of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']) if (existsSync(candidate)) return candidate
  try {
    const { stdout } = await exec('sh', ['-c', 'command -v nginx'])
    return stdout.trim() || null
  } catch {
    return null // not on PATH either
  }
}

async function installNginx(): Promise<string> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  // Waits for the dpkg lock rather than failing when another install is running.
  const lock = ['-o', 'DPkg::Lock::Timeout=180']
  console.log('nginx not found: installing it with apt-get')
  await exec('apt-get', [...lock, 'update'], { env, maxBuffer: 64 * 1024 * 1024 })
  await exec('apt-get', [...lock, 'install', '-y', '--no-install-recommends', 'nginx'], { env, maxBuffer: 64 * 1024 * 1024 })
  const found = await findNginx()
  if (found === null) throw new Error('apt-get install nginx succeeded but no nginx binary was found')
  return found
}

/** Starts nginx in the foreground; resolves once it has written its pid file (after binding the port). */
async function startNginx(binary: string, dir: string, port: number): Promise<ChildProcess> {
  const config = `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 2 2;
  keepalive_requests 5;
  server {
    listen 127.0.0.1:${port};
    location / { return 200 "hello\\n"; }
  }
}
`
  writeFileSync(join(dir, 'nginx.conf'), config)
  const pidFile = join(dir, 'nginx.pid')
  const watcher = watch(dir)
  try {
    const child = spawn(binary, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (existsSync(pidFile)) resolve()
      }
      watcher.on('change', check)
      child.once('exit', (code, signal) => {
        const log = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''
        reject(new Error(`nginx exited (${code ?? signal}) before starting:\n${stderr}${log}`))
      })
      child.once('error', reject)
      check()
    })
    return child
  } finally {
    watcher.close()
  }
}

beforeAll(async () => {
  let binary = await findNginx()
  if (binary === null) {
    try {
      binary = await installNginx()
    } catch (error) {
      skipReason = `nginx is not installed and could not be installed: ${(error as Error).message.split('\n')[0]}`
      console.log(`skipping the nginx tests: ${skipReason}`)
      return
    }
  }
  prefix = mkdtempSync(join(tmpdir(), 'keepalive-cli-nginx-'))
  const port = await freePort()
  nginx = await startNginx(binary, prefix, port)
  url = `http://127.0.0.1:${port}/`
}, 600_000)

afterAll(async () => {
  if (nginx !== null && nginx.exitCode === null && nginx.signalCode === null) {
    const exited = once(nginx, 'exit')
    nginx.kill('SIGTERM')
    await exited
  }
  if (prefix !== null) rmSync(prefix, { recursive: true, force: true })
})

describe('keepalive probe against nginx (keepalive_timeout 2 2; keepalive_requests 5)', () => {
  it('finds nginx consistent: timeout=2 without max=, closed idle after about 2 s, Connection: close on the fifth response', async (context) => {
    if (skipReason !== null) {
      context.skip(skipReason)
      return
    }
    const result = await probe(url, { maxWait: 6 })
    console.log(formatResult(result))
    expect(result.ok).toBe(true)
    expect(result.advertised).toEqual({ connection: 'keep-alive', keepAlive: 'timeout=2', timeout: 2, max: null })
    // nginx sends no max=: nothing to count down, but its close after keepalive_requests is consistent.
    expect(statuses(result)).toEqual(allPass({ max: 'skip' }))
    const max = result.checks.find((check) => check.id === 'max')!
    expect(max.evidence).toMatch(/^no max= advertised; the server closed after 5 responses \(Connection: close\), \d+ ms after the last$/)
    const idle = result.checks.find((check) => check.id === 'idle')!
    expect(idle.data.measured as number).toBeGreaterThanOrEqual(1.75)
    expect(idle.data.measured as number).toBeLessThan(4.5)
    // nginx keeps HTTP/1.0 connections alive when asked.
    expect(result.checks.find((check) => check.id === 'http10KeepAlive')!.evidence).toBe(
      'Connection: keep-alive, Keep-Alive: timeout=2; a second request on the connection was answered',
    )
  })

  it('exits 0 from the built bin with the verdict table', async (context) => {
    if (skipReason !== null) {
      context.skip(skipReason)
      return
    }
    const child = spawn(process.execPath, [bin, 'probe', url, '--max-wait', '6'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } })
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.resume()
    const [code] = (await once(child, 'close')) as [number | null]
    expect(code, stdout).toBe(0)
    expect(stdout).toContain('  ✓ Keep-Alive header    Connection: keep-alive, Keep-Alive: timeout=2\n')
    expect(stdout).toMatch(/^ {2}✓ idle timeout {9}closed after \d\.\d\d s idle; advertised timeout=2/m)
    expect(stdout).not.toContain('✗')
  })
})
