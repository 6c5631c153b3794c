// What reaches a terminal: server-supplied text made inert, and whether to colour.

/** C0 controls, DEL, C1 controls (0x9b is a one-byte CSI) and the bidirectional overrides that can reorder a line. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

/** The part of UNSAFE that JSON.stringify leaves as it is (it escapes C0 controls itself). */
const UNESCAPED_BY_JSON = /[\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

/**
 * Makes text safe to print: every control character is shown as `\xNN` (`\u{NNNN}` beyond 0xff),
 * so a header value cannot move the cursor, retitle the window, erase lines or fake a verdict.
 * @example
 * escapeTerminal('timeout=5\x1b]0;pwned\x07') // 'timeout=5\\x1b]0;pwned\\x07'
 */
export function escapeTerminal(text: string): string {
  return text.replace(UNSAFE, (char) => {
    const code = char.charCodeAt(0)
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`
  })
}

/**
 * JSON for a terminal: `JSON.stringify` escapes C0 controls but leaves DEL, C1 and the bidi
 * overrides as they are; they become `\u00NN` escapes, which parse back to the same string.
 */
export function stringifyForTerminal(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(UNESCAPED_BY_JSON, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** What colour detection reads from an output stream (a `tty.WriteStream` has all of it). */
export interface ColorTarget {
  isTTY?: boolean
  hasColors?(count?: number, env?: Readonly<Record<string, string | undefined>>): boolean
}

/**
 * Whether to colour `stream`: `FORCE_COLOR` decides when set (`0` or `false` turn colour off, any
 * other value on); then a non-empty `NO_COLOR` (no-color.org: an empty one does not count) or
 * `TERM=dumb` turn it off; otherwise a terminal that `hasColors()` gets colour.
 */
export function colorEnabled(stream: Readonly<ColorTarget>, env: Readonly<Record<string, string | undefined>>): boolean {
  const force = env.FORCE_COLOR
  if (force !== undefined) return force !== '0' && force.toLowerCase() !== 'false'
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  if (env.TERM === 'dumb') return false
  if (stream.isTTY !== true) return false
  if (typeof stream.hasColors !== 'function') return true
  // Node's hasColors() counts an empty NO_COLOR as set: ask it without one.
  const { NO_COLOR: _empty, ...rest } = env
  return stream.hasColors(8, rest)
}

/** Whether the progress line may be redrawn in place (`\r` and an erase-line escape). */
export function canRedraw(stream: Readonly<ColorTarget>, env: Readonly<Record<string, string | undefined>>): boolean {
  return stream.isTTY === true && env.TERM !== 'dumb'
}
