import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { formatKeepAlive, parseKeepAlive } from '@keepalive/core'

describe('parseKeepAlive', () => {
  it.each([
    ['timeout=5, max=100', { timeout: 5, max: 100 }],
    ['timeout=5', { timeout: 5 }],
    ['max=7', { max: 7 }],
    ['max=0', { max: 0 }],
    // Parameter names are case-insensitive (RFC 9110 §5.6.6).
    ['TIMEOUT=5, MAX=3', { timeout: 5, max: 3 }],
    ['Timeout=5, Max=3', { timeout: 5, max: 3 }],
    // Whitespace around names, values and separators.
    ['  timeout = 5 ,  max = 3  ', { timeout: 5, max: 3 }],
    ['timeout=5,max=3', { timeout: 5, max: 3 }],
    // Quoted values.
    ['timeout="5", max="3"', { timeout: 5, max: 3 }],
    ['timeout=" 5 "', { timeout: 5 }],
    // Some clients separate with semicolons.
    ['timeout=5; max=3', { timeout: 5, max: 3 }],
    ['timeout=5;max=3', { timeout: 5, max: 3 }],
    // Unknown parameters are skipped.
    ['foo=bar, timeout=2, baz', { timeout: 2 }],
    ['max=4, extension="a b"', { max: 4 }],
    // Leading zeros are still a number.
    ['timeout=0005', { timeout: 5 }],
    ['timeout=000000000000000000005', { timeout: 5 }],
    // The largest value that is still exact: fifteen digits.
    ['timeout=999999999999999', { timeout: 999999999999999 }],
  ])('reads %j', (header, expected) => {
    expect(parseKeepAlive(header)).toEqual(expected)
  })

  it.each([
    ['timeout=4, timeout=9', { timeout: 4 }],
    ['max=1, max=2, timeout=3, timeout=4', { max: 1, timeout: 3 }],
    // Invalid repeats do not count: the first valid one wins.
    ['timeout=abc, timeout=4', { timeout: 4 }],
    ['timeout=-1, timeout=6', { timeout: 6 }],
    ['timeout=, timeout="", timeout=7', { timeout: 7 }],
  ])('lets the first valid of repeated parameters win in %j', (header, expected) => {
    expect(parseKeepAlive(header)).toEqual(expected)
  })

  it.each([
    '',
    ' ',
    ',,,',
    ';;',
    'garbage',
    'timeout',
    'timeout=',
    '=5',
    'timeout=-1',
    'timeout=+5',
    'timeout=5.5',
    'timeout=1e3',
    'timeout=0x10',
    'timeout=abc',
    'timeout="5',
    'timeout=5"',
    'timeout=5 max=3',
    'timeout=5\tmax=3',
    'timeout=٣',
    '\u0000timeout=5',
    // Beyond fifteen significant digits a value is garbage, not a timeout: ignored, never rounded.
    'timeout=9007199254740993',
    'timeout=99999999999999999999',
    `max=${'9'.repeat(400)}`,
  ])('ignores %j', (header) => {
    expect(parseKeepAlive(header)).toEqual({})
  })

  it('reads an array of header values as one list', () => {
    expect(parseKeepAlive(['timeout=5', 'max=3'])).toEqual({ timeout: 5, max: 3 })
    expect(parseKeepAlive(['garbage', 'timeout=7'])).toEqual({ timeout: 7 })
    expect(parseKeepAlive(['timeout=1', 'timeout=2'])).toEqual({ timeout: 1 })
    expect(parseKeepAlive([])).toEqual({})
    expect(parseKeepAlive([''])).toEqual({})
  })

  it('skips non-string entries of an array', () => {
    expect(parseKeepAlive([5, null, 'timeout=2'] as unknown as string[])).toEqual({ timeout: 2 })
  })

  it('returns an empty result for undefined, null and values that are not headers', () => {
    expect(parseKeepAlive(undefined)).toEqual({})
    expect(parseKeepAlive(null)).toEqual({})
    for (const value of [5, {}, true, Symbol('x'), () => 'timeout=5']) {
      expect(parseKeepAlive(value as unknown as string)).toEqual({})
    }
  })

  it('scans only the first 8 KiB of an absurdly long header', () => {
    expect(parseKeepAlive(`timeout=5,${'x'.repeat(100_000)}`)).toEqual({ timeout: 5 })
    expect(parseKeepAlive(`${'x'.repeat(100_000)},timeout=5`)).toEqual({})
    expect(parseKeepAlive('timeout=3,'.repeat(10_000))).toEqual({ timeout: 3 })
  })

  it('returns a fresh object each call', () => {
    const first = parseKeepAlive('timeout=5')
    first.timeout = 99
    expect(parseKeepAlive('timeout=5')).toEqual({ timeout: 5 })
  })
})

describe('formatKeepAlive', () => {
  it.each([
    [{ timeout: 5, max: 999 }, 'timeout=5, max=999'],
    [{ timeout: 5 }, 'timeout=5'],
    [{ timeout: 0 }, 'timeout=0'],
    [{ timeout: 5.9, max: 3 }, 'timeout=5, max=3'],
    [{ timeout: 0.3 }, 'timeout=0'],
    [{ timeout: 2, max: Infinity }, 'timeout=2'],
    [{ timeout: 2, max: undefined }, 'timeout=2'],
    [{ max: 3 }, 'max=3'],
    [{ max: 0 }, 'max=0'],
    [{ max: 2.7 }, 'max=2'],
    [{}, ''],
  ])('formats %j as %j', (params, expected) => {
    expect(formatKeepAlive(params)).toBe(expected)
  })

  it.each([
    [{ timeout: -1 }, 'keepalive: Keep-Alive timeout must be a finite number of seconds >= 0, got -1'],
    [{ timeout: -0.5 }, 'keepalive: Keep-Alive timeout must be a finite number of seconds >= 0, got -0.5'],
    [{ timeout: Number.NaN }, 'keepalive: Keep-Alive timeout must be a finite number of seconds >= 0, got NaN'],
    [{ timeout: Infinity }, 'keepalive: Keep-Alive timeout must be a finite number of seconds >= 0, got Infinity'],
    [{ max: -1 }, 'keepalive: Keep-Alive max must be a number >= 0 or Infinity, got -1'],
    [{ max: -Infinity }, 'keepalive: Keep-Alive max must be a number >= 0 or Infinity, got -Infinity'],
    [{ max: Number.NaN }, 'keepalive: Keep-Alive max must be a number >= 0 or Infinity, got NaN'],
    [{ timeout: 5, max: -2 }, 'keepalive: Keep-Alive max must be a number >= 0 or Infinity, got -2'],
  ])('throws a RangeError for %j', (params, message) => {
    let thrown: unknown
    try {
      formatKeepAlive(params)
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(RangeError)
    expect((thrown as Error).message).toBe(message)
  })

  it('throws a RangeError for values that are not numbers', () => {
    expect(() => formatKeepAlive({ timeout: '5' as unknown as number })).toThrow(RangeError)
    expect(() => formatKeepAlive({ max: '3' as unknown as number })).toThrow(RangeError)
  })
})

describe('Keep-Alive properties', () => {
  // Fifteen digits is the most parseKeepAlive reads exactly.
  const value = fc.integer({ min: 0, max: 999_999_999_999_999 })

  it('round-trips whole timeout and max through format and parse', () => {
    fc.assert(
      fc.property(fc.option(value, { nil: undefined }), fc.option(value, { nil: undefined }), (timeout, max) => {
        const params = { ...(timeout === undefined ? {} : { timeout }), ...(max === undefined ? {} : { max }) }
        expect(parseKeepAlive(formatKeepAlive(params))).toEqual(params)
      }),
    )
  })

  it('floors fractional timeouts on the way through', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1e9, noNaN: true }), (timeout) => {
        expect(parseKeepAlive(formatKeepAlive({ timeout }))).toEqual({ timeout: Math.floor(timeout) })
      }),
    )
  })

  // fast-check 4 has no fullUnicodeString: a string of code points is `unit: 'binary'`.
  const strings = [
    ['fc.string()', fc.string()],
    ['full unicode', fc.string({ unit: 'binary' })],
    ['grapheme clusters', fc.string({ unit: 'grapheme' })],
    ['Keep-Alive-like text', fc.stringMatching(/^[\s\w=",;.+-]{0,60}$/)],
  ] as const

  it.each(strings)('never throws on %s', (_name, text) => {
    fc.assert(
      fc.property(text, (header) => {
        const parsed = parseKeepAlive(header)
        for (const v of Object.values(parsed)) expect(Number.isSafeInteger(v) && v >= 0).toBe(true)
        expect(Object.keys(parsed).every((key) => key === 'timeout' || key === 'max')).toBe(true)
      }),
    )
  })

  it('never throws on arrays of strings', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('timeout=5', 'max=3', 'timeout="2"'))), (headers) => {
        const parsed = parseKeepAlive(headers)
        for (const v of Object.values(parsed)) expect(Number.isSafeInteger(v) && v >= 0).toBe(true)
      }),
    )
  })

  it('finds a valid timeout wherever it sits among garbage', () => {
    const garbage = fc.string().filter((s) => !/[,;]/.test(s) && !/^\s*(timeout|max)\s*=/i.test(s))
    fc.assert(
      fc.property(fc.array(garbage, { maxLength: 5 }), fc.array(garbage, { maxLength: 5 }), fc.nat(), (before, after, timeout) => {
        expect(parseKeepAlive([...before, `timeout=${timeout}`, ...after].join(', ')).timeout).toBe(timeout)
      }),
    )
  })
})
