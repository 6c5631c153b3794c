import { describe, expect, it } from 'vitest'
import { normaliseAddress } from '../src/tracker.js'

describe('normaliseAddress', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::FFFF:10.1.2.3', '10.1.2.3'],
    ['::1', '::1'],
    ['FE80::1', 'fe80::1'],
    ['2001:db8::ffff:1', '2001:db8::ffff:1'],
  ])('maps %s to %s', (address, expected) => {
    expect(normaliseAddress(address)).toBe(expected)
  })

  it('returns null for a socket without an address', () => {
    expect(normaliseAddress(undefined)).toBeNull()
  })
})
