/**
 * The ways an application hands its headers to Node, on raw node:http: every one must get the
 * policy's headers exactly once, with the application's own `Connection` / `Keep-Alive` honoured
 * as docs/architecture.md §4 rules 3 to 5 say, whether they sit in the header store or in writeHead()'s argument.
 */
import http from 'node:http'
import type { KeepAliveOptions } from '@keepalive/core'
import { describe, expect, it } from 'vitest'
import { useResources } from './helpers/resources.js'
import { connect, expectHeaders, type RawResponse } from './helpers/wire.js'

const resources = useResources()

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void

async function serve(handler: Handler, options: KeepAliveOptions = {}): Promise<number> {
  return (await resources.startServer(options, handler)).port
}

/**
 * Sends `count` requests on one connection, then learns whether the server closed it after the
 * last: either the socket closes, or one more request on it is answered.
 */
async function exchange(port: number, count: number, method = 'GET'): Promise<{ responses: RawResponse[]; closedAfter: boolean }> {
  const client = resources.add(await connect(port), (c) => c.destroy())
  const responses: RawResponse[] = []
  for (let i = 0; i < count; i++) responses.push(await client.request('/', { method }))
  const answered = client.request('/').then(
    () => false,
    () => true,
  )
  const closedAfter = await Promise.race([client.closed.then(() => true), answered])
  return { responses, closedAfter }
}

describe('headers passed to writeHead()', () => {
  it('keeps the policy when the object names neither Connection nor Keep-Alive', async () => {
    const port = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }).end('ok')
    })
    const { responses, closedAfter } = await exchange(port, 2)
    expectHeaders(responses[0]!, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999', 'content-type': 'text/plain' })
    expectHeaders(responses[1]!, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=998' })
    expect(closedAfter).toBe(false)
  })

  it('honours CONNECTION: close given in an object, in any case, with no Keep-Alive beside it', async () => {
    const port = await serve((_req, res) => {
      res.writeHead(200, { CONNECTION: 'close', 'content-length': '2' }).end('ok')
    })
    const { responses, closedAfter } = await exchange(port, 1)
    expectHeaders(responses[0]!, { connection: 'close', 'keep-alive': null })
    expect(closedAfter).toBe(true)
  })

  it('lets a Keep-Alive given as a flat array win, once', async () => {
    const port = await serve((_req, res) => {
      res.writeHead(200, ['Keep-Alive', 'timeout=9', 'Content-Length', '2']).end('ok')
    })
    const { responses, closedAfter } = await exchange(port, 1)
    expectHeaders(responses[0]!, { connection: 'keep-alive', 'keep-alive': 'timeout=9' })
    expect(closedAfter).toBe(false)
  })

  it('closes at max even when the application asked for Connection: keep-alive in nested arrays', async () => {
    const port = await serve(
      (_req, res) => {
        res
          .writeHead(200, [
            ['Connection', 'keep-alive'],
            ['Content-Length', '2'],
          ])
          .end('ok')
      },
      { max: 2 },
    )
    const { responses, closedAfter } = await exchange(port, 2)
    expectHeaders(responses[0]!, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=1' })
    expectHeaders(responses[1]!, { connection: 'close', 'keep-alive': null })
    expect(closedAfter).toBe(true)
  })

  it('passes a status message through with the headers', async () => {
    const port = await serve((_req, res) => {
      res.writeHead(201, 'Made', { 'content-length': '2' }).end('ok')
    })
    const { responses } = await exchange(port, 1)
    expect([responses[0]!.status, responses[0]!.reason]).toEqual([201, 'Made'])
    expectHeaders(responses[0]!, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
  })
})

describe('responses without a body', () => {
  it.each([204, 304])('keeps the connection after a %i and advertises the policy', async (status) => {
    const port = await serve((_req, res) => {
      res.writeHead(status).end()
    })
    const { responses, closedAfter } = await exchange(port, 2)
    expect(responses.map((r) => r.status)).toEqual([status, status])
    expectHeaders(responses[1]!, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=998' })
    expect(closedAfter).toBe(false)
  })

  it('closes a 204 the application gave Transfer-Encoding: chunked, as Node does, with no Keep-Alive', async () => {
    const port = await serve((_req, res) => {
      res.setHeader('Transfer-Encoding', 'chunked')
      res.writeHead(204).end()
    })
    const { responses, closedAfter } = await exchange(port, 1)
    expectHeaders(responses[0]!, { connection: 'close', 'keep-alive': null })
    expect(closedAfter).toBe(true)
  })

  it('counts a closing response to max on HEAD too', async () => {
    const port = await serve(
      (_req, res) => {
        res.setHeader('content-length', '5')
        res.end()
      },
      { max: 1 },
    )
    const { responses, closedAfter } = await exchange(port, 1, 'HEAD')
    expectHeaders(responses[0]!, { connection: 'close', 'keep-alive': null, 'content-length': '5' })
    expect(closedAfter).toBe(true)
  })
})

describe('upgrades answered from a request handler', () => {
  // §4 rule 2: a 101 is the upgrade's, its Connection too, draining or not.
  it('leaves a 101 alone: its Connection: Upgrade, and no Keep-Alive, even while draining', async () => {
    const { port, controller } = await resources.startServer({}, (_req, res) => {
      res.writeHead(101, { Upgrade: 'websocket', Connection: 'Upgrade' }).end()
    })
    const upgrade = {
      headers: [
        ['Upgrade', 'websocket'],
        ['Connection', 'Upgrade'],
      ] as const,
    }
    const client = resources.add(await connect(port), (c) => c.destroy())
    const response = await client.request('/', upgrade)
    expect(response.status).toBe(101)
    expectHeaders(response, { connection: 'Upgrade', upgrade: 'websocket', 'keep-alive': null })
    controller.drain()
    const other = resources.add(await connect(port), (c) => c.destroy())
    const draining = await other.request('/', upgrade)
    expectHeaders(draining, { connection: 'Upgrade', 'keep-alive': null })
  })
})

describe('the application changing its mind', () => {
  it('takes the decision when headers are written, after the application removed its Connection header', async () => {
    const port = await serve((_req, res) => {
      res.setHeader('Connection', 'close')
      res.removeHeader('connection')
      res.end('ok')
    })
    const { responses, closedAfter } = await exchange(port, 2)
    expect(responses[1]!.status).toBe(200)
    expectHeaders(responses[1]!, { 'keep-alive': 'timeout=5, max=998' })
    expect(closedAfter).toBe(false)
  })

  // The hook takes a response's first writeHead() as one that wrote nothing yet: one that threw
  // must leave the next call its own decision.
  it('decides again when a writeHead() that threw is followed by another, with the Connection the application set since', async () => {
    const port = await serve((_req, res) => {
      expect(() => res.writeHead(1000)).toThrow(expect.objectContaining({ code: 'ERR_HTTP_INVALID_STATUS_CODE' }))
      res.setHeader('Connection', 'close')
      res.writeHead(500, { 'content-length': '2' }).end('no')
    })
    const { responses, closedAfter } = await exchange(port, 1)
    expect(responses[0]!.status).toBe(500)
    expectHeaders(responses[0]!, { connection: 'close', 'keep-alive': null })
    expect(closedAfter).toBe(true)
  })

  it('keeps the count right when the application calls writeHead() again after its headers went out', async () => {
    const port = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '2' })
      expect(() => res.writeHead(201, { connection: 'close' })).toThrow(expect.objectContaining({ code: 'ERR_HTTP_HEADERS_SENT' }))
      res.end('ok')
    })
    const { responses, closedAfter } = await exchange(port, 2)
    expectHeaders(responses[0]!, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=999' })
    expectHeaders(responses[1]!, { connection: 'keep-alive', 'keep-alive': 'timeout=5, max=998' })
    expect(closedAfter).toBe(false)
  })
})
