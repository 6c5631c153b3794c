import { execFileSync } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { expect, it } from 'vitest'
import { connect, connectionHeaders, type RawClient } from '../helpers/wire.js'
import { useResources } from '../helpers/resources.js'

const resources = useResources()

const WANTED = 2000
/** Both ends of every connection live in this process: two descriptors each, plus headroom. */
const limit = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim())
const SOCKETS = Number.isFinite(limit) ? Math.min(WANTED, Math.floor((limit - 256) / 2)) : WANTED

it(`closes ${SOCKETS} idle keep-alive sockets promptly once shutdown starts`, async () => {
  // If the descriptor limit is low the test opens fewer sockets; the name says how many.
  expect(SOCKETS).toBeGreaterThanOrEqual(Math.min(WANTED, 500))
  const { controller: ka, port } = await resources.startServer({}, undefined, { backlog: 1024 })

  const clients: RawClient[] = []
  resources.add(clients, (all) => all.forEach((c) => c.destroy()))
  // Opened in batches, each socket serving one request, so they are keep-alive sockets gone idle.
  for (let i = 0; i < SOCKETS; i += 200) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(200, SOCKETS - i) }, async () => {
        const client = await connect(port)
        clients.push(client)
        const res = await client.request('/')
        expect(connectionHeaders(res).connection).toBe('keep-alive')
        return client
      }),
    )
    expect(batch).toHaveLength(Math.min(200, SOCKETS - i))
  }
  expect(ka.stats().connections).toEqual({ open: SOCKETS, active: 0, idle: SOCKETS })

  const startedAt = performance.now()
  const report = await ka.shutdown({ timeout: 10 })
  await Promise.all(clients.map((c) => c.closed))
  const seconds = (performance.now() - startedAt) / 1000
  console.log(`${SOCKETS} idle sockets (fd limit ${limit}): drained in ${report.elapsed.toFixed(3)}s, all client sockets closed after ${seconds.toFixed(3)}s`)

  expect(report).toMatchObject({ closedIdle: SOCKETS, completed: 0, forced: 0 })
  expect(seconds).toBeLessThan(5)
  expect(ka.stats().connections.open).toBe(0)
  expect(ka.stats().closes.drain).toBe(SOCKETS)
})
