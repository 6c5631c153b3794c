// Reading a probe's result in the tests: each check's status by id, and the statuses of a consistent server.
import type { CheckId, CheckStatus, ProbeResult } from '@keepalive/cli'

/** Each check's status, by id. */
export function statuses(result: ProbeResult): Record<CheckId, CheckStatus> {
  return Object.fromEntries(result.checks.map((check) => [check.id, check.status])) as Record<CheckId, CheckStatus>
}

/** Every check passing, but for those `except` gives another status. */
export function allPass(except: Partial<Record<CheckId, CheckStatus>> = {}): Record<CheckId, CheckStatus> {
  return {
    advertised: 'pass',
    max: 'pass',
    close: 'pass',
    idle: 'pass',
    http10: 'pass',
    http10KeepAlive: 'pass',
    conflicting: 'pass',
    headers: 'pass',
    ...except,
  }
}
