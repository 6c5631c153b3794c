// Resolves a Node.js binary of a given major version for the test matrix. Node builds are published
// on the npm registry as `node-<platform>-<arch>` packages whose tarball holds `package/bin/node`;
// they are unpacked into a cache folder outside the repository and reused.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

export const cacheDir = process.env.KEEPALIVE_NODE_CACHE ?? join(homedir(), '.cache', 'keepalive-node')

/** Returns the path of a `node` binary of this major version, fetching it once if needed. */
export function nodeBinary(major) {
  if (Number(process.versions.node.split('.')[0]) === major) return process.execPath
  const dir = join(cacheDir, `node-${major}`)
  const bin = join(dir, 'package', 'bin', 'node')
  if (existsSync(bin)) return bin
  mkdirSync(cacheDir, { recursive: true })
  const name = `node-${process.platform}-${process.arch}@${major}`
  const tarball = execFileSync('npm', ['pack', name, '--silent', '--pack-destination', cacheDir], { encoding: 'utf8' }).trim().split('\n').pop()
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  execFileSync('tar', ['xzf', join(cacheDir, tarball), '-C', dir])
  rmSync(join(cacheDir, tarball), { force: true })
  if (!existsSync(bin)) throw new Error(`no bin/node in ${name} (found: ${readdirSync(join(dir, 'package')).join(', ')})`)
  return bin
}
