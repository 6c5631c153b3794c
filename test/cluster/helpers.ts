// Shared pieces of the cluster suites: a primary process driven over IPC, a free port, and the
// keep-alive load (an undici Pool of 32 connections, GET and POST mixed) that counts what it lost.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { Pool } from 'undici'

export const fixtures = new URL('./fixtures/', import.meta.url)

/** A port free on 127.0.0.1 now: node:cluster workers of one primary share it. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

export interface Primary {
  child: ChildProcess
  /** Sends a command and resolves with its result (rejects with the primary's error). */
  call<T>(cmd: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>
  output(): string
  exited: Promise<[number | null, NodeJS.Signals | null]>
  /** Kills the primary and its workers if still running. */
  kill(): Promise<void>
}

/** Forks a fixture primary and resolves once it reports every worker listening. */
export async function startPrimary(script: string, env: Record<string, string>): Promise<Primary> {
  const child = fork(new URL(script, fixtures), [], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  let output = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  let next = 0
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>()
  child.on('message', (message: { id?: number; result?: unknown; error?: string }) => {
    if (message.id === undefined) return
    const waiter = pending.get(message.id)
    pending.delete(message.id)
    if (message.error !== undefined) waiter?.reject(new Error(message.error))
    else waiter?.resolve(message.result)
  })
  await new Promise<void>((resolve, reject) => {
    const onMessage = (message: { event?: string }): void => {
      if (message.event !== 'ready') return
      child.off('message', onMessage)
      resolve()
    }
    child.on('message', onMessage)
    void exited.then(([code, signal]) => reject(new Error(`${script} exited (${code ?? signal}) before ready:\n${output}`)))
  })
  return {
    child,
    output: () => output,
    exited,
    call<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<T> {
      const id = next++
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id)
          reject(new Error(`${cmd} gave no answer within ${timeoutMs} ms:\n${output}`))
        }, timeoutMs)
        pending.set(id, {
          resolve: (value) => {
            clearTimeout(timer)
            resolve(value as T)
          },
          reject: (error) => {
            clearTimeout(timer)
            reject(error)
          },
        })
        child.send({ id, cmd, ...args })
      })
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return
      // SIGKILL on the primary leaves its workers: they exit once their IPC channel closes (node:cluster).
      child.kill('SIGKILL')
      await exited
    },
  }
}

export interface LoadResult {
  ok: number
  lost: number
  /** Error messages (or status codes) of the lost requests, counted. */
  errors: Record<string, number>
  /** Worker pids that answered. */
  pids: Set<number>
}

export interface Load {
  /** Resolves once `n` more requests have been answered (progress under load, not a sleep); rejects after `timeoutMs`. */
  answered(n: number, timeoutMs?: number): Promise<void>
  stop(): Promise<LoadResult>
}

/** Continuous keep-alive load: `connections` loops, each sending its next request as the last one ends. */
export function startLoad(origin: string, connections = 32): Load {
  // A request left unanswered counts as lost after 10 s (undici's own default waits 300 s).
  const pool = new Pool(origin, { connections, pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000 })
  const result: LoadResult = { ok: 0, lost: 0, errors: {}, pids: new Set() }
  let running = true
  const watchers: { at: number; resolve: () => void }[] = []
  const body = 'x'.repeat(512)

  function count(key: string): void {
    result.lost++
    result.errors[key] = (result.errors[key] ?? 0) + 1
  }

  async function loop(n: number): Promise<void> {
    let i = n
    while (running) {
      const post = i++ % 2 === 0
      try {
        const response = await pool.request({ method: post ? 'POST' : 'GET', path: '/', ...(post ? { body } : {}) })
        const text = await response.body.text()
        const [pid, length] = text.split(' ')
        if (response.statusCode !== 200 || (post && length !== String(body.length))) count(`status ${response.statusCode}: ${text}`)
        else {
          result.ok++
          result.pids.add(Number(pid))
        }
      } catch (error) {
        count((error as Error & { code?: string }).code ?? (error as Error).message)
      }
      for (const w of watchers.filter((w) => result.ok >= w.at)) {
        watchers.splice(watchers.indexOf(w), 1)
        w.resolve()
      }
    }
  }
  const loops = Array.from({ length: connections }, (_, n) => loop(n))
  return {
    answered(n, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const watcher = {
          at: result.ok + n,
          resolve: () => {
            clearTimeout(timer)
            resolve()
          },
        }
        const timer = setTimeout(() => {
          watchers.splice(watchers.indexOf(watcher), 1)
          reject(
            new Error(`${n} more answers did not come within ${timeoutMs} ms: ${JSON.stringify({ ok: result.ok, lost: result.lost, errors: result.errors })}`),
          )
        }, timeoutMs)
        watchers.push(watcher)
      })
    },
    async stop() {
      running = false
      await Promise.all(loops)
      await pool.close()
      return result
    },
  }
}
