import { once } from 'node:events'
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Server as NetServer } from 'node:net'
import { createKeepAlive, type KeepAliveController, type KeepAliveOptions } from '@keepalive/core'
import { afterEach } from 'vitest'

/** Something a test opened and must close: a server, a socket, an agent. */
export type Closer = () => unknown

/** Where `listen()` listens. */
export interface ListenOptions {
  /** @default '127.0.0.1' */
  host?: string
  /** The listen backlog; Node's default when absent. */
  backlog?: number
}

/** A request handler of `startServer`; it runs after `controller.handle(req, res)`. */
export type Handler = (req: IncomingMessage, res: ServerResponse, controller: KeepAliveController) => void

export interface StartOptions extends ListenOptions {
  /** Serve through this controller instead of a new one from `options` (several servers, one controller). */
  controller?: KeepAliveController
  /** Call `controller.handle(req, res)` before the handler; `false` leaves the server only attached. @default true */
  handle?: boolean
}

/** A node:http server with its keep-alive controller, listening. */
export interface StartedServer {
  readonly port: number
  readonly server: Server
  readonly controller: KeepAliveController
  /** `http://<host>:<port>` */
  readonly url: string
  /** Sockets the server has accepted so far, counted apart from the controller. */
  accepted(): number
}

export interface Resources {
  add<T>(resource: T, close: (resource: T) => unknown): T
  /**
   * Listens on 127.0.0.1 (or `options.host`) port 0 and resolves with the port; after the test,
   * sockets are destroyed (for servers that track them) and the server closed.
   */
  listen(server: NetServer, options?: ListenOptions): Promise<number>
  /**
   * `createKeepAlive(options)`, an `http.createServer` whose handler calls `controller.handle(req, res)`
   * then `handler` (by default: 200 `ok`), `controller.attach(server)`, a count of accepted sockets,
   * then `listen()`.
   */
  startServer(options?: KeepAliveOptions, handler?: Handler, start?: StartOptions): Promise<StartedServer>
}

const ok: Handler = (_req, res) => {
  res.end('ok')
}

/**
 * Registers an `afterEach` that closes, in reverse order, whatever the current test opened, even
 * when it failed halfway: clients are closed before the servers they talk to.
 */
export function useResources(): Resources {
  const open: Closer[] = []
  afterEach(async () => {
    const errors: unknown[] = []
    for (const close of open.splice(0).reverse()) {
      try {
        await close()
      } catch (error) {
        errors.push(error)
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'closing test resources failed')
  })
  function add<T>(resource: T, close: (resource: T) => unknown): T {
    open.push(() => close(resource))
    return resource
  }
  async function listen(server: NetServer, { host = '127.0.0.1', backlog }: ListenOptions = {}): Promise<number> {
    server.listen({ port: 0, host, backlog })
    await once(server, 'listening')
    add(server, (s) => {
      if ('closeAllConnections' in s) (s as Server).closeAllConnections()
      if (s.listening) s.close()
    })
    return (server.address() as AddressInfo).port
  }
  return {
    add,
    listen,
    async startServer(options = {}, handler = ok, start = {}) {
      const controller = start.controller ?? createKeepAlive(options)
      const handle = start.handle ?? true
      const server = http.createServer((req, res) => {
        if (handle) controller.handle(req, res)
        handler(req, res, controller)
      })
      controller.attach(server)
      let accepted = 0
      server.on('connection', () => accepted++)
      const port = await listen(server, start)
      const host = start.host ?? '127.0.0.1'
      return { port, server, controller, url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, accepted: () => accepted }
    },
  }
}
