// The drain: stop accepting, close every response, close idle sockets once quiet, GOAWAY to HTTP/2
// sessions, destroy what is left at the deadline, and report (docs/architecture.md §7).
import { performance } from 'node:perf_hooks'
import { now, type Connection } from './connection.js'
import { drainDue } from './decision.js'
import type { ShutdownSettings } from './options.js'
import { stopAccepting } from './server.js'
import { closable, createBegun, requestArriving } from './sweep.js'
import type { Tracker } from './tracker.js'
import type { AttachableServer, ShutdownReport } from './types.js'

/** How often the drain looks again at a quiet socket on which a request has begun to arrive. */
const ARRIVING_RECHECK_MS = 100
/** Sockets closed in one pass before yielding, so responses in flight are not held up by 10,000 closes. */
const CLOSE_BATCH = 256

/** The way to end a running drain at once; kept with the drain so gracefulShutdown needs no controller internals. */
export const kForce = Symbol.for('keepalive.force')

/** How gracefulShutdown tells the controller that it reports not ready (the controller emits `notReady`). */
export const kNotReady = Symbol.for('keepalive.notReady')

/** A controller whose drain can be ended at once (a second signal), and told that readiness is lost. */
export interface Forceable {
  [kForce]?: () => void
  [kNotReady]?: () => void
}

/** A running drain: its promise, and the way to end it early. */
export interface Drain {
  readonly promise: Promise<ShutdownReport>
  /** Destroys whatever is left now, as the deadline would. */
  force(): void
}

/**
 * Drains every connection of a tracker: stop accepting (from this turn's check phase); from that
 * close on, every response carries `Connection: close` (docs/architecture.md §7); an idle socket closes once it has been quiet for the quiet period with no
 * request arriving (a request already sent reaches us first and is answered); HTTP/2 sessions get
 * GOAWAY; at the deadline whatever is left is destroyed.
 */
export function drain(tracker: Tracker, servers: Iterable<AttachableServer>, settings: ShutdownSettings): Drain {
  const started = performance.now()
  const report: ShutdownReport = { closedIdle: 0, completed: 0, forced: 0, upgraded: 0, elapsed: 0 }
  /** Upgraded sockets already announced to the application. */
  const announced = new WeakSet<Connection>()
  const { quietMs } = settings
  /** Idle connections waiting to have been quiet for `quietMs`. */
  const waiting = new Set<Connection>()
  let timer: NodeJS.Timeout | null = null
  let queued: NodeJS.Immediate | null = null
  let deadline: NodeJS.Timeout | null = null
  let resolve!: (report: ShutdownReport) => void
  const promise = new Promise<ShutdownReport>((r) => (resolve = r))
  let done = false

  /** Listeners not closed yet: the drain ends only once none is left, or connections accepted last would be reset. */
  let listening = 0

  function finish(): void {
    if (done || listening > 0) return
    done = true
    if (deadline !== null) clearTimeout(deadline)
    if (timer !== null) clearTimeout(timer)
    if (queued !== null) clearImmediate(queued)
    waiting.clear()
    tracker.drainHooks = { idle() {}, released() {}, finished() {}, closedIdle() {} }
    report.elapsed = (performance.now() - started) / 1000
    tracker.emit('shutdown', { ...report })
    resolve(report)
  }

  // Closing runs from setImmediate, after the poll phase: a request that reached the socket while
  // the timer was due (or while the event loop was stalled) is read first, and answered.
  function queuePass(): void {
    if (queued !== null || done) return
    queued = setImmediate(pass)
  }

  function pass(): void {
    queued = null
    if (timer !== null) clearTimeout(timer)
    timer = null
    const time = now()
    const begun = createBegun()
    let next = Infinity
    let closed = 0
    for (const conn of waiting) {
      if (!conn.waiting || !tracker.conns.has(conn)) {
        waiting.delete(conn)
      } else if (closed >= CLOSE_BATCH) {
        next = 0 // the rest after a turn of the event loop
        break
      } else if (!drainDue(tracker.policy, conn, time)) {
        // A gradual drain: this connection's turn comes later in the window.
        next = Math.min(next, turnOf(conn) - time)
      } else if (time - turnOf(conn) < quietMs) {
        // Quiet counts from the connection's turn (the drain's start, without a window) too. A
        // socket idle since before it may be the one its client reaches for now: a proxy whose warm
        // connections answer Connection: close takes a colder pooled one (measured behind nginx:
        // closing those at once reset the request it had just written).
        next = Math.min(next, turnOf(conn) + quietMs - time)
      } else if (closable(conn, time, quietMs, begun)) {
        waiting.delete(conn)
        report.closedIdle++
        closed++
        conn.close('drain')
      } else if (conn.state === 'detached') {
        waiting.delete(conn)
        announce(conn)
      } else {
        const quietFor = time - conn.idleSince
        next = Math.min(next, quietFor >= quietMs && requestArriving(conn, begun) ? ARRIVING_RECHECK_MS : quietMs - quietFor)
      }
    }
    if (next === 0) queuePass()
    else if (next !== Infinity && !done) {
      // One timer for the whole drain, set for the connection that turns quiet first.
      timer = setTimeout(queuePass, Math.ceil(next))
      timer.unref()
    }
  }

  /** When a connection's turn comes in a gradual drain (whole ms). */
  function turnOf(conn: Connection): number {
    return tracker.policy.drainStartMs + Math.ceil((tracker.policy.drainWindowMs * conn.seed) / 0x40000000)
  }

  /** An upgraded socket is not HTTP: the application closes it (or the deadline does). */
  function announce(conn: Connection): void {
    if (announced.has(conn)) return
    announced.add(conn)
    tracker.emit('upgraded', { socket: conn.socket })
  }

  function closeWhenQuiet(conn: Connection): void {
    if (!conn.waiting) return
    conn.markRead()
    waiting.add(conn)
    queuePass()
  }

  function force(): void {
    if (done) return
    for (const conn of [...tracker.conns]) {
      if (conn.state === 'detached' || conn.checkDetached()) {
        report.upgraded++
        conn.destroy('forced')
      } else if (conn.inFlight > 0) {
        report.forced++
        conn.destroy('forced')
      } else if (conn.state !== 'closing') {
        report.closedIdle++
        conn.destroy('drain')
      } else {
        conn.destroy(conn.reason ?? 'drain')
      }
    }
    if (tracker.conns.size === 0) finish()
  }

  // Responses stay keep-alive until the listeners are closed (closeFromNow below), §7.
  tracker.startDraining(settings.gradualMs, true)
  tracker.drainHooks = {
    idle: closeWhenQuiet,
    released: () => {
      if (tracker.conns.size === 0) finish()
    },
    finished: () => {
      report.completed++
    },
    closedIdle: () => {
      report.closedIdle++
    },
  }
  tracker.watchCloses()
  // The listener closes from the check phase: the poll before it has accepted every connection
  // waiting in the kernel's queue (each then drained like the rest), where closing it at once
  // would reset them. Only then do responses say Connection: close (§7): until the listener is
  // gone a proxy keeps its pooled connections and has no reason to open new ones, which a
  // connection arriving after that poll would be (reset by the close, its request with it).
  for (const server of servers) {
    listening++
    setImmediate(() => {
      stopAccepting(server)
      if (--listening > 0) return
      tracker.closeFromNow()
      queuePass()
      if (tracker.conns.size === 0) finish()
    })
  }
  if (listening === 0) tracker.closeFromNow()
  for (const conn of [...tracker.conns]) {
    if (conn.session !== null) {
      if (conn.inFlight === 0) {
        report.closedIdle++
        conn.close('drain')
      } else {
        conn.predictClose('drain')
        conn.session.close() // GOAWAY: open streams finish, no new ones start
      }
    } else if (conn.checkDetached()) {
      announce(conn)
    } else {
      closeWhenQuiet(conn)
    }
  }
  deadline = setTimeout(force, settings.timeoutMs)
  deadline.unref()
  if (tracker.conns.size === 0) finish()
  return { promise, force }
}
