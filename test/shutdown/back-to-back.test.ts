import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { createKeepAlive, gracefulShutdown, type ShutdownReport } from '@keepalive/core'
import { Pool } from 'undici'
import { afterAll, describe, expect, it } from 'vitest'
import { agentRequest, backToBack, poolRequest, watchUndiciWrites, type Failure, type Outcome, type Tally } from '../helpers/traffic.js'
import { useResources } from '../helpers/resources.js'

const resources = useResources()

const WORKERS = 32
/** Responses served before the signal, so every pooled socket is open and in use. */
const WARM_UP = 600
const RUNS = 5

interface Run {
  client: string
  readinessDelay: number
  run: number
  tally: Tally
  report: ShutdownReport
  /** Fresh-socket failures on connections the server had accepted: requests the drain dropped. */
  droppedAccepted: number
}

const runs: Run[] = []

function codes(failures: readonly Failure[]): string {
  const byCode = new Map<string, number>()
  for (const f of failures) byCode.set(f.code, (byCode.get(f.code) ?? 0) + 1)
  return [...byCode].map(([code, n]) => `${code} ×${n}`).join(', ') || 'none'
}

afterAll(() => {
  // The figures the issue asks for, per run: printed so they can be quoted.
  for (const r of runs) {
    console.log(
      `${r.client}, readinessDelay ${r.readinessDelay}, run ${r.run}: ${r.tally.ok} ok (${r.tally.closing} with Connection: close), ` +
        `failed on reused sockets ${r.tally.failed.reused.length}, on fresh sockets ${r.tally.failed.fresh.length} ` +
        `(accepted by the server: ${r.droppedAccepted}; ${codes(r.tally.failed.fresh)}), connect errors ${r.tally.failed.connect.length} ` +
        `(${codes(r.tally.failed.connect)}); ` +
        `drain ${r.report.elapsed.toFixed(3)}s, completed ${r.report.completed}, idle closed ${r.report.closedIdle}, forced ${r.report.forced}`,
    )
  }
})

type Client = (port: number) => { send: (path: string) => Promise<Outcome>; close: () => Promise<void> }

const clients: Record<string, Client> = {
  'http.Agent': (port) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: WORKERS })
    return {
      send: (path) => agentRequest(agent, port, path),
      close: async () => agent.destroy(),
    }
  },
  'undici Pool': (port) => {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: WORKERS, pipelining: 1 })
    const watch = watchUndiciWrites()
    return {
      send: (path) => poolRequest(pool, watch, path),
      close: async () => {
        watch.close()
        await pool.destroy()
      },
    }
  },
}

/**
 * One run: WORKERS back-to-back keep-alive loops against a raw node:http server; after WARM_UP responses
 * the process gets the shutdown signal; gracefulShutdown reports not-ready for the readiness delay
 * while serving as usual, then drains. Each loop ends at its first connect
 * error, once the listener is closed.
 */
async function loadRun(clientName: string, readinessDelay: number, run: number): Promise<Run> {
  const ka = createKeepAlive()
  const server = http.createServer((req, res) => {
    res.end('ok')
  })
  ka.attach(server)
  // Which client ports the server accepted: a failure on any of them would be a request the drain dropped.
  const accepted = new Set<number>()
  const onConnection = (socket: Socket): void => {
    if (socket.remotePort !== undefined) accepted.add(socket.remotePort)
  }
  server.on('connection', onConnection)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  resources.add(server, (s) => {
    s.off('connection', onConnection)
    s.closeAllConnections()
    if (s.listening) s.close()
  })
  const serverClosed = once(server, 'close')
  const { port } = server.address() as AddressInfo

  let resolveReport!: (report: ShutdownReport) => void
  const reported = new Promise<ShutdownReport>((resolve) => (resolveReport = resolve))
  const lines: string[] = []
  const graceful = gracefulShutdown(server, {
    keepAlive: ka,
    signals: ['SIGUSR2'],
    readinessDelay,
    timeout: 5,
    exit: false,
    logger: (line) => lines.push(line),
    onShutdown: resolveReport,
  })
  resources.add(graceful, (g) => g.dispose())

  const client = resources.add(clients[clientName]!(port), (c) => c.close())
  let served = 0
  let resolveWarm!: () => void
  const warm = new Promise<void>((resolve) => (resolveWarm = resolve))
  const load = backToBack(
    WORKERS,
    async (path) => {
      const outcome = await client.send(path)
      if (outcome.kind === 'ok' && ++served === WARM_UP) resolveWarm()
      return outcome
    },
    () => false,
  )

  await warm
  expect(graceful.ready).toBe(true)
  process.kill(process.pid, 'SIGUSR2')
  const report = await reported
  expect(await graceful.shutdown()).toBe(report) // what the signal started, awaited past its log line
  const tally = await load
  await serverClosed

  expect(graceful.ready).toBe(false)
  expect(lines).toHaveLength(2) // not ready, then the report
  const droppedAccepted = tally.failed.fresh.filter((f) => f.localPort !== null && accepted.has(f.localPort)).length
  return { client: clientName, readinessDelay, run, tally, report, droppedAccepted }
}

describe.each(Object.keys(clients))('gracefulShutdown under back-to-back load from a %s of 32 keep-alive sockets', (clientName) => {
  it.each(Array.from({ length: RUNS }, (_, i) => i + 1))('with a readiness delay, loses no request written to an already-open socket (run %i)', async (run) => {
    const result = await loadRun(clientName, 0.3, run)
    runs.push(result)
    const { tally, report } = result
    // Every request written on a socket that had already carried a response succeeded.
    expect(tally.failed.reused).toEqual([])
    // A new socket can fail only if the server never accepted it: the listener closed with it still
    // in the kernel's backlog, which resets it (a new connection refused after close, like a connect error).
    expect(result.droppedAccepted).toBe(0)
    for (const failure of tally.failed.fresh) expect(failure.code).toBe('ECONNRESET')
    expect(tally.otherStatus).toBe(0)
    expect(tally.ok).toBeGreaterThan(WARM_UP)
    expect(tally.closing).toBeGreaterThan(0)
    expect(report.forced).toBe(0)
    // Each loop ended at its first connect error, once the listener was closed.
    expect(tally.failed.connect).toHaveLength(WORKERS)
  })

  it.each([1, 2])('without a readiness delay, loses no request at all: only new connections are refused (run %i)', async (run) => {
    const result = await loadRun(clientName, 0, run)
    runs.push(result)
    const { tally, report } = result
    // Every pooled socket was open when the drain began: none fails, none is reset in the backlog.
    expect(tally.failed.reused).toEqual([])
    expect(tally.failed.fresh).toEqual([])
    expect(tally.otherStatus).toBe(0)
    expect(tally.failed.connect).toHaveLength(WORKERS)
    expect(tally.failed.connect.every((f) => f.code === 'ECONNREFUSED')).toBe(true)
    // The requests on the wire when the drain began were answered with Connection: close.
    expect(tally.closing).toBe(report.completed)
    expect(report.forced).toBe(0)
  })
})
