import type { CheckStatus, ProbeResult } from './probe.js'
import { escapeTerminal } from './terminal.js'

/** Options of {@link formatResult}. */
export interface FormatOptions {
  /** Colour the marks with ANSI escapes. @default false */
  color?: boolean
}

const MARKS: Record<CheckStatus, string> = { pass: '✓', fail: '✗', skip: '–', unchecked: '?' }
const COLORS: Record<CheckStatus, string> = { pass: '\x1b[32m', fail: '\x1b[31m', skip: '\x1b[2m', unchecked: '\x1b[33m' }

/**
 * Formats a probe result as the verdict table `keepalive probe` prints: one line per check,
 * ✓ (consistent), ✗ (behaviour contradicts the headers), – (nothing to verify) or ? (not checked),
 * with the evidence. Everything the server sent is escaped (`\xNN`), so it prints safely on a terminal.
 */
export function formatResult(result: Readonly<ProbeResult>, options: Readonly<FormatOptions> = {}): string {
  const width = Math.max(...result.checks.map((check) => check.title.length))
  const mark = (status: CheckStatus): string => (options.color === true ? `${COLORS[status]}${MARKS[status]}\x1b[0m` : MARKS[status])
  const lines = [`keepalive probe ${escapeTerminal(result.url)}`, '']
  for (const check of result.checks) lines.push(`  ${mark(check.status)} ${escapeTerminal(check.title).padEnd(width)}  ${escapeTerminal(check.evidence)}`)
  const failed = result.checks.filter((check) => check.status === 'fail').length
  const unchecked = result.checks.filter((check) => check.status === 'unchecked').length
  const elapsed = `${result.elapsed.toFixed(1)} s`
  lines.push('')
  if (failed > 0) lines.push(`${mark('fail')} ${failed} check${failed === 1 ? '' : 's'} found behaviour that contradicts the headers (${elapsed})`)
  else if (unchecked > 0) lines.push(`${mark('pass')} the server does what its headers say, as far as checked: ${unchecked} not checked (${elapsed})`)
  else lines.push(`${mark('pass')} the server does what its headers say (${elapsed})`)
  return `${lines.join('\n')}\n`
}
