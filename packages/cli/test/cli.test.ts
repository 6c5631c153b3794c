// Runs the built bin, `node packages/cli/dist/cli.js`, as a user runs `keepalive`: exit status,
// the verdict table on stdout, progress on stderr. Run `pnpm build` first (`pnpm test` does).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { run } from '../src/command.js'
import { bare, closeAll, freePort, ours } from './servers.js'

const bin = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

interface Outcome {
  code: number | null
  stdout: string
  stderr: string
}

async function keepalive(...args: string[]): Promise<Outcome> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout, stderr }
}

beforeAll(() => {
  if (!existsSync(bin)) throw new Error('these tests run the built bin; run `pnpm build` first (missing packages/cli/dist/cli.js)')
})

afterEach(closeAll)

describe('keepalive probe (the built bin)', () => {
  it('prints ✓ for every check it carried out and ? for the one it did not, and exits 0 against createKeepAlive() with its defaults', async () => {
    const server = await ours()
    const { code, stdout, stderr } = await keepalive('probe', server.url)
    expect({ code, stderr: stderr.split('\n')[0] }).toEqual({
      code: 0,
      stderr: 'keepalive: waiting up to 10 s for the server to close an idle connection (advertised timeout=5)',
    })
    // Not a terminal: plain progress lines, the second with the measured time (5 s + 1 s grace).
    const closedAfter = /^keepalive: the server closed the idle connection after (\d+\.\d\d) s$/m.exec(stderr)
    expect(closedAfter, stderr).not.toBeNull()
    expect(Number(closedAfter![1])).toBeGreaterThanOrEqual(5)
    expect(Number(closedAfter![1])).toBeLessThan(9)
    const lines = stdout.split('\n')
    expect(lines[0]).toBe(`keepalive probe ${server.url}`)
    expect(lines).toContain('  ✓ Keep-Alive header    Connection: keep-alive, Keep-Alive: timeout=5, max=999')
    expect(stdout).toContain(
      '  ✓ max= countdown       max=999 → 980, one less each time over 20 responses; the close is 980 requests further, beyond --max-requests 20',
    )
    // max=999: no response of 20 says Connection: close, so the close is not checked, and not ✓.
    expect(lines).toContain(
      "  ? Connection: close    not checked: none of 20 responses carried Connection: close (the server's close is beyond --max-requests 20)",
    )
    expect(stdout).toMatch(/^ {2}✓ idle timeout {9}closed after \d\.\d\d s idle; advertised timeout=5( \(\d\.\d\d s beyond it\))?$/m)
    expect(stdout).not.toContain('✗')
    expect(stdout).toMatch(/^✓ the server does what its headers say, as far as checked: 1 not checked \(\d+\.\d s\)$/m)
    expect(stdout.match(/^ {2}✓ /gm)).toHaveLength(7)
  })

  it('prints ✗ with the evidence and exits 1 against Node advertising a timeout it does not keep', async () => {
    const server = await bare(
      (s) => (s.keepAliveTimeout = 1000),
      (_req, res) => {
        res.setHeader('Keep-Alive', 'timeout=30')
        res.end('hello\n')
      },
    )
    const { code, stdout } = await keepalive('probe', server.url, '--max-requests', '3')
    expect(code).toBe(1)
    expect(stdout).toMatch(/^ {2}✗ idle timeout {9}closed after \d\.\d\d s idle, \d+\.\d\d s before the advertised timeout=30$/m)
    expect(stdout).toMatch(/^ {2}✗ response headers {5}HTTP\/1\.0 response carried Keep-Alive: timeout=30 beside Connection: close/m)
    expect(stdout).toMatch(/^✗ 2 checks found behaviour that contradicts the headers/m)
  })

  it('prints the result as JSON with --json', async () => {
    const server = await ours({ timeout: 1, max: 3, grace: 0.2 })
    const { code, stdout } = await keepalive('probe', server.url, '--json', '--max-wait', '3')
    expect(code).toBe(0)
    const result = JSON.parse(stdout) as { ok: boolean; advertised: unknown; checks: { id: string; status: string }[] }
    expect(result.ok).toBe(true)
    expect(result.advertised).toEqual({ connection: 'keep-alive', keepAlive: 'timeout=1, max=2', timeout: 1, max: 2 })
    expect(result.checks.map((check) => `${check.id}:${check.status}`)).toEqual([
      'advertised:pass',
      'max:pass',
      'close:pass',
      'idle:pass',
      'http10:pass',
      'http10KeepAlive:pass',
      'conflicting:pass',
      'headers:pass',
    ])
  })

  it('exits 2 with a reason when the probe cannot run', async () => {
    const port = await freePort()
    const refused = await keepalive('probe', `http://127.0.0.1:${port}/`)
    expect(refused).toEqual({ code: 2, stdout: '', stderr: `keepalive: cannot connect to 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n` })

    const scheme = await keepalive('probe', 'ftp://127.0.0.1/')
    expect(scheme).toEqual({ code: 2, stdout: '', stderr: 'keepalive: probe needs an http:// or https:// URL, got "ftp://127.0.0.1/"\n' })

    const wait = await keepalive('probe', 'http://127.0.0.1/', '--max-wait', 'soon')
    expect(wait).toEqual({ code: 2, stdout: '', stderr: 'keepalive: --max-wait must be a number >= 0, got "soon"\n' })

    const usage = await keepalive()
    expect(usage.code).toBe(2)
    expect(usage.stderr).toMatch(/^Usage: keepalive probe <url> \[options\]/)

    const unknown = await keepalive('probe', 'http://127.0.0.1/', '--wait', '3')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/^keepalive: Unknown option '--wait'/)
  })

  it('prints help and version and exits 0', async () => {
    const help = await keepalive('--help')
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('--max-wait <s>')
    expect(await keepalive('--version')).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' })
  })
})

describe('keepalive probe progress on a terminal', () => {
  it('redraws one line while waiting on the idle connection and clears it before the table', async () => {
    const server = await ours({ timeout: 1, max: 3, grace: 0.3 })
    let stdout = ''
    let stderr = ''
    const code = await run(
      ['probe', server.url, '--max-wait', '3'],
      { write: (text: string) => (stdout += text), isTTY: false },
      { write: (text: string) => (stderr += text), isTTY: true },
    )
    expect(code).toBe(0)
    expect(stderr.startsWith('\r\x1b[2K  waiting for the idle connection to close: 0.0 s (advertised timeout=1; gives up at 3 s)'), stderr).toBe(true)
    // Redrawn at least once more during the ~1.3 s wait, and cleared at the end.
    expect(stderr.split('\r\x1b[2K').filter((part) => part.startsWith('  waiting')).length).toBeGreaterThan(2)
    expect(stderr.endsWith('\r\x1b[2K')).toBe(true)
    expect(stderr).not.toContain('\n')
    expect(stdout).toMatch(/^keepalive probe http:\/\/127\.0\.0\.1:\d+\/\n/)
  })
})
