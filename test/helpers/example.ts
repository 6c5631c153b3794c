/**
 * The examples run as a user runs them, each as its own process from the repository root, against
 * the built packages; their processes and clients are closed after each test.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Client } from 'undici'
import { afterEach, beforeAll } from 'vitest'

/** The repository root, with a trailing slash. */
const root = fileURLToPath(new URL('../..', import.meta.url))

export interface RunningExample {
  child: ChildProcessWithoutNullStreams
  /** `http://127.0.0.1:<port>`, from the listening line. */
  url: string
  /** Everything the process printed on stdout so far. */
  output(): string
  exited: Promise<[number | null, NodeJS.Signals | null]>
}

export interface Examples {
  /** Spawns `node ...args` in the repository root; killed after the test if it is still running. */
  spawn(args: readonly string[], env?: NodeJS.ProcessEnv): ChildProcessWithoutNullStreams
  /** Runs `node examples/<name>/server.mjs` on a free port and resolves once it prints its listening line. */
  start(name: string): Promise<RunningExample>
  /**
   * An undici Client on one connection; keepAliveTimeoutThreshold 0: it trusts the advertised
   * timeout in full, so the connection is still open (idle) when the server drains it.
   */
  client(url: string): Client
}

/**
 * Registers a `beforeAll` that fails at once, saying why, when one of `packages` is not built
 * (`pnpm build`; `pnpm test` does it), and an `afterEach` that closes every client and kills every process.
 */
export function useExamples(packages: readonly string[]): Examples {
  const children = new Set<ChildProcessWithoutNullStreams>()
  const clients = new Set<Client>()

  beforeAll(() => {
    const missing = packages.filter((p) => !existsSync(`${root}packages/${p}/dist/index.js`))
    if (missing.length > 0) throw new Error(`the examples run the built packages; run \`pnpm build\` first (missing dist of ${missing.join(', ')})`)
  })

  afterEach(async () => {
    await Promise.all([...clients].map((client) => client.destroy()))
    clients.clear()
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await once(child, 'exit')
      }
    }
    children.clear()
  })

  function spawnNode(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ChildProcessWithoutNullStreams {
    const child = spawn(process.execPath, args, { cwd: root, env })
    children.add(child)
    return child
  }

  return {
    spawn: spawnNode,
    async start(name) {
      const child = spawnNode([`examples/${name}/server.mjs`], { ...process.env, PORT: '0' })
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
      let stdout = ''
      let stderr = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
      const url = await new Promise<string>((resolve, reject) => {
        const onData = (): void => {
          const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)
          if (match === null) return
          child.stdout.off('data', onData)
          resolve(match[1]!)
        }
        child.stdout.on('data', onData)
        void exited.then(([code, signal]) => reject(new Error(`examples/${name} exited (${code ?? signal}) before listening:\n${stdout}${stderr}`)))
      })
      return { child, url, output: () => stdout, exited }
    },
    client(url) {
      const client = new Client(url, { pipelining: 1, keepAliveTimeoutThreshold: 0 })
      clients.add(client)
      return client
    },
  }
}
