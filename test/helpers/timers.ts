/** Watches Node's `Timeout` resources: which a piece of code creates, and when they are all destroyed. */
import { createHook } from 'node:async_hooks'

/** Timers that hold the process open (unref'd ones are not active resources). */
export function refTimers(): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length
}

export interface TimerWatch {
  /** Runs `during`, recording every `Timeout` it creates. */
  record(during: () => void): void
  /** How many recorded timers are not destroyed yet. */
  readonly live: number
  /** Resolves once every recorded timer has been destroyed (cleared, or fired and done). */
  readonly destroyed: Promise<void>
  /** Stops watching; call it in a `finally`. */
  disable(): void
}

/** Enables an async hook that records timers created inside `record()` and sees them destroyed. */
export function watchTimers(): TimerWatch {
  const created = new Set<number>()
  let recording = false
  let onDestroyed: () => void = () => {}
  const destroyed = new Promise<void>((resolve) => (onDestroyed = resolve))
  const hook = createHook({
    init(id, type) {
      if (recording && type === 'Timeout') created.add(id)
    },
    destroy(id) {
      if (created.delete(id) && created.size === 0) onDestroyed()
    },
  }).enable()
  return {
    record(during) {
      recording = true
      try {
        during()
      } finally {
        recording = false
      }
    },
    get live() {
      return created.size
    },
    destroyed,
    disable: () => hook.disable(),
  }
}
