// publint and arethetypeswrong on every published package: exports, files and types must resolve
// for ESM and CJS consumers alike.
import { execFile } from 'node:child_process'
import { readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = join(import.meta.dirname, '..', '..')
const packages = readdirSync(join(root, 'packages')).filter((name) => existsSync(join(root, 'packages', name, 'package.json')))

describe.each(packages)('@keepalive/%s', (name) => {
  const dir = join(root, 'packages', name)

  it('passes publint with no errors or warnings', async () => {
    const { stdout } = await run(process.execPath, [join(root, 'node_modules', 'publint', 'src', 'cli.js'), '--strict', dir], { cwd: dir })
    expect(stdout).toMatch(/All good|No issues/i)
  }, 60_000)

  it('passes arethetypeswrong for node16 (ESM and CJS) and bundler', async () => {
    const attw = join(root, 'node_modules', '@arethetypeswrong', 'cli', 'dist', 'index.js')
    // --pack runs `npm pack` in the package; pnpm's workspace: ranges do not matter to type resolution.
    const { stdout } = await run(process.execPath, [attw, '--pack', '.', '--format', 'json', '--profile', 'node16'], { cwd: dir, maxBuffer: 16 * 1024 * 1024 })
    type Resolution = { resolution?: { fileName: string } }
    const { analysis } = JSON.parse(stdout) as {
      analysis: { types: { kind: string }; problems: unknown[]; entrypoints: Record<string, { resolutions: Record<string, Resolution> }> }
    }
    expect(analysis.problems).toEqual([])
    expect(analysis.types.kind).toBe('included')
    const main = analysis.entrypoints['.']!.resolutions
    expect(main['node16-cjs']?.resolution?.fileName).toMatch(/dist\/index\.d\.cts$/)
    expect(main['node16-esm']?.resolution?.fileName).toMatch(/dist\/index\.d\.ts$/)
    expect(main['bundler']?.resolution?.fileName).toMatch(/dist\/index\.d\.ts$/)
  }, 60_000)
})
