// Starts each runnable example as its own process, exactly as a user would (`node examples/<x>/server.mjs`),
// talks to it over a real keep-alive connection, then sends SIGTERM and reads the shutdown report.
// The examples import the built packages: run `pnpm build` first (`pnpm test` does).
import type { Client } from 'undici'
import { describe, expect, it } from 'vitest'
import { FRESH_STATS } from '../test/helpers/contract.js'
import { useExamples } from '../test/helpers/example.js'
import { expectHeaders, fromHeaderObject, type HasHeaders } from '../test/helpers/wire.js'

const examples = ['express', 'koa', 'fastify', 'raw-http'] as const
const REPORT = /^keepalive: drained in \d+\.\d\ds: (\d+) idle closed, (\d+) requests completed, (\d+) forced$/m

const { start, client: keepAliveClient } = useExamples(['core', 'express', 'koa', 'fastify'])

async function get(client: Client, path: string): Promise<{ status: number; headers: HasHeaders; body: string }> {
  const response = await client.request({ method: 'GET', path })
  return { status: response.statusCode, headers: fromHeaderObject(response.headers), body: await response.body.text() }
}

describe.each(examples)('examples/%s/server.mjs', (name) => {
  it('advertises timeout=5 and a decreasing max on one reused connection, and reports it in /stats', async () => {
    const server = await start(name)
    const client = keepAliveClient(server.url)

    const first = await get(client, '/')
    expect(first.status).toBe(200)
    expect(first.body).toBe('hello\n')
    expectHeaders(first.headers, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })

    const second = await get(client, '/')
    expectHeaders(second.headers, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=998' })

    const stats = await get(client, '/stats')
    expectHeaders(stats.headers, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=997' })
    // The handler's own request is in flight; nothing has closed yet.
    expect(JSON.parse(stats.body)).toEqual({ ...FRESH_STATS, connections: { open: 1, active: 1, idle: 0 }, requests: 2, reuseRatio: 0.5 })

    const ready = await get(client, '/ready')
    expect(ready.status).toBe(200)
    expect(ready.body).toBe('ok')
    expectHeaders(ready.headers, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=996' })
  })

  it('drains the idle keep-alive connection on SIGTERM, prints the report and exits 0', async () => {
    const server = await start(name)
    const client = keepAliveClient(server.url)
    expectHeaders((await get(client, '/')).headers, { 'keep-alive': 'timeout=5, max=999' })

    server.child.kill('SIGTERM')
    const [code, signal] = await server.exited

    expect({ code, signal }).toEqual({ code: 0, signal: null })
    const lines = server.output().trim().split('\n')
    expect(lines).toHaveLength(3)
    expect(lines[0]).toMatch(/^listening on /)
    expect(lines[1]).toBe('keepalive: SIGTERM received: reporting not ready; draining now')
    const report = REPORT.exec(lines[2]!)
    expect(report, `report line, got: ${lines[2]}`).not.toBeNull()
    // The client's pooled connection was idle: the drain closed it, nothing was cut.
    expect(report!.slice(1).map(Number)).toEqual([1, 0, 0])
  })
})
