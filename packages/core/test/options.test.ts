import { once } from 'node:events'
import http, { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { createKeepAlive, type KeepAliveOptions, type KeepAliveStats } from '@keepalive/core'
import { FRESH_STATS } from '../../../test/helpers/contract.js'

/** Bad input is the point of these tests, so it goes in untyped. */
const create = (input: unknown) => createKeepAlive(input as KeepAliveOptions)

type ErrorClass = TypeErrorConstructor | RangeErrorConstructor

interface BadInput {
  input: unknown
  error: ErrorClass
  message: string
  /** The path the error names in `option`. */
  option: string
  code?: 'ERR_KEEPALIVE_UNKNOWN_OPTION' | 'ERR_KEEPALIVE_INVALID_OPTION'
}

/** What createKeepAlive threw, or fails the test if it did not throw. */
function thrownBy(input: unknown): Error & { code?: unknown; option?: unknown } {
  try {
    create(input)
  } catch (error) {
    return error as Error & { code?: unknown; option?: unknown }
  }
  throw new Error(`createKeepAlive(${String(input)}) did not throw`)
}

function expectRejected({ input, error, message, option, code = 'ERR_KEEPALIVE_INVALID_OPTION' }: BadInput): void {
  const thrown = thrownBy(input)
  expect(thrown.constructor).toBe(error) // the exact class, not merely a subclass of Error
  expect(thrown.message).toBe(message)
  expect(thrown.code).toBe(code)
  expect(thrown.option).toBe(option)
}

/** `{ adaptive: { from: v } }` for 'adaptive.from', `{ timeout: v }` for 'timeout'. */
function at(path: string, value: unknown): Record<string, unknown> {
  const [head, tail] = path.split('.') as [string, string | undefined]
  return tail === undefined ? { [head]: value } : { [head]: { [tail]: value } }
}

const DEFAULT_STATS: KeepAliveStats = FRESH_STATS

describe('options: wrong types throw a TypeError naming the option and the value', () => {
  // Each value a caller might plausibly pass by mistake, with how the message shows it.
  const values: [unknown, string][] = [
    ['5s', '"5s" (string)'],
    [null, 'null'],
    [Number.NaN, 'NaN'],
    [5n, '5n (bigint)'],
    [{ seconds: 5 }, 'an object'],
    [[5], 'an array'],
    [true, 'true (boolean)'],
    [() => 5, 'a function'],
    [new Date(0), 'an instance of Date'],
  ]
  const numeric: [string, string][] = [
    ['timeout', 'a number of seconds'],
    ['max', 'a whole number or Infinity'],
    ['maxAge', 'a number of seconds or Infinity'],
    ['grace', 'a number of seconds'],
    ['maxConnections', 'a whole number or Infinity'],
    ['maxConnectionsPerIp', 'a whole number or Infinity'],
    ['adaptive.from', 'a number between 0 and 1'],
    ['adaptive.shedAt', 'a number between 0 and 1'],
    ['adaptive.minTimeout', 'a number of seconds'],
    ['adaptive.minMax', 'a whole number'],
    ['adaptive.interval', 'a number of seconds'],
    ['behind.idleTimeout', 'a number of seconds'],
  ]
  const table: (BadInput & { shown: string })[] = []
  for (const [path, allowed] of numeric) {
    for (const [value, shown] of values) {
      table.push({ input: at(path, value), shown, error: TypeError, option: path, message: `keepalive: "${path}" must be ${allowed}, got ${shown}` })
    }
  }
  for (const [value, shown] of values.filter(([v]) => typeof v !== 'function')) {
    const message = `keepalive: "adaptive.signal" must be a function returning a load in [0, 1], got ${shown}`
    table.push({ input: at('adaptive.signal', value), shown, error: TypeError, option: 'adaptive.signal', message })
  }
  // `adaptive` and `behind` take plain objects: every other value above is the wrong type.
  const notPlain = values.filter(([v]) => typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date)
  for (const [value, shown] of [...notPlain, [1, '1'], [0, '0']] as [unknown, string][]) {
    if (typeof value === 'boolean') continue // true and false switch adaptive on and off
    table.push({
      input: { adaptive: value },
      shown,
      error: TypeError,
      option: 'adaptive',
      message: `keepalive: "adaptive" must be a boolean or an object, got ${shown}`,
    })
  }
  for (const [value, shown] of [...notPlain, [60, '60']] as [unknown, string][]) {
    table.push({ input: { behind: value }, shown, error: TypeError, option: 'behind', message: `keepalive: "behind" must be an object, got ${shown}` })
  }

  it.each(table)('$option = $shown', (row) => {
    expectRejected(row)
  })

  it('covers every documented option', () => {
    const covered = new Set(table.map((row) => row.option))
    for (const path of ['timeout', 'max', 'maxAge', 'grace', 'maxConnections', 'maxConnectionsPerIp', 'adaptive', 'behind']) {
      expect(covered).toContain(path)
    }
    for (const key of ['signal', 'from', 'shedAt', 'minTimeout', 'minMax', 'interval']) expect(covered).toContain(`adaptive.${key}`)
    expect(covered).toContain('behind.idleTimeout')
  })
})

describe('options: out-of-range values throw a RangeError saying what is allowed', () => {
  const s = (path: string, range: string, got: string): string => `keepalive: "${path}" must be ${range}, got ${got}`
  const table: BadInput[] = [
    // timeout
    { input: { timeout: -1 }, error: RangeError, option: 'timeout', message: s('timeout', 'at least 0 and at most 2147482 seconds', '-1') },
    { input: { timeout: -Infinity }, error: RangeError, option: 'timeout', message: s('timeout', 'at least 0 and at most 2147482 seconds', '-Infinity') },
    { input: { timeout: Infinity }, error: RangeError, option: 'timeout', message: 'keepalive: "timeout" must be finite, got Infinity' },
    // Node's timers hold at most 2^31 - 1 ms: a longer idle timeout would fire at once.
    { input: { timeout: 2147483 }, error: RangeError, option: 'timeout', message: s('timeout', 'at least 0 and at most 2147482 seconds', '2147483') },
    // max
    { input: { max: 0 }, error: RangeError, option: 'max', message: s('max', 'at least 1 and at most 2147483647 (2^31 - 1)', '0') },
    { input: { max: -1 }, error: RangeError, option: 'max', message: s('max', 'at least 1 and at most 2147483647 (2^31 - 1)', '-1') },
    { input: { max: -Infinity }, error: RangeError, option: 'max', message: s('max', 'at least 1 and at most 2147483647 (2^31 - 1)', '-Infinity') },
    // Node writes max= through a 32-bit integer (~~n): 2^31 would be sent as a negative count.
    { input: { max: 2 ** 31 }, error: RangeError, option: 'max', message: s('max', 'at least 1 and at most 2147483647 (2^31 - 1)', '2147483648') },
    { input: { maxAgeJitter: 0.6 }, error: RangeError, option: 'maxAgeJitter', message: s('maxAgeJitter', 'at least 0 and at most 0.5', '0.6') },
    { input: { maxAgeJitter: -0.1 }, error: RangeError, option: 'maxAgeJitter', message: s('maxAgeJitter', 'at least 0 and at most 0.5', '-0.1') },
    { input: { drainQuiet: -0.1 }, error: RangeError, option: 'drainQuiet', message: s('drainQuiet', 'at least 0 and at most 60 seconds', '-0.1') },
    { input: { drainQuiet: 61 }, error: RangeError, option: 'drainQuiet', message: s('drainQuiet', 'at least 0 and at most 60 seconds', '61') },
    { input: { max: 1.5 }, error: RangeError, option: 'max', message: 'keepalive: "max" must be a whole number or Infinity, got 1.5' },
    // maxAge
    { input: { maxAge: 0 }, error: RangeError, option: 'maxAge', message: s('maxAge', 'greater than 0 and at most 2147482 seconds', '0') },
    { input: { maxAge: -5 }, error: RangeError, option: 'maxAge', message: s('maxAge', 'greater than 0 and at most 2147482 seconds', '-5') },
    { input: { maxAge: 1e10 }, error: RangeError, option: 'maxAge', message: s('maxAge', 'greater than 0 and at most 2147482 seconds', '10000000000') },
    // grace
    { input: { grace: -0.5 }, error: RangeError, option: 'grace', message: s('grace', 'at least 0 and at most 2147482 seconds', '-0.5') },
    { input: { grace: Infinity }, error: RangeError, option: 'grace', message: 'keepalive: "grace" must be finite, got Infinity' },
    {
      input: { timeout: 5, grace: 2147480 },
      error: RangeError,
      option: 'grace',
      message: 'keepalive: "timeout" + "grace" must be at most 2147482 seconds, got 2147485',
    },
    // The default grace of 1 s pushes a maximal timeout over: the timeout is what the user gave.
    {
      input: { timeout: 2147482 },
      error: RangeError,
      option: 'timeout',
      message: 'keepalive: "timeout" + "grace" must be at most 2147482 seconds, got 2147483',
    },
    // maxConnections, maxConnectionsPerIp
    { input: { maxConnections: 0 }, error: RangeError, option: 'maxConnections', message: s('maxConnections', 'at least 1', '0') },
    {
      input: { maxConnections: 2.5 },
      error: RangeError,
      option: 'maxConnections',
      message: 'keepalive: "maxConnections" must be a whole number or Infinity, got 2.5',
    },
    { input: { maxConnections: -Infinity }, error: RangeError, option: 'maxConnections', message: s('maxConnections', 'at least 1', '-Infinity') },
    { input: { maxConnectionsPerIp: 0 }, error: RangeError, option: 'maxConnectionsPerIp', message: s('maxConnectionsPerIp', 'at least 1', '0') },
    {
      input: { maxConnectionsPerIp: 1.5 },
      error: RangeError,
      option: 'maxConnectionsPerIp',
      message: 'keepalive: "maxConnectionsPerIp" must be a whole number or Infinity, got 1.5',
    },
    // adaptive.from, adaptive.shedAt
    { input: { adaptive: { from: -0.1 } }, error: RangeError, option: 'adaptive.from', message: s('adaptive.from', 'at least 0 and at most 1', '-0.1') },
    { input: { adaptive: { from: 1.5 } }, error: RangeError, option: 'adaptive.from', message: s('adaptive.from', 'at least 0 and at most 1', '1.5') },
    { input: { adaptive: { from: Infinity } }, error: RangeError, option: 'adaptive.from', message: 'keepalive: "adaptive.from" must be finite, got Infinity' },
    // Only `from` was given: it is the one above the default shedAt (0.95).
    {
      input: { adaptive: { from: 0.97 } },
      error: RangeError,
      option: 'adaptive.from',
      message: 'keepalive: "adaptive.from" must be at most adaptive.shedAt (0.95), got 0.97',
    },
    { input: { adaptive: { shedAt: 1.01 } }, error: RangeError, option: 'adaptive.shedAt', message: s('adaptive.shedAt', 'at least 0 and at most 1', '1.01') },
    { input: { adaptive: { shedAt: -1 } }, error: RangeError, option: 'adaptive.shedAt', message: s('adaptive.shedAt', 'at least 0 and at most 1', '-1') },
    {
      input: { adaptive: { shedAt: Infinity } },
      error: RangeError,
      option: 'adaptive.shedAt',
      message: 'keepalive: "adaptive.shedAt" must be finite, got Infinity',
    },
    {
      input: { adaptive: { from: 0.8, shedAt: 0.7 } },
      error: RangeError,
      option: 'adaptive.shedAt',
      message: 'keepalive: "adaptive.shedAt" must be between adaptive.from (0.8) and 1, got 0.7',
    },
    {
      input: { adaptive: { shedAt: 0.4 } },
      error: RangeError,
      option: 'adaptive.shedAt',
      message: 'keepalive: "adaptive.shedAt" must be between adaptive.from (0.5) and 1, got 0.4',
    },
    // adaptive.minTimeout
    {
      input: { adaptive: { minTimeout: -1 } },
      error: RangeError,
      option: 'adaptive.minTimeout',
      message: s('adaptive.minTimeout', 'at least 0 and at most 2147482 seconds', '-1'),
    },
    {
      input: { adaptive: { minTimeout: Infinity } },
      error: RangeError,
      option: 'adaptive.minTimeout',
      message: 'keepalive: "adaptive.minTimeout" must be finite, got Infinity',
    },
    {
      input: { timeout: 2, adaptive: { minTimeout: 3 } },
      error: RangeError,
      option: 'adaptive.minTimeout',
      message: 'keepalive: "adaptive.minTimeout" must be at most timeout (2), got 3',
    },
    {
      input: { adaptive: { minTimeout: 6 } },
      error: RangeError,
      option: 'adaptive.minTimeout',
      message: 'keepalive: "adaptive.minTimeout" must be at most timeout (5), got 6',
    },
    // Behind a proxy the timeout never scales to or below the proxy's idle timeout.
    {
      input: { behind: { idleTimeout: 60 }, adaptive: { minTimeout: 60 } },
      error: RangeError,
      option: 'adaptive.minTimeout',
      message: 'keepalive: "adaptive.minTimeout" must be greater than behind.idleTimeout (60) so the server outlives the proxy under load too, got 60',
    },
    {
      input: { behind: { idleTimeout: 60 }, adaptive: { minTimeout: 14 } },
      error: RangeError,
      option: 'adaptive.minTimeout',
      message: 'keepalive: "adaptive.minTimeout" must be greater than behind.idleTimeout (60) so the server outlives the proxy under load too, got 14',
    },
    {
      input: { behind: { idleTimeout: 2 }, adaptive: { minTimeout: 8 } },
      error: RangeError,
      option: 'adaptive.minTimeout',
      message: 'keepalive: "adaptive.minTimeout" must be at most timeout (7), got 8',
    },
    // adaptive.minMax
    { input: { adaptive: { minMax: 0 } }, error: RangeError, option: 'adaptive.minMax', message: s('adaptive.minMax', 'at least 1', '0') },
    {
      input: { adaptive: { minMax: 2.5 } },
      error: RangeError,
      option: 'adaptive.minMax',
      message: 'keepalive: "adaptive.minMax" must be a whole number, got 2.5',
    },
    // A floor of "unlimited" means nothing, even when max itself is unlimited.
    {
      input: { max: Infinity, adaptive: { minMax: Infinity } },
      error: RangeError,
      option: 'adaptive.minMax',
      message: 'keepalive: "adaptive.minMax" must be finite, got Infinity',
    },
    {
      input: { max: 5, adaptive: { minMax: 6 } },
      error: RangeError,
      option: 'adaptive.minMax',
      message: 'keepalive: "adaptive.minMax" must be at most max (5), got 6',
    },
    // adaptive.interval
    {
      input: { adaptive: { interval: 0 } },
      error: RangeError,
      option: 'adaptive.interval',
      message: s('adaptive.interval', 'at least 0.01 and at most 3600 seconds', '0'),
    },
    {
      input: { adaptive: { interval: 0.005 } },
      error: RangeError,
      option: 'adaptive.interval',
      message: s('adaptive.interval', 'at least 0.01 and at most 3600 seconds', '0.005'),
    },
    {
      input: { adaptive: { interval: -1 } },
      error: RangeError,
      option: 'adaptive.interval',
      message: s('adaptive.interval', 'at least 0.01 and at most 3600 seconds', '-1'),
    },
    {
      input: { adaptive: { interval: 3601 } },
      error: RangeError,
      option: 'adaptive.interval',
      message: s('adaptive.interval', 'at least 0.01 and at most 3600 seconds', '3601'),
    },
    {
      input: { adaptive: { interval: Infinity } },
      error: RangeError,
      option: 'adaptive.interval',
      message: 'keepalive: "adaptive.interval" must be finite, got Infinity',
    },
    // behind.idleTimeout and the timeout it implies
    {
      input: { behind: { idleTimeout: 0 } },
      error: RangeError,
      option: 'behind.idleTimeout',
      message: s('behind.idleTimeout', 'greater than 0 and at most 2147477 seconds', '0'),
    },
    {
      input: { behind: { idleTimeout: -60 } },
      error: RangeError,
      option: 'behind.idleTimeout',
      message: s('behind.idleTimeout', 'greater than 0 and at most 2147477 seconds', '-60'),
    },
    {
      input: { behind: { idleTimeout: Infinity } },
      error: RangeError,
      option: 'behind.idleTimeout',
      message: 'keepalive: "behind.idleTimeout" must be finite, got Infinity',
    },
    {
      input: { behind: { idleTimeout: 2147478 } },
      error: RangeError,
      option: 'behind.idleTimeout',
      message: s('behind.idleTimeout', 'greater than 0 and at most 2147477 seconds', '2147478'),
    },
    {
      input: { behind: { idleTimeout: 2147477 } },
      error: RangeError,
      option: 'behind.idleTimeout',
      message: 'keepalive: "behind.idleTimeout" + 5 + "grace" must be at most 2147482 seconds, got 2147483',
    },
    {
      input: { behind: { idleTimeout: 60 }, timeout: 60 },
      error: RangeError,
      option: 'timeout',
      message: 'keepalive: "timeout" must be greater than behind.idleTimeout (60) so the server outlives the proxy, got 60',
    },
    {
      input: { behind: { idleTimeout: 60 }, timeout: 30 },
      error: RangeError,
      option: 'timeout',
      message: 'keepalive: "timeout" must be greater than behind.idleTimeout (60) so the server outlives the proxy, got 30',
    },
    {
      input: { behind: { idleTimeout: 60 }, timeout: 0 },
      error: RangeError,
      option: 'timeout',
      message: 'keepalive: "timeout" must be greater than behind.idleTimeout (60) so the server outlives the proxy, got 0',
    },
  ]

  it.each(table)('$option: $message', (row) => {
    expectRejected(row)
  })

  it('asks for behind.idleTimeout when behind is given without it (TypeError)', () => {
    const message = 'keepalive: "behind.idleTimeout" is required: the proxy\'s idle timeout in seconds, e.g. { idleTimeout: 60 }'
    expectRejected({ input: { behind: {} }, error: TypeError, option: 'behind.idleTimeout', message })
    expectRejected({ input: { behind: { idleTimeout: undefined } }, error: TypeError, option: 'behind.idleTimeout', message })
  })
})

describe('options: unknown keys throw a TypeError with a suggestion', () => {
  const known = 'timeout, max, maxAge, maxAgeJitter, grace, drainQuiet, maxConnections, maxConnectionsPerIp, adaptive, behind'
  const table: [unknown, string, string][] = [
    [{ maxage: 10 }, 'maxage', 'keepalive: unknown option "maxage"; did you mean "maxAge"?'],
    [{ tiemout: 5 }, 'tiemout', 'keepalive: unknown option "tiemout"; did you mean "timeout"?'],
    [{ Timeout: 5 }, 'Timeout', 'keepalive: unknown option "Timeout"; did you mean "timeout"?'],
    [{ maxConnectionPerIp: 2 }, 'maxConnectionPerIp', 'keepalive: unknown option "maxConnectionPerIp"; did you mean "maxConnectionsPerIp"?'],
    [{ adaptiv: true }, 'adaptiv', 'keepalive: unknown option "adaptiv"; did you mean "adaptive"?'],
    [{ keepAliveTimeout: 5 }, 'keepAliveTimeout', `keepalive: unknown option "keepAliveTimeout"; known options: ${known}`],
    [{ adaptive: { shedat: 0.9 } }, 'adaptive.shedat', 'keepalive: unknown option "adaptive.shedat"; did you mean "adaptive.shedAt"?'],
    [{ adaptive: { minTimeOut: 1 } }, 'adaptive.minTimeOut', 'keepalive: unknown option "adaptive.minTimeOut"; did you mean "adaptive.minTimeout"?'],
    [
      { adaptive: { threshold: 0.9 } },
      'adaptive.threshold',
      'keepalive: unknown option "adaptive.threshold"; known options: signal, from, shedAt, minTimeout, minMax, interval',
    ],
    [{ behind: { idletimeout: 60 } }, 'behind.idletimeout', 'keepalive: unknown option "behind.idletimeout"; did you mean "behind.idleTimeout"?'],
    [{ behind: { timeout: 60 } }, 'behind.timeout', 'keepalive: unknown option "behind.timeout"; known options: idleTimeout'],
    // A misspelt key is reported even when its value is undefined: the typo must not pass silently.
    [{ tiemout: undefined }, 'tiemout', 'keepalive: unknown option "tiemout"; did you mean "timeout"?'],
  ]

  it.each(table)('%j names %s', (input, option, message) => {
    expectRejected({ input, option, message, error: TypeError, code: 'ERR_KEEPALIVE_UNKNOWN_OPTION' })
  })

  it('reports a typo before any type or range error, nested typos included', () => {
    const typo = { error: TypeError, code: 'ERR_KEEPALIVE_UNKNOWN_OPTION' } as const
    expectRejected({ ...typo, input: { timeout: '5s', maxage: 1 }, option: 'maxage', message: 'keepalive: unknown option "maxage"; did you mean "maxAge"?' })
    expectRejected({
      ...typo,
      input: { timeout: -1, adaptive: { shedat: 0.9 } },
      option: 'adaptive.shedat',
      message: 'keepalive: unknown option "adaptive.shedat"; did you mean "adaptive.shedAt"?',
    })
    expectRejected({
      ...typo,
      input: { max: 0, behind: { idletimeout: 60 } },
      option: 'behind.idletimeout',
      message: 'keepalive: unknown option "behind.idletimeout"; did you mean "behind.idleTimeout"?',
    })
  })
})

describe('options: the options argument itself', () => {
  const misuse = 'keepalive: options look like an HTTP request: call the factory, e.g. app.use(keepAlive()), not app.use(keepAlive)'

  it('explains app.use(keepAlive) when handed something shaped like a request', () => {
    expectRejected({ input: { socket: {}, headers: {}, method: 'GET' }, error: TypeError, option: 'options', message: misuse })
    const socket = new net.Socket()
    try {
      expectRejected({ input: new IncomingMessage(socket), error: TypeError, option: 'options', message: misuse })
    } finally {
      socket.destroy()
    }
  })

  it.each([
    [null, 'null'],
    [5, '5'],
    ['timeout=5', '"timeout=5" (string)'],
    [true, 'true (boolean)'],
    [[], 'an array'],
    [() => ({}), 'a function'],
    [new Map([['timeout', 5]]), 'an instance of Map'],
  ])('rejects createKeepAlive(%o) with a TypeError', (input, shown) => {
    expectRejected({ input, error: TypeError, option: 'options', message: `keepalive: options must be an object, got ${shown}` })
  })
})

describe('options: defaults', () => {
  it.each([
    ['no argument', () => createKeepAlive()],
    ['undefined', () => createKeepAlive(undefined)],
    ['{}', () => createKeepAlive({})],
    ['Object.create(null)', () => createKeepAlive(Object.create(null) as KeepAliveOptions)],
    ['{ maxAge: undefined }', () => createKeepAlive({ maxAge: undefined })],
    [
      'every option undefined',
      () =>
        createKeepAlive({
          timeout: undefined,
          max: undefined,
          maxAge: undefined,
          grace: undefined,
          maxConnections: undefined,
          maxConnectionsPerIp: undefined,
          adaptive: undefined,
          behind: undefined,
        }),
    ],
    ['{ adaptive: false }', () => createKeepAlive({ adaptive: false })],
  ])('%s gives timeout 5 and max 1000', (_name, build) => {
    expect(build().stats()).toEqual(DEFAULT_STATS)
  })

  it('accepts the documented edge values', () => {
    expect(createKeepAlive({ timeout: 0 }).stats().timeout).toBe(0)
    expect(createKeepAlive({ timeout: 0.3 }).stats().timeout).toBe(0.3)
    expect(createKeepAlive({ max: Infinity }).stats().max).toBeNull()
    expect(createKeepAlive({ max: 1 }).stats().max).toBe(1)
    expect(() => createKeepAlive({ maxAge: Infinity, maxConnections: Infinity, maxConnectionsPerIp: Infinity, grace: 0 })).not.toThrow()
    expect(() => createKeepAlive({ adaptive: { from: 0, shedAt: 1, minTimeout: 0, minMax: 1, interval: 0.01 } })).not.toThrow()
    expect(() => createKeepAlive({ adaptive: { from: 0.9, shedAt: 0.9 } })).not.toThrow()
  })

  it('derives adaptive floors that fit small timeout and max values', () => {
    // Default minTimeout (1 s) and minMax (10) shrink to fit instead of throwing.
    expect(createKeepAlive({ timeout: 0.5, max: 5, adaptive: true }).stats()).toMatchObject({ timeout: 0.5, max: 5 })
    expect(createKeepAlive({ timeout: 0, adaptive: true }).stats().timeout).toBe(0)
  })

  it('sets timeout to behind.idleTimeout + 5 s', () => {
    expect(createKeepAlive({ behind: { idleTimeout: 60 } }).stats().timeout).toBe(65)
    expect(createKeepAlive({ behind: { idleTimeout: 2 } }).stats().timeout).toBe(7)
    expect(createKeepAlive({ behind: { idleTimeout: 0.5 } }).stats().timeout).toBe(5.5)
  })

  it('keeps an explicit timeout above behind.idleTimeout', () => {
    expect(createKeepAlive({ behind: { idleTimeout: 60 }, timeout: 61 }).stats().timeout).toBe(61)
    expect(createKeepAlive({ behind: { idleTimeout: 60 }, timeout: 90 }).stats().timeout).toBe(90)
  })
})

describe('options: maxConnectionsPerIp behind a proxy', () => {
  /** The warnings createKeepAlive emitted, as the process' 'warning' listeners receive them. */
  async function warningsOf(input: KeepAliveOptions): Promise<(Error & { code?: string })[]> {
    const seen: (Error & { code?: string })[] = []
    const onWarning = (warning: Error & { code?: string }): void => {
      if (warning.name === 'KeepAliveWarning') seen.push(warning)
    }
    process.on('warning', onWarning)
    try {
      createKeepAlive(input)
      // Node emits 'warning' from a process.nextTick queued by emitWarning: this one runs after it.
      await new Promise((resolve) => process.nextTick(resolve))
    } finally {
      process.off('warning', onWarning)
    }
    return seen
  }

  it('warns with code KEEPALIVE_PER_IP_BEHIND_PROXY when behind is set with a per-address cap', async () => {
    const warnings = await warningsOf({ behind: { idleTimeout: 60 }, maxConnectionsPerIp: 4 })
    expect(warnings).toHaveLength(1)
    expect(warnings[0]!.code).toBe('KEEPALIVE_PER_IP_BEHIND_PROXY')
    expect(warnings[0]!.message).toBe(
      'keepalive: "maxConnectionsPerIp" (4) caps connections per remote address, and behind a proxy every connection comes from the proxy: it limits the proxy\'s connection pool, not its clients',
    )
  })

  it.each<[string, KeepAliveOptions]>([
    ['behind alone', { behind: { idleTimeout: 60 } }],
    ['maxConnectionsPerIp alone', { maxConnectionsPerIp: 4 }],
    ['behind with maxConnectionsPerIp: Infinity', { behind: { idleTimeout: 60 }, maxConnectionsPerIp: Infinity }],
    ['behind with maxConnectionsPerIp undefined', { behind: { idleTimeout: 60 }, maxConnectionsPerIp: undefined }],
  ])('does not warn for %s', async (_name, input) => {
    expect(await warningsOf(input)).toEqual([])
  })

  it('still builds the controller, cap included, when it warns', async () => {
    const ka = createKeepAlive({ behind: { idleTimeout: 60 }, maxConnectionsPerIp: 1 })
    const server = http.createServer((req, res) => {
      ka.handle(req, res)
      res.end('ok')
    })
    ka.attach(server)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port
    const first = net.connect(port, '127.0.0.1')
    const second = net.connect(port, '127.0.0.1')
    try {
      await once(first, 'connect')
      // The second connection from the same address is over the cap: closed before any request.
      await once(second, 'close')
      expect(ka.stats().closes.perIp).toBe(1)
      expect(ka.stats().timeout).toBe(65)
    } finally {
      first.destroy()
      second.destroy()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('options: ownership', () => {
  function deepFreeze<T>(value: T): T {
    if (typeof value === 'object' && value !== null) {
      for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key])
      Object.freeze(value)
    }
    return value
  }

  it('leaves the options object untouched', () => {
    const signal = (): number => 0.2
    const build = () => ({
      timeout: 3,
      max: 50,
      maxAge: 60,
      grace: 0.5,
      maxConnections: 100,
      maxConnectionsPerIp: 10,
      adaptive: { signal, from: 0.6, shedAt: 0.9, minTimeout: 1, minMax: 5, interval: 0.1 },
    })
    const input = build()
    // Frozen, so any write during validation would throw in this strict-mode module.
    deepFreeze(input)
    const controller = createKeepAlive(input)
    expect(input).toEqual(build())
    expect(input.adaptive.signal).toBe(signal)

    const behind = { behind: { idleTimeout: 60 } }
    createKeepAlive(deepFreeze(behind))
    expect(behind).toEqual({ behind: { idleTimeout: 60 } })
    expect(controller.stats()).toMatchObject({ timeout: 3, max: 50 })
  })

  it('gives two controllers built from one options object independent state', async () => {
    const options: KeepAliveOptions = { timeout: 2, max: 10 }
    const a = createKeepAlive(options)
    const b = createKeepAlive(options)
    a.drain()
    expect(a.stats().draining).toBe(true)
    expect(b.stats().draining).toBe(false)

    const servers = [a, b].map((controller) => {
      const server = http.createServer((req, res) => {
        controller.handle(req, res)
        res.end('ok')
      })
      controller.attach(server)
      return server
    })
    try {
      await Promise.all(servers.map(async (server) => once(server.listen(0, '127.0.0.1'), 'listening')))
      const port = (servers[1]!.address() as AddressInfo).port
      const agent = new http.Agent({ keepAlive: false })
      try {
        for (let i = 0; i < 2; i++) {
          const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
            http.get({ host: '127.0.0.1', port, agent }, resolve).on('error', reject)
          })
          res.resume()
          await once(res, 'end')
        }
      } finally {
        agent.destroy()
      }
      expect(b.stats().requests).toBe(2)
      expect(a.stats().requests).toBe(0)
    } finally {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise((resolve) => {
              server.close(resolve)
              server.closeAllConnections()
            }),
        ),
      )
    }
  })
})
