import { afterEach } from 'vitest'

/** Something a test opened and must close: a server, a socket, an agent. */
export type Closer = () => unknown

/**
 * Registers an `afterEach` that closes, in reverse order, whatever the current test opened, even
 * when it failed halfway: clients are closed before the servers they talk to.
 */
export function useResources(): { add<T>(resource: T, close: (resource: T) => unknown): T } {
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
  return {
    add(resource, close) {
      open.push(() => close(resource))
      return resource
    },
  }
}
