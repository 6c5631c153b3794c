import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { KeepAliveController, KeepAliveOptions } from '@keepalive/core'

/**
 * One target (raw node:http or a framework major) the conformance suite runs against.
 *
 * Every harness serves the same routes, each written the framework's own usual way:
 *
 * | route                | response                                                                |
 * |----------------------|-------------------------------------------------------------------------|
 * | `GET /`              | 200 `ok` with a Content-Length (the framework's normal send)            |
 * | `GET /stream`        | 200 `hello world` written in two chunks, no Content-Length (streamed)   |
 * | `GET /app-keepalive` | 200 `ok`; the application sets its own `Keep-Alive: timeout=30`         |
 * | `GET /app-close`     | 200 `ok`; the application sets `Connection: close`                      |
 * | `GET /slow?ms=N`     | 200 `ok` after N ms                                                     |
 * | `GET /throw`         | the handler throws: the framework's own error response (500)            |
 * | `GET /hijack`        | Fastify only (`hijack`): `reply.hijack()`, then 200 `ok` written raw    |
 * | anything else        | the framework's own 404                                                 |
 *
 * `HEAD` works for every `GET` route, as the framework provides it.
 */
export interface Harness {
  /** Shown in test names, e.g. `express5`. */
  readonly name: string
  /** Serves `GET /hijack` through `reply.hijack()`. */
  readonly hijack: boolean
  /** The application can leave `attach()` to the first request (Fastify attaches at register). */
  readonly lazyAttach: boolean
  /** Starts a server on 127.0.0.1 port 0 with the keep-alive package registered with `options`. */
  start(options?: KeepAliveOptions, config?: StartConfig): Promise<RunningServer>
}

export interface StartConfig {
  /** Call `controller.attach(server)` after listen. @default true */
  attach?: boolean
}

export interface RunningServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  readonly port: number
  /** The package's controller (for Express and Koa, the middleware itself carries its methods). */
  readonly controller: KeepAliveController
  /** The Node server underneath. */
  readonly server: Server
  /** Destroys every connection and closes the server. */
  close(): Promise<void>
}

/** The slow route's delay from its query string. */
export function delayOf(url: string | undefined): number {
  return Number(new URL(url ?? '/', 'http://localhost').searchParams.get('ms') ?? 0)
}

/** Resolves with the port once `server` listens (an error while starting rejects). */
export async function listening(server: Server): Promise<number> {
  if (!server.listening) {
    await new Promise<void>((resolve, reject) => {
      const fail = (error: Error): void => {
        server.off('listening', ready)
        reject(error)
      }
      const ready = (): void => {
        server.off('error', fail)
        resolve()
      }
      server.once('error', fail)
      server.once('listening', ready)
    })
  }
  return (server.address() as AddressInfo).port
}

/** Destroys every connection, then closes the server and waits for it. */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return
  server.closeAllConnections()
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())))
}

/** Builds the record every harness's `start()` resolves with. */
export function running(server: Server, port: number, controller: KeepAliveController, close: () => Promise<void>): RunningServer {
  return { url: `http://127.0.0.1:${port}`, port, controller, server, close }
}

/** An application that starts its own node:http server, as `app.listen(port, host)` does in Express and Koa. */
export interface Listener {
  listen(port: number, host: string): Server
}

/**
 * A harness for a target whose keep-alive controller can attach after listen or on the first request
 * (node:http, Express, Koa): `build` registers the package with `options` and returns it with the app.
 */
export function listenerHarness(name: string, build: (options?: KeepAliveOptions) => { controller: KeepAliveController; app: Listener }): Harness {
  return {
    name,
    hijack: false,
    lazyAttach: true,
    async start(options?: KeepAliveOptions, config: StartConfig = {}) {
      const { controller, app } = build(options)
      const server = app.listen(0, '127.0.0.1')
      const port = await listening(server)
      if (config.attach !== false) controller.attach(server)
      return running(server, port, controller, () => closeServer(server))
    },
  }
}
