// The per-response decision (docs/architecture.md §4): why a response closes its connection, and
// how that is written, into Node's fields or the header store.
import type { ServerResponse } from 'node:http'
import { kSequence, now, type Connection, type NumberedResponse } from './connection.js'
import { HeaderCache, parseKeepAlive, saysClose } from './header.js'
import type { ResolvedOptions } from './options.js'
import { closeReason, type PolicyState } from './policy.js'
import { closeByFields, keepByFields, nodeFields, nodeKeepsAlive } from './response.js'
import type { CloseReason } from './types.js'

type TrackedResponse = ServerResponse & NumberedResponse

/** Writes `Connection: close` in the header store, without any `Keep-Alive` beside it. */
function closeInStore(res: ServerResponse): void {
  res.setHeader('Connection', 'close')
  if (res.hasHeader('keep-alive')) res.removeHeader('keep-alive')
}

/** A connection's seed as a fraction in [0, 1). */
const fraction = (seed: number): number => seed / 0x40000000

/** The decision for one controller. */
export class Decider {
  private readonly headers: HeaderCache

  constructor(
    private readonly options: ResolvedOptions,
    private readonly policy: PolicyState,
    /** The longest idle time any connection was promised (plus grace): the backstop's base. */
    public longestIdleMs: number,
  ) {
    this.headers = new HeaderCache(policy.timeoutMs)
  }

  /** Moves when the policy's numbers (timeout, max) change: fields preset before then are stale. */
  private epoch = 0

  /** The advertised timeout changed: header values are built anew. */
  timeoutChanged(): void {
    this.headers.reset(this.policy.timeoutMs)
  }

  /** The load policy changed its timeout or max: responses preset before now are written again. */
  policyMoved(): void {
    this.epoch++
  }

  /**
   * A request started (`conn.started` counts it; `pipelined`: behind another still in flight): its
   * response is numbered when pipelined (`conn.responseStarted`) and, on the fields path, its
   * keep-alive fields are written now with the policy's numbers. Express swaps every response's
   * prototype as its handler starts, after which each write to the response is a slow lookup
   * (docs/architecture.md §9): written here, before that, the decision as headers go out only
   * checks that nothing changed.
   */
  requestStarted(conn: Connection, res: ServerResponse, pipelined: boolean): void {
    const n = conn.started
    conn.responseStarted(res, pipelined)
    if (!nodeFields) return
    const policy = this.policy
    keepByFields(res, policy.timeoutMs, policy.max === Infinity ? 0 : Math.max(0, policy.max - n))
    conn.preset(this.epoch)
  }

  /**
   * Decides a response's connection headers as they are written. Left to us (`inStore` false),
   * it sets the fields Node writes them from; otherwise it reads and writes the header store.
   */
  decide(conn: Connection, res: object, statusCode: number, inStore: boolean): void {
    const r = res as TrackedResponse
    // Alone in flight, the response is the connection's latest request; in a pipelined burst each
    // carries its number (one that does not started before tracking: the first still in flight).
    const alone = conn.started === conn.finished + 1
    const n = alone ? conn.started : (r[kSequence] ?? conn.finished + 1)
    if (inStore) return this.decideInStore(conn, r, statusCode, n)
    const reason = this.reasonToClose(conn, n)
    if (reason !== null) {
      // Node writes `Connection: close` and ends the socket after this response.
      closeByFields(r)
      conn.predictClose(reason, n)
      return
    }
    const policy = this.policy
    // Alone in flight, the response is the connection's latest request: preset as it started, and
    // still right unless the policy's numbers moved since.
    if (!alone || conn.presetEpoch !== this.epoch) {
      keepByFields(r, policy.timeoutMs, policy.max === Infinity ? 0 : policy.max - n)
    }
    conn.keepFor(policy.timeoutMs + this.options.graceMs)
  }

  /** The decision for a response whose application set `Connection` or `Keep-Alive` itself. */
  private decideInStore(conn: Connection, res: TrackedResponse, statusCode: number, n: number): void {
    if (!nodeKeepsAlive(res, statusCode)) {
      // Node closes after this response (RFC 9112 §9.6: a client that asked to close gets a closing
      // response, whatever the application's own Connection header says): say so, and no
      // Keep-Alive beside it.
      if (!saysClose(res.getHeader('connection'))) closeInStore(res)
      else if (res.hasHeader('keep-alive')) res.removeHeader('keep-alive')
      conn.predictClose(null, n)
      return
    }
    const reason = this.reasonToClose(conn, n)
    if (reason !== null) {
      closeInStore(res)
      conn.predictClose(reason, n)
      return
    }
    const grace = this.options.graceMs
    const own = res.getHeader('keep-alive')
    if (own === undefined) {
      res.setHeader('Keep-Alive', this.headers.value(this.policy.max === Infinity ? Infinity : this.policy.max - n))
      conn.keepFor(this.policy.timeoutMs + grace)
      return
    }
    // The application's header wins, and the socket keeps what it promises.
    const promised = parseKeepAlive(Array.isArray(own) ? own : String(own)).timeout
    const idleMs = (promised === undefined ? this.policy.timeoutMs : Math.min(promised * 1000, 0x7fffffff - grace)) + grace
    conn.keepFor(idleMs)
    if (idleMs > this.longestIdleMs) this.longestIdleMs = idleMs
  }

  private reasonToClose(conn: Connection, n: number): CloseReason | null {
    const { options, policy } = this
    let reason: CloseReason | null
    if (options.maxAgeMs === Infinity && !policy.draining) {
      reason = closeReason(n, 0, policy, options)
    } else {
      const time = now()
      // Each connection's own moments: its jittered age limit, and its turn in a gradual drain.
      const maxAgeMs = options.maxAgeMs * (1 + options.maxAgeJitter * (2 * fraction(conn.seed) - 1))
      reason = closeReason(n, time - conn.createdAt, policy, options, maxAgeMs, policy.draining && drainDue(policy, conn, time))
    }
    // Requests already received behind this one (pipelined) are answered: for every reason but
    // the count the client was told (max=), the last of them carries the close.
    if (reason !== null && reason !== 'maxRequests' && n < conn.started) return null
    return reason
  }
}

/** True once a draining connection's turn has come (at the drain's start, or at its moment in a gradual drain). */
export function drainDue(policy: Readonly<PolicyState>, conn: Connection, time: number): boolean {
  return time >= policy.drainStartMs && (policy.drainWindowMs === 0 || time - policy.drainStartMs >= policy.drainWindowMs * fraction(conn.seed))
}
