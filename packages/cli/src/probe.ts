import { performance } from 'node:perf_hooks'
import { parseKeepAlive, type KeepAliveParams } from '@keepalive/core'
import { checkKeys, count, describe, fail, isPlainObject, seconds as checkSeconds } from '@keepalive/core/check'
import { LimitError, WireConnection, type Exchange, type WireResponse } from './wire.js'

/** Options of {@link probe}; durations are in seconds. */
export interface ProbeOptions {
  /** Requests sent on one connection to follow `max=` down to the server's close. @default 20 */
  maxRequests?: number
  /**
   * Seconds to wait for the server to close an idle connection.
   * @default the advertised timeout= + 5 (1 s grace + a 4 s margin), at most 130; 10 when no timeout= is advertised
   */
  maxWait?: number
  /** Told when the probe starts and ends waiting on an idle connection. */
  onProgress?: (event: ProbeProgress) => void
  /** Seconds a server may take to close the connection after a closing response. @default 1 */
  closeWithin?: number
  /** Seconds an idle close may come before the advertised timeout and still count as on time. @default 0.25 */
  tolerance?: number
  /** Seconds to wait for a connection or a response. @default 10 */
  timeout?: number
  /** Accept a TLS certificate that does not verify (self-signed). @default false */
  insecure?: boolean
}

/** Progress of the long wait: the idle timeout. Seconds throughout. */
export type ProbeProgress =
  { type: 'idleWait'; advertised: number | null; limit: number } | { type: 'idleDone'; advertised: number | null; limit: number; elapsed: number | null }

/** The checks, in the order they are reported. */
export type CheckId = 'advertised' | 'max' | 'close' | 'idle' | 'http10' | 'http10KeepAlive' | 'conflicting' | 'headers'

/**
 * `fail`: the server's behaviour contradicts its headers; `skip`: nothing to verify (e.g. no `max=`);
 * `unchecked`: there was something to verify but the probe did not get to it (e.g. `--max-wait`
 * shorter than the advertised timeout), so it is no verdict either way.
 */
export type CheckStatus = 'pass' | 'fail' | 'skip' | 'unchecked'

/** Why {@link probe} could not run; `code` is stable for programs (`--json` prints it). */
export class ProbeError extends Error {
  constructor(
    /** `CONNECT`: no connection; `RESPONSE`: no usable first response; `LIMIT`: the server sent more than the probe holds. */
    readonly code: 'ERR_KEEPALIVE_PROBE_CONNECT' | 'ERR_KEEPALIVE_PROBE_RESPONSE' | 'ERR_KEEPALIVE_PROBE_LIMIT',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.name = 'ProbeError'
  }
}

/** One verdict with the evidence behind it. */
export interface ProbeCheck {
  id: CheckId
  title: string
  status: CheckStatus
  evidence: string
  /** Measured values, for `--json` readers. Seconds for durations. */
  data: Record<string, number | string | boolean | null | (number | null)[]>
}

/** What {@link probe} resolves with; JSON-serialisable. */
export interface ProbeResult {
  url: string
  /** No check failed. */
  ok: boolean
  /** The first response's connection headers, as sent. */
  advertised: { connection: string | null; keepAlive: string | null; timeout: number | null; max: number | null }
  checks: ProbeCheck[]
  /** Seconds the probe took. */
  elapsed: number
}

const TITLES: Record<CheckId, string> = {
  advertised: 'Keep-Alive header',
  max: 'max= countdown',
  close: 'Connection: close',
  idle: 'idle timeout',
  http10: 'HTTP/1.0',
  http10KeepAlive: 'HTTP/1.0 keep-alive',
  conflicting: 'conflicting request',
  headers: 'response headers',
}

interface Resolved {
  maxRequests: number
  /** null: from the advertised timeout (see {@link defaultMaxWaitMs}). */
  maxWaitMs: number | null
  closeWithinMs: number
  toleranceMs: number
  timeoutMs: number
  insecure: boolean
  onProgress: (event: ProbeProgress) => void
}

/** A response the probe saw, for the header check. */
interface Seen {
  /** Which check saw it, for a report in a stable order whatever order the checks ran in. */
  order: number
  label: string
  response: WireResponse
  persistent: boolean
}

interface Context {
  url: URL
  options: Resolved
  seen: Seen[]
  open(): Promise<WireConnection>
}

/**
 * Probes an `http://` or `https://` server over raw sockets: what its `Connection` and `Keep-Alive`
 * headers promise, and whether the connection then behaves that way (max= counts down and the
 * server closes when it says, idle connections live as long as advertised, HTTP/1.0 and
 * conflicting requests are answered consistently). Rejects only when the server cannot be probed.
 * @example
 * const result = await probe('http://127.0.0.1:3000/', { maxWait: 10 })
 * if (!result.ok) process.exitCode = 1
 */
export async function probe(target: string | URL, options: Readonly<ProbeOptions> = {}): Promise<ProbeResult> {
  const started = performance.now()
  const url = resolveUrl(target)
  const resolved = resolveProbeOptions(options)
  const connections = new Set<WireConnection>()
  // Over a parser limit on any connection, the probe stops: every connection is destroyed, which
  // wakes every wait, and the first limit is what it rejects with.
  let over: LimitError | null = null
  const onLimit = (error: LimitError): void => {
    if (over !== null) return
    over = error
    for (const conn of connections) conn.destroy()
  }
  const stopIfOver = (): void => {
    if (over === null) return
    throw new ProbeError('ERR_KEEPALIVE_PROBE_LIMIT', `keepalive: ${url.href} sent ${over.message}; the probe stopped reading`)
  }
  const context: Context = {
    url,
    options: resolved,
    seen: [],
    async open() {
      let conn: WireConnection
      try {
        conn = await WireConnection.open(url, { insecure: resolved.insecure, timeoutMs: resolved.timeoutMs, onLimit })
      } catch (error) {
        throw connectError(url, error)
      }
      connections.add(conn)
      if (over !== null) conn.destroy()
      stopIfOver()
      return conn
    },
  }
  try {
    // The first response tells what the server advertises; the other checks then run side by
    // side on their own connections, so the probe takes about as long as the idle wait.
    const first = await context.open()
    const exchange = await first.send(request(url, '1.1'))
    stopIfOver()
    if (exchange.kind === 'timeout')
      throw new ProbeError('ERR_KEEPALIVE_PROBE_RESPONSE', `keepalive: ${url.href} did not answer within ${resolved.timeoutMs / 1000} s`)
    if (exchange.kind === 'closed') {
      const what = exchange.error === null ? 'closed the connection without answering' : `did not answer in HTTP/1.x: ${exchange.error}`
      throw new ProbeError('ERR_KEEPALIVE_PROBE_RESPONSE', `keepalive: ${url.href} ${what}`)
    }
    const response = exchange.response
    const persistent = isPersistent(response, '1.1')
    context.seen.push({ order: 0, label: 'response 1', response, persistent })
    const params = keepAliveParams(response)
    // Settled, not Promise.all: no check may still be opening a connection once this returns.
    const settled = await Promise.allSettled([
      checkMax(context, first, response),
      checkClose(context),
      checkIdle(context),
      checkHttp10(context),
      checkHttp10KeepAlive(context),
      checkConflicting(context),
    ])
    stopIfOver()
    const checks = [checkAdvertised(response)]
    for (const outcome of settled) {
      if (outcome.status === 'rejected') throw outcome.reason
      checks.push(outcome.value)
    }
    checks.push(checkHeaders(context.seen))
    return {
      url: url.href,
      ok: checks.every((check) => check.status !== 'fail'),
      advertised: {
        connection: joined(response, 'connection'),
        keepAlive: joined(response, 'keep-alive'),
        timeout: params.timeout ?? null,
        max: params.max ?? null,
      },
      checks,
      elapsed: round((performance.now() - started) / 1000),
    }
  } finally {
    for (const conn of connections) conn.destroy()
  }
}

// ---- checks ------------------------------------------------------------------------------

function checkAdvertised(response: WireResponse): ProbeCheck {
  const data = { status: response.statusCode, version: response.version, ...headerData(response) }
  if (!isPersistent(response, '1.1')) {
    // The countdown check waits for this close; this one only reports what was said.
    return check('advertised', 'skip', `${describeHeaders(response)}: the server keeps no connection alive`, data)
  }
  if (joined(response, 'keep-alive') === null) {
    return check('advertised', 'skip', `${describeHeaders(response)}: persistent (HTTP/${response.version}) but nothing advertised`, data)
  }
  return check('advertised', 'pass', describeHeaders(response), data)
}

async function checkMax(context: Context, conn: WireConnection, first: WireResponse): Promise<ProbeCheck> {
  const { url, options } = context
  const start = keepAliveParams(first).max
  const maxes: (number | null)[] = [start ?? null]
  const data = (): ProbeCheck['data'] => ({ advertised: start ?? null, responses: maxes.length, maxes })
  if (!isPersistent(first, '1.1')) {
    const closed = await closesSoon(conn, first, options)
    if (closed === null) return check('max', 'fail', `response 1 carried ${stillOpen(first, options)}`, data())
    return check('max', 'skip', `response 1 closed the connection (${describeHeaders(first)}); nothing to count down`, data())
  }
  const budget = start === undefined ? options.maxRequests : Math.min(options.maxRequests, start + 1)
  let previous = first
  for (let n = 2; n <= budget; n++) {
    const previousMax = keepAliveParams(previous).max
    if (start !== undefined && previousMax === 0) {
      return check('max', 'fail', `response ${n - 1} kept the connection alive with max=0: with no request left it should carry Connection: close`, data())
    }
    const exchange = await conn.send(request(url, '1.1'))
    if (exchange.kind !== 'response') {
      return check('max', 'fail', `${unanswered(exchange, n, options)}, although response ${n - 1} carried ${describeHeaders(previous)}`, data())
    }
    const response = exchange.response
    const persistent = isPersistent(response, '1.1')
    context.seen.push({ order: 0, label: `response ${n}`, response, persistent })
    const max = keepAliveParams(response).max
    maxes.push(max ?? null)
    if (persistent) {
      if (start === undefined) {
        previous = response
        continue
      }
      const expected = start - (n - 1)
      if (expected <= 0) {
        return check(
          'max',
          'fail',
          `response ${n} kept the connection alive (${describeHeaders(response)}) after response ${n - 1} advertised max=1: the close belongs here`,
          data(),
        )
      }
      if (max === undefined) return check('max', 'fail', `response ${n} carried no max= (expected max=${expected}): ${describeHeaders(response)}`, data())
      if (max !== expected) {
        return check('max', 'fail', `response ${n} advertised max=${max}, expected max=${expected} (${sequence(maxes)})`, data())
      }
      previous = response
      continue
    }
    // A closing response: it must come exactly when max= said, and the socket must close with it.
    if (start !== undefined && n !== start + 1) {
      return check(
        'max',
        'fail',
        `response ${n} carried ${describeHeaders(response)} although response ${n - 1} advertised max=${previousMax ?? '(none)'}`,
        data(),
      )
    }
    const closed = await closesSoon(conn, response, options)
    if (closed === null) {
      return check('max', 'fail', `response ${n} carried ${stillOpen(response, options)}`, data())
    }
    if (start === undefined) {
      return check(
        'max',
        'skip',
        `no max= advertised; the server closed after ${n} responses (${describeHeaders(response)}), ${millis(closed)} after the last`,
        data(),
      )
    }
    return check('max', 'pass', `${sequence(maxes.slice(0, -1))}, then Connection: close on response ${n}; closed ${millis(closed)} after it`, data())
  }
  if (start === undefined) return check('max', 'skip', `no max= advertised; ${budget} responses served on one connection`, data())
  const left = start + 1 - budget
  return check(
    'max',
    'pass',
    `${sequence(maxes)} over ${budget} responses; the close is ${left} request${left === 1 ? '' : 's'} further, beyond --max-requests ${options.maxRequests}`,
    data(),
  )
}

/**
 * The server's own `Connection: close` (at max=, for age, under load): the socket must close right
 * after that response, whatever max= said before. Node's `maxRequestsPerSocket` says close and then
 * keeps the socket until its idle timer fires.
 */
async function checkClose(context: Context): Promise<ProbeCheck> {
  const { url, options } = context
  const conn = await context.open()
  const data = (responses: number, closedAfter: number | null): ProbeCheck['data'] => ({ responses, closedAfter, closeWithin: options.closeWithinMs / 1000 })
  for (let n = 1; n <= options.maxRequests; n++) {
    const exchange = await conn.send(request(url, '1.1'))
    if (exchange.kind !== 'response') {
      // An early close is the countdown check's finding; here there is no closing response to time.
      if (n === 1) return check('close', 'fail', unanswered(exchange, n, options), data(0, null))
      return check('close', 'unchecked', `not checked: ${unanswered(exchange, n, options)}, before any response said Connection: close`, data(n - 1, null))
    }
    const response = exchange.response
    const persistent = isPersistent(response, '1.1')
    context.seen.push({ order: 0.5, label: `response ${n} on the Connection: close check's connection`, response, persistent })
    if (persistent) continue
    const closed = await closesSoon(conn, response, options)
    if (closed === null) {
      return check('close', 'fail', `response ${n} carried ${stillOpen(response, options)}`, data(n, null))
    }
    return check(
      'close',
      'pass',
      `response ${n} carried ${describeHeaders(response)}; the server closed ${millis(closed)} after it`,
      data(n, round(closed / 1000)),
    )
  }
  return check(
    'close',
    'unchecked',
    `not checked: none of ${options.maxRequests} responses carried Connection: close (the server's close is beyond --max-requests ${options.maxRequests})`,
    data(options.maxRequests, null),
  )
}

async function checkIdle(context: Context): Promise<ProbeCheck> {
  const { options } = context
  const first = await firstResponse(context, 'idle', '1.1', [], { order: 1, label: 'idle-timeout response' })
  if (!('conn' in first)) return first
  const { conn, response, persistent } = first
  const advertised = keepAliveParams(response).timeout ?? null
  if (!persistent) {
    const closed = await closesSoon(conn, response, options)
    if (closed === null) return check('idle', 'fail', stillOpen(response, options), { advertised })
    return check('idle', 'skip', `the server closes after every response (${describeHeaders(response)}); no idle connection to time`, { advertised })
  }
  const limitMs = options.maxWaitMs ?? defaultMaxWaitMs(advertised)
  const limit = limitMs / 1000
  const flag = options.maxWaitMs === null ? `--max-wait, by default the advertised timeout + 5 s up to ${MAX_WAIT_CAP_SECONDS} s` : `--max-wait ${limit}`
  options.onProgress({ type: 'idleWait', advertised, limit })
  const closedAt = await conn.waitClose(limitMs - (performance.now() - response.receivedAt))
  const elapsedMs = closedAt === null ? null : closedAt - response.receivedAt
  options.onProgress({ type: 'idleDone', advertised, limit, elapsed: elapsedMs === null ? null : round(elapsedMs / 1000) })
  const data = { advertised, measured: elapsedMs === null ? null : round(elapsedMs / 1000), waited: limit }
  if (advertised === null) {
    const what = elapsedMs === null ? `still open after ${seconds(limitMs)} idle (${flag})` : `the server closed it after ${seconds(elapsedMs)} idle`
    return check('idle', 'skip', `no timeout= advertised (${describeHeaders(response)}); ${what}`, data)
  }
  const advertisedMs = advertised * 1000
  if (elapsedMs === null) {
    if (advertisedMs > limitMs) {
      return check('idle', 'unchecked', `not checked: still open after ${seconds(limitMs)} idle, short of the advertised timeout=${advertised} (${flag})`, data)
    }
    return check('idle', 'pass', `still open after ${seconds(limitMs)} idle, past the advertised timeout=${advertised} (clients close first)`, data)
  }
  if (elapsedMs < advertisedMs - options.toleranceMs) {
    return check(
      'idle',
      'fail',
      `closed after ${seconds(elapsedMs)} idle, ${seconds(advertisedMs - elapsedMs)} before the advertised timeout=${advertised}`,
      data,
    )
  }
  const beyond = elapsedMs - advertisedMs
  const extra = beyond >= 50 ? ` (${seconds(beyond)} beyond it)` : ''
  return check('idle', 'pass', `closed after ${seconds(elapsedMs)} idle; advertised timeout=${advertised}${extra}`, data)
}

async function checkHttp10(context: Context): Promise<ProbeCheck> {
  const { options } = context
  const first = await firstResponse(context, 'http10', '1.0', [], { order: 2, label: 'HTTP/1.0 response' })
  if (!('conn' in first)) return first
  const { conn, response, persistent } = first
  const data = headerData(response)
  if (persistent) {
    // RFC 9112 §9.3: a 1.0 connection persists only when the client asked for keep-alive.
    return check('http10', 'fail', `answered a plain HTTP/1.0 request with ${describeHeaders(response)}: keep-alive the client did not ask for`, data)
  }
  const closed = await closesSoon(conn, response, options)
  if (closed === null) return check('http10', 'fail', stillOpen(response, options), data)
  return check('http10', 'pass', `${describeHeaders(response)}; closed ${millis(closed)} after the response`, { ...data, closedAfter: round(closed / 1000) })
}

async function checkHttp10KeepAlive(context: Context): Promise<ProbeCheck> {
  const { url, options } = context
  const first = await firstResponse(context, 'http10KeepAlive', '1.0', ['Connection: keep-alive'], { order: 3, label: 'HTTP/1.0 keep-alive response' })
  if (!('conn' in first)) return first
  const { conn, response, persistent } = first
  const data = headerData(response)
  if (!persistent) {
    const closed = await closesSoon(conn, response, options)
    if (closed === null) return check('http10KeepAlive', 'fail', stillOpen(response, options), data)
    return check('http10KeepAlive', 'pass', `declined (${describeHeaders(response)}) and closed ${millis(closed)} after the response`, data)
  }
  const second = await conn.send(request(url, '1.0', ['Connection: keep-alive']))
  if (second.kind !== 'response') {
    return check('http10KeepAlive', 'fail', `${describeHeaders(response)}, then ${unanswered(second, 2, options)}`, data)
  }
  context.seen.push({ order: 3, label: 'second HTTP/1.0 keep-alive response', response: second.response, persistent: isPersistent(second.response, '1.0') })
  return check('http10KeepAlive', 'pass', `${describeHeaders(response)}; a second request on the connection was answered`, data)
}

async function checkConflicting(context: Context): Promise<ProbeCheck> {
  const { options } = context
  const first = await firstResponse(context, 'conflicting', '1.1', ['Connection: keep-alive', 'Connection: close'], {
    order: 4,
    label: 'response to Connection: keep-alive + Connection: close',
  })
  if (!('conn' in first)) return first
  const { conn, response, persistent } = first
  const data = headerData(response)
  const closed = await closesSoon(conn, response, options)
  const asked = 'Connection: keep-alive and Connection: close'
  if (persistent) {
    // RFC 9112 §9.6: a server that receives the close option must close after its response.
    const behaviour = closed === null ? 'kept the connection open' : `closed it ${millis(closed)} later all the same`
    return check('conflicting', 'fail', `${asked} was answered with ${describeHeaders(response)} and ${behaviour}; close must win`, data)
  }
  if (closed === null) return check('conflicting', 'fail', `${asked} was answered with ${stillOpen(response, options)}`, data)
  return check('conflicting', 'pass', `${asked}: answered ${describeHeaders(response)} and closed ${millis(closed)} later (close wins)`, data)
}

function checkHeaders(seen: readonly Seen[]): ProbeCheck {
  const problems: string[] = []
  for (const { label, response, persistent } of [...seen].sort((a, b) => a.order - b.order)) {
    const keepAlive = values(response, 'keep-alive')
    if (keepAlive.length > 1) problems.push(`${label} carried ${keepAlive.length} Keep-Alive headers (${keepAlive.map((v) => JSON.stringify(v)).join(', ')})`)
    const tokens = connectionTokens(response)
    if (tokens.has('close') && tokens.has('keep-alive')) problems.push(`${label} said both Connection: keep-alive and close`)
    if (!persistent && keepAlive.length > 0) problems.push(`${label} carried Keep-Alive: ${keepAlive.join(', ')} beside ${describeClose(response)}`)
  }
  const data = { responses: seen.length, problems: problems.length }
  if (problems.length > 0) return check('headers', 'fail', problems.join('; '), data)
  return check('headers', 'pass', `${seen.length} responses: at most one Keep-Alive each, none on a closing response`, data)
}

// ---- helpers ----------------------------------------------------------------------------

/** A check's first response, on a connection of its own, with whether the connection persists after it. */
interface Answered {
  conn: WireConnection
  response: WireResponse
  persistent: boolean
}

/**
 * Opens a connection for a check and sends its first request (`extra` header lines after the usual
 * ones); the response, recorded for the header check as `seen` says, or the check's failure when the
 * server did not answer.
 */
async function firstResponse(
  context: Context,
  id: CheckId,
  version: '1.1' | '1.0',
  extra: readonly string[],
  seen: Pick<Seen, 'order' | 'label'>,
): Promise<Answered | ProbeCheck> {
  const conn = await context.open()
  const exchange = await conn.send(request(context.url, version, extra))
  if (exchange.kind !== 'response') return check(id, 'fail', unanswered(exchange, 1, context.options), {})
  const response = exchange.response
  const persistent = isPersistent(response, version)
  context.seen.push({ ...seen, response, persistent })
  return { conn, response, persistent }
}

function check(id: CheckId, status: CheckStatus, evidence: string, data: ProbeCheck['data']): ProbeCheck {
  return { id, title: TITLES[id], status, evidence, data }
}

function request(url: URL, version: '1.1' | '1.0', extra: readonly string[] = []): string {
  const target = `${url.pathname || '/'}${url.search}`
  return [`GET ${target} HTTP/${version}`, `Host: ${url.host}`, 'User-Agent: keepalive-probe', 'Accept: */*', ...extra, '', ''].join('\r\n')
}

function values(response: WireResponse, name: string): string[] {
  return response.headers.filter(([field]) => field === name).map(([, value]) => value)
}

function joined(response: WireResponse, name: string): string | null {
  const found = values(response, name)
  return found.length === 0 ? null : found.join(', ')
}

function keepAliveParams(response: WireResponse): KeepAliveParams {
  return parseKeepAlive(values(response, 'keep-alive'))
}

function connectionTokens(response: WireResponse): Set<string> {
  const tokens = new Set<string>()
  for (const value of values(response, 'connection')) for (const token of value.split(',')) tokens.add(token.trim().toLowerCase())
  return tokens
}

/** RFC 9112 §9.3: whether the connection persists after this response. */
function isPersistent(response: WireResponse, requestVersion: '1.1' | '1.0'): boolean {
  const tokens = connectionTokens(response)
  if (tokens.has('close') || response.closeDelimited) return false
  if (requestVersion === '1.0' || response.version === '1.0') return tokens.has('keep-alive')
  return true
}

function describeHeaders(response: WireResponse): string {
  // Connection first, whatever order the server sent them in: it says whether the rest applies.
  const parts = [...values(response, 'connection').map((v) => `Connection: ${v}`), ...values(response, 'keep-alive').map((v) => `Keep-Alive: ${v}`)]
  if (parts.length > 0) return parts.join(', ')
  return `no Connection or Keep-Alive header (HTTP/${response.version} ${response.statusCode})`
}

function describeClose(response: WireResponse): string {
  if (connectionTokens(response).has('close')) return 'Connection: close'
  if (response.closeDelimited) return 'a body that ends with the connection'
  return `an HTTP/1.0 exchange without Connection: keep-alive`
}

function headerData(response: WireResponse): Record<string, string | number | null> {
  return { connection: joined(response, 'connection'), keepAlive: joined(response, 'keep-alive') }
}

/** The evidence against a closing response whose connection was still open `closeWithin` after it. */
function stillOpen(response: WireResponse, options: Resolved): string {
  return `${describeHeaders(response)} but the connection was still open ${seconds(options.closeWithinMs)} later`
}

/** Waits for the server to close after a closing response; ms after the response, or null if still open. */
async function closesSoon(conn: WireConnection, response: WireResponse, options: Resolved): Promise<number | null> {
  const at = await conn.waitClose(options.closeWithinMs - (performance.now() - response.receivedAt))
  return at === null ? null : Math.max(0, at - response.receivedAt)
}

function unanswered(exchange: Exclude<Exchange, { kind: 'response' }>, n: number, options: Resolved): string {
  if (exchange.kind === 'timeout') return `request ${n} got no response within ${seconds(options.timeoutMs)}`
  if (exchange.error !== null) return `request ${n} got an unreadable response (${exchange.error})`
  return `the server closed the connection instead of answering request ${n}`
}

function sequence(maxes: readonly (number | null)[]): string {
  const known = maxes.filter((m): m is number => m !== null)
  if (known.length <= 1) return `max=${known[0] ?? '(none)'}`
  if (known.length <= 4) return known.map((m) => `max=${m}`).join(', ')
  return `max=${known[0]} → ${known[known.length - 1]}, one less each time`
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`
}

function millis(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : seconds(ms)
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000
}

function resolveUrl(target: unknown): URL {
  let url: URL
  try {
    url = target instanceof URL ? target : new URL(String(target))
  } catch {
    throw new TypeError(`keepalive: probe needs an http:// or https:// URL, got ${JSON.stringify(String(target))}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`keepalive: probe needs an http:// or https:// URL, got ${JSON.stringify(url.href)}`)
  }
  return url
}

/** The longest idle wait the default `--max-wait` picks, whatever the server advertises. */
export const MAX_WAIT_CAP_SECONDS = 130

/**
 * The default idle wait: the advertised timeout, the 1 s a server commonly keeps beyond it (Node,
 * keepalive's `grace`), and a 4 s margin for a loaded machine, at most 130 s; 10 s when nothing is advertised.
 */
export function defaultMaxWaitMs(advertised: number | null): number {
  if (advertised === null) return 10_000
  return Math.min(advertised + 5, MAX_WAIT_CAP_SECONDS) * 1000
}

const OPTION_KEYS = ['maxRequests', 'maxWait', 'insecure', 'closeWithin', 'tolerance', 'timeout', 'onProgress']

function resolveProbeOptions(input: unknown): Resolved {
  if (input === undefined) input = {}
  if (!isPlainObject(input)) fail(TypeError, '', `probe options must be an object, got ${describe(input)}`)
  checkKeys(input, OPTION_KEYS, '')
  const options = input as Readonly<ProbeOptions>
  // Every duration stays within what Node's timers hold (2^31 - 1 ms): a longer one would fire at once.
  const duration = (name: 'closeWithin' | 'tolerance' | 'timeout', fallback: number, above = false): number =>
    checkSeconds(name, options[name] ?? fallback, { min: 0, above }) * 1000
  const onProgress = options.onProgress ?? (() => {})
  if (typeof onProgress !== 'function') fail(TypeError, 'onProgress', `"onProgress" must be a function, got ${describe(onProgress)}`)
  if (options.insecure !== undefined && typeof options.insecure !== 'boolean')
    fail(TypeError, 'insecure', `"insecure" must be true or false, got ${describe(options.insecure)}`)
  return {
    maxRequests: count('maxRequests', options.maxRequests ?? 20, false),
    maxWaitMs: options.maxWait === undefined ? null : checkSeconds('maxWait', options.maxWait, { min: 0 }) * 1000,
    closeWithinMs: duration('closeWithin', 1),
    toleranceMs: duration('tolerance', 0.25),
    timeoutMs: duration('timeout', 10, true),
    insecure: options.insecure === true,
    onProgress,
  }
}

const CERTIFICATE_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
])

function connectError(url: URL, error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error)
  const code = (error as { code?: unknown } | null)?.code
  const hint = typeof code === 'string' && CERTIFICATE_ERRORS.has(code) ? ' (pass --insecure to accept it)' : ''
  return new ProbeError('ERR_KEEPALIVE_PROBE_CONNECT', `keepalive: cannot connect to ${url.host}: ${message}${hint}`, { cause: error })
}
