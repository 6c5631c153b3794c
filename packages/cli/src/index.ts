export { probe, ProbeError } from './probe.js'
export type { CheckId, CheckStatus, ProbeCheck, ProbeOptions, ProbeProgress, ProbeResult } from './probe.js'
/** The verdict table `keepalive probe` prints, for programs that run probe() themselves. */
export { formatResult } from './report.js'
export type { FormatOptions } from './report.js'
/** For programs that print probe results themselves: escape what the server sent, and colour as the CLI does. */
export { colorEnabled, escapeTerminal } from './terminal.js'
export type { ColorTarget } from './terminal.js'
