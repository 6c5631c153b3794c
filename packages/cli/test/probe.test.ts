import { afterEach, describe, expect, it } from 'vitest'
import { probe, formatResult, type CheckId, type ProbeProgress, type ProbeResult } from '@keepalive/cli'
import { allPass, statuses } from './checks.js'
import { bare, closeAll, freePort, ours, raw, selfSigned } from './servers.js'

afterEach(closeAll)

function evidence(result: ProbeResult, id: CheckId): string {
  return result.checks.find((check) => check.id === id)!.evidence
}

function data(result: ProbeResult, id: CheckId): Record<string, unknown> {
  return result.checks.find((check) => check.id === id)!.data
}

describe('probe() against a server using createKeepAlive', () => {
  it('finds every check consistent: max= counts down to the close and the idle socket lives past timeout=', async () => {
    const server = await ours({ timeout: 1, max: 4, grace: 0.5 })
    const events: ProbeProgress['type'][] = []
    const result = await probe(server.url, { maxWait: 5, onProgress: (event) => events.push(event.type) })

    expect(result.ok).toBe(true)
    expect(statuses(result)).toEqual(allPass())
    expect(result.advertised).toEqual({ connection: 'keep-alive', keepAlive: 'timeout=1, max=3', timeout: 1, max: 3 })
    expect(data(result, 'max')).toEqual({ advertised: 3, responses: 4, maxes: [3, 2, 1, null] })
    expect(evidence(result, 'max')).toMatch(/^max=3, max=2, max=1, then Connection: close on response 4; closed \d+ ms after it$/)
    expect(evidence(result, 'close')).toMatch(/^response 4 carried Connection: close; the server closed \d+ ms after it$/)
    // Advertised 1 s, kept 1 s + 0.5 s grace; measured from when the probe read the response, so
    // a busy machine can shorten it a little: generous bounds.
    const measured = data(result, 'idle').measured as number
    expect(measured).toBeGreaterThanOrEqual(1)
    expect(measured).toBeLessThan(4)
    expect(evidence(result, 'idle')).toMatch(/^closed after \d\.\d\d s idle; advertised timeout=1( \(\d\.\d\d s beyond it\))?$/)
    expect(evidence(result, 'http10')).toMatch(/^Connection: close; closed \d+ ms after the response$/)
    expect(evidence(result, 'conflicting')).toMatch(/answered Connection: close and closed \d+ ms later \(close wins\)$/)
    expect(events).toEqual(['idleWait', 'idleDone'])
    // JSON-serialisable as it is.
    expect(JSON.parse(JSON.stringify(result))).toEqual(result)
  })

  it('follows max= only as far as maxRequests and says the close was not checked', async () => {
    const server = await ours({ timeout: 1, grace: 0.2 })
    const result = await probe(server.url, { maxRequests: 5, maxWait: 5 })
    expect(result.ok).toBe(true)
    expect(statuses(result).max).toBe('pass')
    expect(data(result, 'max')).toEqual({ advertised: 999, responses: 5, maxes: [999, 998, 997, 996, 995] })
    expect(evidence(result, 'max')).toBe('max=999 → 995, one less each time over 5 responses; the close is 995 requests further, beyond --max-requests 5')
    expect(statuses(result).close).toBe('unchecked')
    expect(evidence(result, 'close')).toBe("not checked: none of 5 responses carried Connection: close (the server's close is beyond --max-requests 5)")
  })

  it('probes https with a self-signed certificate when insecure, and refuses it otherwise', async () => {
    const server = await ours({ timeout: 1, max: 3, grace: 0.2 }, selfSigned())
    const result = await probe(server.url, { insecure: true, maxWait: 5 })
    expect(result.ok).toBe(true)
    expect(result.url).toMatch(/^https:/)
    expect(result.advertised.keepAlive).toBe('timeout=1, max=2')
    expect(statuses(result).max).toBe('pass')
    await expect(probe(server.url)).rejects.toThrow(
      /^keepalive: cannot connect to 127\.0\.0\.1:\d+: self[- ]signed certificate \(pass --insecure to accept it\)$/,
    )
  })
})

describe('probe() against servers whose behaviour contradicts their headers', () => {
  it('fails the idle check when Node closes long before the Keep-Alive: timeout=30 the app set', async () => {
    const server = await bare(
      (s) => (s.keepAliveTimeout = 1000),
      (_req, res) => {
        res.setHeader('Keep-Alive', 'timeout=30')
        res.end('hello\n')
      },
    )
    const result = await probe(server.url, { maxRequests: 3, maxWait: 10 })
    expect(result.ok).toBe(false)
    expect(result.advertised.timeout).toBe(30)
    expect(statuses(result).idle).toBe('fail')
    expect(data(result, 'idle').measured as number).toBeLessThan(10)
    expect(evidence(result, 'idle')).toMatch(/^closed after \d\.\d\d s idle, \d+\.\d\d s before the advertised timeout=30$/)
    // The same header also rides on Node's closing responses.
    expect(statuses(result).headers).toBe('fail')
    expect(evidence(result, 'headers')).toContain('HTTP/1.0 response carried Keep-Alive: timeout=30 beside Connection: close')
  })

  it("fails the countdown when max= stays the same (Node's own maxRequestsPerSocket)", async () => {
    const server = await bare(
      (s) => (s.maxRequestsPerSocket = 3),
      (_req, res) => res.end('hello\n'),
    )
    const result = await probe(server.url, { maxWait: 0.5 })
    expect(result.ok).toBe(false)
    expect(statuses(result).max).toBe('fail')
    expect(evidence(result, 'max')).toBe('response 2 advertised max=3, expected max=2 (max=3, max=3)')
    // timeout=5 is not reached within maxWait 0.5: not checked, which is no verdict either way.
    expect(statuses(result).idle).toBe('unchecked')
    expect(evidence(result, 'idle')).toBe('not checked: still open after 0.50 s idle, short of the advertised timeout=5 (--max-wait 0.5)')
  })

  it('fails when the socket stays open after Connection: close, and when keep-alive ignores a close in the request', async () => {
    // Says Connection: close on the third response and never closes; keeps anything else alive.
    const server = await raw((request, n, socket) => {
      const closing = n === 3 || request.headers.some((h) => /^connection:\s*close$/i.test(h))
      const keepAlive = closing ? 'Connection: close\r\n' : 'Connection: keep-alive\r\nKeep-Alive: timeout=5, max=' + (3 - n) + '\r\n'
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 3\r\n${keepAlive}\r\nok\n`)
    })
    const result = await probe(server.url, { maxWait: 0.3, closeWithin: 0.3 })
    expect(result.ok).toBe(false)
    expect(statuses(result).max).toBe('fail')
    expect(evidence(result, 'max')).toBe('response 3 carried Connection: close but the connection was still open 0.30 s later')
    expect(statuses(result).conflicting).toBe('fail')
    expect(evidence(result, 'conflicting')).toBe(
      'Connection: keep-alive and Connection: close was answered with Connection: close but the connection was still open 0.30 s later',
    )
    // A plain HTTP/1.0 request answered with keep-alive it did not ask for.
    expect(statuses(result).http10).toBe('fail')
  })

  it('fails the countdown when the server closes the connection before max= runs out', async () => {
    const server = await raw((_request, n, socket) => {
      if (n === 2) {
        socket.destroy()
        return
      }
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5, max=9\r\n\r\nok\n')
    })
    const result = await probe(server.url, { maxWait: 0.3, closeWithin: 0.3 })
    expect(statuses(result).max).toBe('fail')
    expect(evidence(result, 'max')).toBe(
      'the server closed the connection instead of answering request 2, although response 1 carried Connection: keep-alive, Keep-Alive: timeout=5, max=9',
    )
    expect(statuses(result).http10KeepAlive).toBe('fail')
    expect(evidence(result, 'http10KeepAlive')).toBe(
      'Connection: keep-alive, Keep-Alive: timeout=5, max=9, then the server closed the connection instead of answering request 2',
    )
  })

  it('fails the header check on two Keep-Alive headers in one response', async () => {
    const server = await bare(
      () => {},
      (_req, res) => {
        res.setHeader('Keep-Alive', ['timeout=5, max=10', 'timeout=9'])
        res.end('hello\n')
      },
    )
    const result = await probe(server.url, { maxRequests: 2, maxWait: 0.3 })
    expect(statuses(result).headers).toBe('fail')
    expect(evidence(result, 'headers')).toContain('response 1 carried 2 Keep-Alive headers ("timeout=5, max=10", "timeout=9")')
  })
})

describe('probe() reading the wire', () => {
  it('reads chunked bodies split at any byte and close-delimited HTTP/1.0 bodies', async () => {
    const server = await raw((request, n, socket) => {
      if (request.line.endsWith('HTTP/1.0')) {
        // No length, no chunking: the body ends with the connection.
        socket.end('HTTP/1.0 200 OK\r\n\r\nhello, 1.0\n')
        return
      }
      const head = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n${n === 3 ? 'Connection: close' : `Connection: keep-alive\r\nKeep-Alive: timeout=5, max=${3 - n}`}\r\n\r\n`
      const bytes = `${head}5;ext=1\r\nhello\r\n1\r\n\n\r\n0\r\nX-Trailer: yes\r\n\r\n`
      for (const byte of bytes) socket.write(byte)
      if (n === 3) socket.end()
    })
    const result = await probe(server.url, { maxWait: 0.3, closeWithin: 0.3 })
    expect(statuses(result)).toMatchObject({ advertised: 'pass', max: 'pass', http10: 'pass', http10KeepAlive: 'pass', headers: 'pass' })
    expect(data(result, 'max')).toEqual({ advertised: 2, responses: 3, maxes: [2, 1, null] })
    expect(evidence(result, 'http10')).toMatch(/^no Connection or Keep-Alive header \(HTTP\/1\.0 200\); closed \d+ ms after the response$/)
  })
})

describe('probe() input', () => {
  it('rejects what is not an http or https URL, and bad options, naming them', async () => {
    await expect(probe('ftp://127.0.0.1/')).rejects.toThrow(new TypeError('keepalive: probe needs an http:// or https:// URL, got "ftp://127.0.0.1/"'))
    await expect(probe('not a url')).rejects.toThrow(new TypeError('keepalive: probe needs an http:// or https:// URL, got "not a url"'))
    const cases: [unknown, ErrorConstructor, string][] = [
      [{ maxRequests: 0 }, RangeError, 'keepalive: "maxRequests" must be at least 1, got 0'],
      [{ maxWait: '10' }, TypeError, 'keepalive: "maxWait" must be a number of seconds, got "10" (string)'],
      // Node's timers hold 2^31 - 1 ms: a longer wait would fire at once, so it is refused.
      [{ maxWait: 3_000_000 }, RangeError, 'keepalive: "maxWait" must be at least 0 and at most 2147482 seconds, got 3000000'],
      [{ timeout: 0 }, RangeError, 'keepalive: "timeout" must be greater than 0 and at most 2147482 seconds, got 0'],
      [{ maxwait: 1 }, TypeError, 'keepalive: unknown option "maxwait"; did you mean "maxWait"?'],
    ]
    for (const [options, type, message] of cases) {
      const error: unknown = await probe('http://127.0.0.1/', options as never).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(type)
      expect((error as Error).message).toBe(message)
    }
  })

  it('rejects when the server does not speak HTTP/1.x or closes without answering', async () => {
    const ssh = await raw((_request, _n, socket) => socket.write('SSH-2.0-OpenSSH_9.2\r\n\r\n'))
    await expect(probe(ssh.url)).rejects.toThrow(`keepalive: ${ssh.url} did not answer in HTTP/1.x: not an HTTP/1.x response: "SSH-2.0-OpenSSH_9.2"`)
    const mute = await raw((_request, _n, socket) => socket.destroy())
    await expect(probe(mute.url)).rejects.toThrow(`keepalive: ${mute.url} closed the connection without answering`)
  })

  it('rejects with the reason when nothing listens', async () => {
    const port = await freePort()
    await expect(probe(`http://127.0.0.1:${port}/`)).rejects.toThrow(`keepalive: cannot connect to 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`)
  })
})

describe('formatResult()', () => {
  it('prints one line per check with its mark and evidence, then the verdict', () => {
    const result: ProbeResult = {
      url: 'http://127.0.0.1:3000/',
      ok: false,
      advertised: { connection: 'keep-alive', keepAlive: 'timeout=30', timeout: 30, max: null },
      checks: [
        { id: 'advertised', title: 'Keep-Alive header', status: 'pass', evidence: 'Connection: keep-alive, Keep-Alive: timeout=30', data: {} },
        { id: 'max', title: 'max= countdown', status: 'skip', evidence: 'no max= advertised', data: {} },
        { id: 'idle', title: 'idle timeout', status: 'fail', evidence: 'closed after 2.00 s idle, 28.00 s before the advertised timeout=30', data: {} },
      ],
      elapsed: 2.04,
    }
    expect(formatResult(result)).toBe(
      [
        'keepalive probe http://127.0.0.1:3000/',
        '',
        '  ✓ Keep-Alive header  Connection: keep-alive, Keep-Alive: timeout=30',
        '  – max= countdown     no max= advertised',
        '  ✗ idle timeout       closed after 2.00 s idle, 28.00 s before the advertised timeout=30',
        '',
        '✗ 1 check found behaviour that contradicts the headers (2.0 s)',
        '',
      ].join('\n'),
    )
    expect(formatResult(result, { color: true })).toContain('\x1b[31m✗\x1b[0m idle timeout')
  })
})
