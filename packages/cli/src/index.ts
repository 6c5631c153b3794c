export { probe } from './probe.js'
export type { CheckId, CheckStatus, ProbeCheck, ProbeOptions, ProbeProgress, ProbeResult } from './probe.js'
/** The verdict table `keepalive probe` prints, for programs that run probe() themselves. */
export { formatResult } from './report.js'
export type { FormatOptions } from './report.js'
