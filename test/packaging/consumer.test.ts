// Installs the packed packages into a fresh project outside the workspace, as a user would, and
// checks they load from require() and import, type-check under node16 and bundler resolution, serve
// a response with the policy's headers through each adapter, and that the CLI's bin runs.
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = join(import.meta.dirname, '..', '..')
/** Every published package, by its folder under packages/; a new package is one more line. */
const PACKAGES = ['core', 'express', 'koa', 'fastify', 'prometheus', 'otel', 'cli', 'cluster'] as const
/** What the consumer installs for each peer dependency of a published package. */
const PEERS: Record<string, string> = {
  express: 'express@5',
  koa: 'koa@3',
  fastify: 'fastify@5',
  'prom-client': 'prom-client@15',
  '@opentelemetry/api': '@opentelemetry/api@1.9',
}

interface Manifest {
  name: string
  private?: boolean
  bin?: Record<string, string>
  peerDependencies?: Record<string, string>
}
const manifest = (dir: string): Manifest => JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')) as Manifest
const names = PACKAGES.map((dir) => manifest(dir).name)
let project = ''

async function sh(command: string, args: string[], cwd: string): Promise<string> {
  const { stdout } = await run(command, args, {
    cwd,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false' },
  })
  return stdout
}

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), 'keepalive-consumer-'))
  const packs = join(project, 'packs')
  await mkdir(packs)
  for (const dir of PACKAGES) await sh('pnpm', ['pack', '--pack-destination', packs], join(root, 'packages', dir))
  const tarballs = (await readdir(packs)).map((file) => join(packs, file))
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, version: '1.0.0' }))
  await sh('npm', ['install', '--no-package-lock', ...tarballs, ...Object.values(PEERS), '@types/node@20'], project)
}, 300_000)

afterAll(async () => {
  if (project !== '') await rm(project, { recursive: true, force: true })
})

describe('the list of published packages', () => {
  it('names every package under packages/ that is not private, and a consumer install for each peer dependency', () => {
    const published = readdirSync(join(root, 'packages')).filter((dir) => manifest(dir).private !== true)
    expect([...PACKAGES].sort()).toEqual(published.sort())
    const peers = new Set(PACKAGES.flatMap((dir) => Object.keys(manifest(dir).peerDependencies ?? {})))
    expect([...peers].sort()).toEqual(Object.keys(PEERS).sort())
  })
})

describe('packed packages in a fresh project', () => {
  it('load with require() from a .cjs file', async () => {
    await writeFile(
      join(project, 'load.cjs'),
      `const core = require('@keepalive/core')
const express = require('@keepalive/express')
const koa = require('@keepalive/koa')
const fastify = require('@keepalive/fastify')
const cluster = require('@keepalive/cluster')
const clusterMetrics = require('@keepalive/cluster/metrics')
console.log(JSON.stringify({
  core: typeof core.createKeepAlive, parse: core.parseKeepAlive('timeout=5, max=9').max, graceful: typeof core.gracefulShutdown,
  express: typeof express.keepAlive, koa: typeof koa.keepAlive, fastify: typeof (fastify.default ?? fastify),
  cluster: [typeof cluster.startCluster, typeof cluster.joinCluster, typeof clusterMetrics.createClusterMetrics],
}))`,
    )
    const out = JSON.parse(await sh(process.execPath, ['load.cjs'], project))
    expect(out).toEqual({
      core: 'function',
      parse: 9,
      graceful: 'function',
      express: 'function',
      koa: 'function',
      fastify: 'function',
      cluster: ['function', 'function', 'function'],
    })
  })

  it('load with import from an .mjs file', async () => {
    await writeFile(
      join(project, 'load.mjs'),
      `import { createKeepAlive, formatKeepAlive } from '@keepalive/core'
import { keepAlive as expressKeepAlive } from '@keepalive/express'
import koaKeepAlive from '@keepalive/koa'
import fastifyKeepAlive from '@keepalive/fastify'
import { joinCluster, startCluster } from '@keepalive/cluster'
import { createClusterMetrics } from '@keepalive/cluster/metrics'
console.log(JSON.stringify({ header: formatKeepAlive({ timeout: 5, max: 9 }), stats: createKeepAlive().stats().timeout,
  express: typeof expressKeepAlive().attach, koa: typeof koaKeepAlive().stats, fastify: typeof fastifyKeepAlive,
  cluster: joinCluster(createKeepAlive()).mode, start: typeof startCluster, metrics: typeof createClusterMetrics().handler }))`,
    )
    const out = JSON.parse(await sh(process.execPath, ['load.mjs'], project))
    expect(out).toEqual({
      header: 'timeout=5, max=9',
      stats: 5,
      express: 'function',
      koa: 'function',
      fastify: 'function',
      cluster: 'standalone',
      start: 'function',
      metrics: 'function',
    })
  })

  it.each(['node16', 'bundler'] as const)(
    'type-check a TypeScript consumer with moduleResolution %s',
    async (resolution) => {
      // Every package's whole public surface, so each declaration file is read and checked.
      const everyPackage = names.map((name, i) => `import * as p${i} from '${name}'\nvoid p${i}\n`).join('')
      const source = `import http from 'node:http'
import { createKeepAlive, type KeepAliveStats, type ShutdownReport } from '@keepalive/core'
import { keepAlive } from '@keepalive/express'
import koaKeepAlive from '@keepalive/koa'
import fastifyKeepAlive from '@keepalive/fastify'
import Fastify from 'fastify'
import { registerKeepAliveMetrics, type KeepAliveMetrics } from '@keepalive/prometheus'
import { registerKeepAliveInstruments } from '@keepalive/otel'
import { probe, formatResult, type ProbeResult } from '@keepalive/cli'
import { Registry } from 'prom-client'
import { metrics } from '@opentelemetry/api'
${everyPackage}
import { joinCluster, type ClusterStats, type ReloadReport } from '@keepalive/cluster'
import { createClusterMetrics } from '@keepalive/cluster/metrics'
const ka = createKeepAlive({ timeout: 65, adaptive: { from: 0.6 } })
const server = http.createServer((req, res) => { ka.handle(req, res); res.end() })
ka.attach(server)
const stats: KeepAliveStats = ka.stats()
const open: number = stats.connections.open
const report: Promise<ShutdownReport> = ka.shutdown({ timeout: 1 })
const mw = keepAlive({ max: 100 })
mw.on('close', (event) => { const reason: string = event.reason; void reason })
koaKeepAlive({ behind: { idleTimeout: 60 } }).stats()
const app = Fastify()
app.register(fastifyKeepAlive, { timeout: 10 })
app.after(() => { const s: KeepAliveStats = app.keepAlive.stats(); void s })
// @ts-expect-error unknown options are rejected by the types too
createKeepAlive({ maxage: 3 })
const prom: KeepAliveMetrics = registerKeepAliveMetrics(ka, { registry: new Registry() })
registerKeepAliveInstruments(ka, { meterProvider: metrics.getMeterProvider() }).unregister()
const probed: Promise<ProbeResult> = probe('http://127.0.0.1:1/', { maxWait: 1 })
probed.then((result) => formatResult(result), () => {})
const member = joinCluster(ka, { server, timeout: 5 })
const mode: 'cluster' | 'pm2' | 'standalone' = member.mode
const metricsText: Promise<string> = createClusterMetrics({ by: 'sum' }).metrics()
declare const clusterStats: ClusterStats
const firstRow: number = clusterStats.workers[0]!.id
declare const reloaded: ReloadReport
const code: number | null = reloaded.workers[0]!.code
// @ts-expect-error joinCluster's options are typed too
joinCluster(ka, { sever: server })
void open; void report; void prom; void mode; void metricsText; void firstRow; void code
`
      const dir = join(project, `ts-${resolution}`)
      await mkdir(dir, { recursive: true })
      await writeFile(join(dir, resolution === 'node16' ? 'consumer.mts' : 'consumer.ts'), source)
      // Under node16 a .cts file resolves every package through its `require` types (.d.cts).
      if (resolution === 'node16') await writeFile(join(dir, 'consumer.cts'), `${everyPackage}export {}\n`)
      await writeFile(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            target: 'ES2022',
            module: resolution === 'node16' ? 'node16' : 'esnext',
            moduleResolution: resolution,
            types: ['node'],
            typeRoots: [join(project, 'node_modules', '@types')],
            skipLibCheck: false,
          },
        }),
      )
      const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
      await expect(sh(process.execPath, [tsc, '-p', dir], project)).resolves.toBe('')
    },
    60_000,
  )

  it('serves a keep-alive response through each adapter', async () => {
    await writeFile(
      join(project, 'serve.mjs'),
      `import http from 'node:http'
import express from 'express'
import Koa from 'koa'
import Fastify from 'fastify'
import { createKeepAlive } from '@keepalive/core'
import { keepAlive as expressKeepAlive } from '@keepalive/express'
import { keepAlive as koaKeepAlive } from '@keepalive/koa'
import fastifyKeepAlive from '@keepalive/fastify'

async function headers(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const agent = new http.Agent({ keepAlive: true })
  const value = await new Promise((resolve, reject) => {
    http.get({ port: server.address().port, host: '127.0.0.1', agent }, (res) => { res.resume(); res.on('end', () => resolve(res.headers['keep-alive'])) }).on('error', reject)
  })
  agent.destroy()
  return value
}
const out = {}
const ka = createKeepAlive({ max: 10 })
const raw = http.createServer((req, res) => { ka.handle(req, res); res.end('ok') })
ka.attach(raw)
out.raw = await headers(raw)
await ka.shutdown()
const e = express(); const em = expressKeepAlive({ max: 10 }); e.use(em); e.get('/', (req, res) => res.send('ok'))
const es = http.createServer(e); em.attach(es)
out.express = await headers(es); await em.shutdown()
const k = new Koa(); const km = koaKeepAlive({ max: 10 }); k.use(km); k.use((ctx) => { ctx.body = 'ok' })
const ks = http.createServer(k.callback()); km.attach(ks)
out.koa = await headers(ks); await km.shutdown()
const f = Fastify(); await f.register(fastifyKeepAlive, { max: 10 }); f.get('/', async () => 'ok'); await f.ready()
out.fastify = await headers(f.server); await f.close()
console.log(JSON.stringify(out))
`,
    )
    const out = JSON.parse(await sh(process.execPath, ['serve.mjs'], project))
    expect(out).toEqual({ raw: 'timeout=5, max=9', express: 'timeout=5, max=9', koa: 'timeout=5, max=9', fastify: 'timeout=5, max=9' })
  }, 60_000)

  it('gives every package the same named exports from require() and import', async () => {
    await writeFile(
      join(project, 'exports.mjs'),
      `import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
const out = {}
for (const name of ${JSON.stringify(names)}) {
  const cjs = Object.keys(require(name)).filter((key) => key !== '__esModule').sort()
  const esm = Object.keys(await import(name)).filter((key) => key !== 'module.exports').sort()
  out[name] = { cjs, esm }
}
console.log(JSON.stringify(out))`,
    )
    const out = JSON.parse(await sh(process.execPath, ['exports.mjs'], project)) as Record<string, { cjs: string[]; esm: string[] }>
    expect(Object.keys(out)).toEqual(names)
    for (const name of names) {
      expect(out[name]!.cjs.length, `${name} exports something`).toBeGreaterThan(0)
      expect(out[name]!.esm, name).toEqual(out[name]!.cjs)
    }
    expect(out['@keepalive/prometheus']!.esm).toContain('registerKeepAliveMetrics')
    expect(out['@keepalive/otel']!.esm).toContain('registerKeepAliveInstruments')
    expect(out['@keepalive/cli']!.esm).toEqual(expect.arrayContaining(['formatResult', 'probe']))
  })

  it('reports a controller through the Prometheus and OpenTelemetry packages, from require() and import', async () => {
    const body = (load: (name: string) => string): string => `const { createKeepAlive } = ${load('@keepalive/core')}
const { registerKeepAliveMetrics } = ${load('@keepalive/prometheus')}
const { registerKeepAliveInstruments } = ${load('@keepalive/otel')}
const { Registry } = ${load('prom-client')}
const { metrics } = ${load('@opentelemetry/api')}
const ka = createKeepAlive()
const registry = new Registry()
const prom = registerKeepAliveMetrics(ka, { registry })
const otel = registerKeepAliveInstruments(ka, { meterProvider: metrics.getMeterProvider() })
registry.metrics().then((text) => {
  console.log(JSON.stringify({ timeout: /^keepalive_timeout_seconds 5$/m.test(text), otel: typeof otel.unregister }))
  prom.unregister()
  otel.unregister()
})
`
    await writeFile(
      join(project, 'metrics.cjs'),
      body((name) => `require('${name}')`),
    )
    await writeFile(
      join(project, 'metrics.mjs'),
      body((name) => `await import('${name}')`),
    )
    for (const file of ['metrics.cjs', 'metrics.mjs']) {
      expect(JSON.parse(await sh(process.execPath, [file], project)), file).toEqual({ timeout: true, otel: 'function' })
    }
  }, 60_000)

  it('runs keepalive --help from the installed bin', async () => {
    expect(manifest('cli').bin).toEqual({ keepalive: './dist/cli.js' })
    const out = await sh(join(project, 'node_modules', '.bin', 'keepalive'), ['--help'], project)
    expect(out).toMatch(/^Usage: keepalive probe <url> \[options\]$/m)
  })
})
