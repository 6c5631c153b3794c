// The probe against servers that try to attack or fool it: escape sequences in headers, lines and
// heads without end, responses nobody asked for, timeouts beyond Node's timers, a close that never
// comes. Each is a raw TCP server on 127.0.0.1 port 0 writing exact bytes.
import { performance } from 'node:perf_hooks'
import { afterEach, describe, expect, it } from 'vitest'
import { colorEnabled, probe, ProbeError, type ProbeProgress, type ProbeResult } from '@keepalive/cli'
import { run } from '../src/command.js'
import { bare, closeAll, freePort, ours, raw } from './servers.js'

afterEach(closeAll)

interface Outcome {
  code: number
  stdout: string
  stderr: string
}

/** Runs the command in-process with the given environment; neither stream is a terminal unless said. */
async function keepalive(args: string[], env: Record<string, string | undefined> = {}, tty = false): Promise<Outcome> {
  let stdout = ''
  let stderr = ''
  const code = await run(
    args,
    { write: (text: string) => (stdout += text), isTTY: tty, hasColors: () => tty },
    { write: (text: string) => (stderr += text), isTTY: false },
    env,
  )
  return { code, stdout, stderr }
}

/** Control characters a terminal would act on: C0 (but newline), DEL, C1. */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/

const status = (result: ProbeResult, id: string): string | undefined => result.checks.find((check) => check.id === id)?.status

/** Answers every request on a connection with `head` and a 2-byte body, and keeps it open. */
function answering(head: string): Promise<{ url: string }> {
  return raw((_request, _n, socket) => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${head}\r\nok`, 'latin1'))
}

describe('probe output a server cannot take over', () => {
  // OSC 0 retitles the window, CSI 2K erases the line, 0x9b is a one-byte CSI, a bare CR returns to
  // column 0, and ✓ sent as UTF-8 bytes arrives as latin1 text with C1 bytes in it.
  const evil = 'timeout=5\x1b]0;pwned\x07\x1b[2K\r  \xe2\x9c\x93 idle timeout fine\x9b31m, max=3'

  it('escapes every control character of a header value as \\xNN in the table', async () => {
    const server = await answering(`Connection: keep-alive\r\nKeep-Alive: ${evil}\r\n`)
    const { code, stdout } = await keepalive(['probe', server.url, '--max-requests', '2', '--max-wait', '0.2'])
    // It also keeps a plain HTTP/1.0 request alive: a ✗, and still nothing but escaped text.
    expect(code).toBe(1)
    expect(CONTROL.test(stdout), JSON.stringify(stdout)).toBe(false)
    expect(stdout).toContain(String.raw`Keep-Alive: timeout=5\x1b]0;pwned\x07\x1b[2K\x0d  â\x9c\x93 idle timeout fine\x9b31m, max=3`)
  })

  it('keeps --json parseable to the exact value while no raw control character reaches the terminal', async () => {
    const server = await answering(`Connection: keep-alive\r\nKeep-Alive: ${evil}\r\n`)
    const { code, stdout } = await keepalive(['probe', server.url, '--json', '--max-requests', '2', '--max-wait', '0.2'])
    expect(code).toBe(1)
    expect(CONTROL.test(stdout)).toBe(false)
    const result = JSON.parse(stdout) as ProbeResult
    expect(result.advertised.keepAlive).toBe(evil)
  })

  it('escapes what the server sent in an error message too', async () => {
    const server = await raw((_request, _n, socket) => socket.write('SSH-2.0-\x1b]0;pwned\x07\x9b\r\n\r\n', 'latin1'))
    const { code, stdout, stderr } = await keepalive(['probe', server.url])
    expect({ code, stdout }).toEqual({ code: 2, stdout: '' })
    expect(CONTROL.test(stderr)).toBe(false)
    expect(stderr).toBe(`keepalive: ${server.url} did not answer in HTTP/1.x: not an HTTP/1.x response: "SSH-2.0-\\u001b]0;pwned\\u0007\\x9b"\n`)
  })
})

describe('probe limits on what it buffers', () => {
  const sixteenMegabytes = 16 * 1024 * 1024

  it('stops at a header line that never ends (16 MB without CRLF), exiting 2 quickly with a clear message', async () => {
    const server = await raw((_request, _n, socket) => {
      socket.write('HTTP/1.1 200 OK\r\nX-Filler: ')
      socket.write(Buffer.alloc(sixteenMegabytes, 'a'))
    })
    const started = performance.now()
    const { code, stdout, stderr } = await keepalive(['probe', server.url])
    expect({ code, stdout }).toEqual({ code: 2, stdout: '' })
    expect(stderr).toBe(
      `keepalive: ${server.url} sent a response line (status, header, chunk-size or trailer) longer than 8192 bytes; the probe stopped reading\n`,
    )
    expect(performance.now() - started).toBeLessThan(5000)
  })

  it('stops at a chunk-size line or a trailer line that never ends', async () => {
    const sizeLine = await raw((_request, _n, socket) => {
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')
      socket.write(Buffer.alloc(sixteenMegabytes, 'f'))
    })
    const error = await probe(sizeLine.url).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ProbeError)
    expect(error).toMatchObject({ code: 'ERR_KEEPALIVE_PROBE_LIMIT', message: expect.stringContaining('longer than 8192 bytes') })

    const trailer = await raw((_request, _n, socket) => {
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: ')
      socket.write(Buffer.alloc(20_000, 'a'))
    })
    await expect(probe(trailer.url)).rejects.toMatchObject({ code: 'ERR_KEEPALIVE_PROBE_LIMIT', message: expect.stringContaining('longer than 8192 bytes') })
  })

  it('stops at a head of many short lines larger than 64 KiB', async () => {
    const server = await raw((_request, _n, socket) => {
      socket.write('HTTP/1.1 200 OK\r\n')
      for (let i = 0; i < 2000; i++) socket.write(`X-Filler-${i}: ${'a'.repeat(40)}\r\n`)
    })
    await expect(probe(server.url)).rejects.toThrow(
      new ProbeError(
        'ERR_KEEPALIVE_PROBE_LIMIT',
        `keepalive: ${server.url} sent response headers (or trailers) larger than 65536 bytes; the probe stopped reading`,
      ),
    )
  })

  it('stops when a server answers requests it was never sent', async () => {
    const server = await raw((_request, _n, socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n'.repeat(20))
    })
    const { code, stdout } = await keepalive(['probe', server.url, '--json'])
    expect(code).toBe(2)
    expect(JSON.parse(stdout)).toEqual({
      ok: false,
      error: {
        code: 'ERR_KEEPALIVE_PROBE_LIMIT',
        message: `keepalive: ${server.url} sent more than 8 responses to requests the probe did not send; the probe stopped reading`,
      },
    })
  })

  it('reads a head that arrives one byte per packet', async () => {
    const server = await raw((_request, n, socket) => {
      const head = `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${n === 2 ? 'Connection: close' : 'Connection: keep-alive\r\nKeep-Alive: timeout=5, max=1'}\r\nX-Pad: ${'p'.repeat(3000)}\r\n\r\nok`
      socket.setNoDelay(true)
      for (const byte of head) socket.write(byte)
      if (n === 2) socket.end()
    })
    const result = await probe(server.url, { maxWait: 0.2 })
    expect(result.advertised.keepAlive).toBe('timeout=5, max=1')
    expect(status(result, 'max')).toBe('pass')
  })
})

describe('probe waits', () => {
  it('refuses a --max-wait beyond what Node timers hold instead of passing at once', async () => {
    const cli = await keepalive(['probe', 'http://127.0.0.1:9/', '--max-wait', '3000000'])
    expect(cli).toEqual({ code: 2, stdout: '', stderr: 'keepalive: --max-wait must be at most 2147482 seconds, got "3000000"\n' })
    await expect(probe('http://127.0.0.1:9/', { closeWithin: 2 ** 31 })).rejects.toThrow(RangeError)
  })

  it('waits by default for the advertised timeout + 5 s, at most 130 s, then reports a close before it', async () => {
    const limits: number[] = []
    const onProgress = (event: ProbeProgress): void => {
      if (event.type === 'idleWait') limits.push(event.limit)
    }
    // Advertises a long timeout and closes at once: the idle check fails without waiting it out.
    for (const timeout of [65, 100_000]) {
      const server = await raw((_request, _n, socket) => {
        socket.end(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=${timeout}\r\n\r\nok`)
      })
      const result = await probe(server.url, { onProgress })
      expect(status(result, 'idle')).toBe('fail')
    }
    expect(limits).toEqual([70, 130])
  })

  it('shows an idle timeout longer than the wait as not checked (?), never ✓', async () => {
    const server = await ours({ timeout: 5, max: 3 })
    const { code, stdout } = await keepalive(['probe', server.url, '--max-wait', '0.3'])
    expect(code).toBe(0)
    expect(stdout).toMatch(/^ {2}\? idle timeout {9}not checked: still open after 0\.\d\d s idle, short of the advertised timeout=5 \(--max-wait 0\.3\)$/m)
    expect(stdout).not.toMatch(/✓ idle timeout/)
    expect(stdout).toMatch(/^✓ the server does what its headers say, as far as checked: 1 not checked \(\d+\.\d s\)$/m)
  })
})

describe('the Connection: close check', () => {
  it("fails Node's maxRequestsPerSocket, which says Connection: close and keeps the socket open", async () => {
    const server = await bare(
      (s) => (s.maxRequestsPerSocket = 3),
      (_req, res) => res.end('hello\n'),
    )
    const result = await probe(server.url, { maxWait: 0.3 })
    expect(status(result, 'close')).toBe('fail')
    expect(result.checks.find((check) => check.id === 'close')!.evidence).toBe(
      'response 3 carried Connection: close but the connection was still open 1.00 s later',
    )
    expect(result.ok).toBe(false)
  })

  it('passes a server that closes right after its own Connection: close', async () => {
    const server = await ours({ max: 2, timeout: 1, grace: 0.2 })
    const result = await probe(server.url, { maxWait: 0.3 })
    expect(status(result, 'close')).toBe('pass')
    expect(result.checks.find((check) => check.id === 'close')!.data).toMatchObject({ responses: 2, closeWithin: 1 })
  })
})

describe('--json errors', () => {
  it('prints usage and connection errors as JSON on stdout, nothing on stderr', async () => {
    const port = await freePort()
    const refused = await keepalive(['probe', `http://127.0.0.1:${port}/`, '--json'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toBe('')
    expect(JSON.parse(refused.stdout)).toEqual({
      ok: false,
      error: { code: 'ERR_KEEPALIVE_PROBE_CONNECT', message: `keepalive: cannot connect to 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}` },
    })
    const usage = await keepalive(['probe', 'http://127.0.0.1/', '--json', '--max-wait', 'soon'])
    expect([usage.code, usage.stderr, JSON.parse(usage.stdout)]).toEqual([
      2,
      '',
      { ok: false, error: { code: 'ERR_KEEPALIVE_USAGE', message: 'keepalive: --max-wait must be a number >= 0, got "soon"' } },
    ])
    const unknown = await keepalive(['probe', 'http://127.0.0.1/', '--json', '--wait', '1'])
    expect(JSON.parse(unknown.stdout)).toMatchObject({
      ok: false,
      error: { code: 'ERR_KEEPALIVE_USAGE', message: expect.stringMatching(/^keepalive: Unknown option '--wait'/) },
    })
    const scheme = await keepalive(['probe', 'ftp://127.0.0.1/', '--json'])
    expect(JSON.parse(scheme.stdout)).toEqual({
      ok: false,
      error: { code: 'ERR_KEEPALIVE_PROBE', message: 'keepalive: probe needs an http:// or https:// URL, got "ftp://127.0.0.1/"' },
    })
  })
})

describe('colour', () => {
  // As Node's tty.WriteStream#hasColors() does, any NO_COLOR in the env it is given turns colour off.
  const terminal = { isTTY: true, hasColors: (_count?: number, env?: Readonly<Record<string, string | undefined>>) => !('NO_COLOR' in (env ?? {})) }
  const pipe = { isTTY: false }

  it('follows FORCE_COLOR, then a non-empty NO_COLOR, TERM=dumb and the stream', () => {
    const cases: [object, Record<string, string>, boolean][] = [
      [terminal, {}, true],
      [pipe, {}, false],
      [terminal, { NO_COLOR: '1' }, false],
      // no-color.org: an empty NO_COLOR does not count, though Node's hasColors() would count it.
      [terminal, { NO_COLOR: '' }, true],
      [terminal, { TERM: 'dumb' }, false],
      [{ isTTY: true, hasColors: () => false }, {}, false],
      [pipe, { FORCE_COLOR: '1' }, true],
      [pipe, { FORCE_COLOR: '' }, true],
      [terminal, { FORCE_COLOR: '0' }, false],
      [terminal, { FORCE_COLOR: 'false' }, false],
      [pipe, { FORCE_COLOR: '1', NO_COLOR: '1', TERM: 'dumb' }, true],
    ]
    for (const [stream, env, expected] of cases) expect([env, colorEnabled(stream, env)]).toEqual([env, expected])
  })

  it('colours the table only when colour is on, and redraws progress only on a terminal that is not dumb', async () => {
    const server = await ours({ timeout: 1, max: 2, grace: 0.2 })
    const forced = await keepalive(['probe', server.url, '--max-wait', '0.2'], { FORCE_COLOR: '1' })
    expect(forced.stdout).toContain('\x1b[32m✓\x1b[0m Keep-Alive header')
    const off = await keepalive(['probe', server.url, '--max-wait', '0.2'], { NO_COLOR: '1' }, true)
    expect(off.stdout).not.toContain('\x1b[')
    const empty = await keepalive(['probe', server.url, '--max-wait', '0.2'], { NO_COLOR: '' }, true)
    expect(empty.stdout).toContain('\x1b[32m✓\x1b[0m')

    let stderr = ''
    await run(['probe', server.url, '--max-wait', '0.2'], { write: () => true }, { write: (text: string) => (stderr += text), isTTY: true }, { TERM: 'dumb' })
    expect(stderr).not.toContain('\x1b[')
    expect(stderr).toMatch(/^keepalive: waiting up to 0\.2 s for the server to close an idle connection/)
  })
})
