import type { CheckStatus, ProbeResult } from './probe.js'

/** Options of {@link formatResult}. */
export interface FormatOptions {
  /** Colour the marks with ANSI escapes. @default false */
  color?: boolean
}

const MARKS: Record<CheckStatus, string> = { pass: '✓', fail: '✗', skip: '–' }
const COLORS: Record<CheckStatus, string> = { pass: '\x1b[32m', fail: '\x1b[31m', skip: '\x1b[2m' }

/**
 * Formats a probe result as the verdict table `keepalive probe` prints: one line per check,
 * ✓ (consistent), ✗ (behaviour contradicts the headers) or – (nothing to verify), with the evidence.
 */
export function formatResult(result: Readonly<ProbeResult>, options: Readonly<FormatOptions> = {}): string {
  const width = Math.max(...result.checks.map((check) => check.title.length))
  const mark = (status: CheckStatus): string => (options.color === true ? `${COLORS[status]}${MARKS[status]}\x1b[0m` : MARKS[status])
  const lines = [`keepalive probe ${result.url}`, '']
  for (const check of result.checks) lines.push(`  ${mark(check.status)} ${check.title.padEnd(width)}  ${check.evidence}`)
  const failed = result.checks.filter((check) => check.status === 'fail').length
  lines.push('')
  lines.push(
    failed === 0
      ? `${mark('pass')} the server does what its headers say (${result.elapsed.toFixed(1)} s)`
      : `${mark('fail')} ${failed} check${failed === 1 ? '' : 's'} found behaviour that contradicts the headers (${result.elapsed.toFixed(1)} s)`,
  )
  return `${lines.join('\n')}\n`
}
