// The child side of startChild() (util.mjs): answers the parent's commands over IPC, and never
// outlives its parent or its time budget.

/** Longest a bench child may live, whatever happens to its parent. */
const LIFETIME_MS = 30 * 60_000

/** Serves `handlers[cmd](message)` for each message; sends `{ ready: true, ...info }` first. */
export function serveCommands(handlers, info = {}) {
  process.on('message', async (message) => {
    const handler = handlers[message.cmd]
    try {
      if (handler === undefined) throw new Error(`unknown command ${message.cmd}`)
      const result = await handler(message)
      process.send({ id: message.id, result: result ?? null })
    } catch (error) {
      process.send({ id: message.id, error: error instanceof Error ? error.stack : String(error) })
    }
  })
  process.on('disconnect', () => process.exit(0))
  process.on('SIGTERM', () => process.exit(0))
  setTimeout(() => process.exit(3), LIFETIME_MS).unref()
  process.send({ ready: true, ...info })
}
