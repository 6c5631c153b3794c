import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach } from 'vitest'

/** Something a test opened and must close: a server, a socket, an agent. */
export type Closer = () => unknown

/**
 * Registers an `afterEach` that closes, in reverse order, whatever the current test opened, even
 * when it failed halfway: clients are closed before the servers they talk to.
 */
export function useResources(): {
  add<T>(resource: T, close: (resource: T) => unknown): T
  /** Listens on 127.0.0.1 port 0 and resolves with the port; after the test, sockets are destroyed and the server closed. */
  listen(server: Server): Promise<number>
} {
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
  return {
    add,
    async listen(server) {
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      add(server, (s) => {
        s.closeAllConnections()
        if (s.listening) s.close()
      })
      return (server.address() as AddressInfo).port
    },
  }
}
