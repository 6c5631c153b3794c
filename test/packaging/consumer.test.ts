// Installs the packed packages into a fresh project outside the workspace, as a user would, and
// checks they load from require() and import, type-check under node16 and bundler resolution, and
// serve a response with the policy's headers through each adapter.
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = join(import.meta.dirname, '..', '..')
const PACKAGES = ['core', 'express', 'koa', 'fastify', 'cluster'] as const
let project = ''

async function sh(command: string, args: string[], cwd: string): Promise<string> {
  const { stdout } = await run(command, args, { cwd, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false' } })
  return stdout
}

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), 'keepalive-consumer-'))
  const packs = join(project, 'packs')
  await mkdir(packs)
  for (const name of PACKAGES) await sh('pnpm', ['pack', '--pack-destination', packs], join(root, 'packages', name))
  const tarballs = (await readdir(packs)).map((file) => join(packs, file))
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, version: '1.0.0' }))
  await sh('npm', ['install', '--no-package-lock', ...tarballs, 'express@5', 'koa@3', 'fastify@5', 'prom-client@15', '@types/node@20'], project)
}, 240_000)

afterAll(async () => {
  if (project !== '') await rm(project, { recursive: true, force: true })
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
      core: 'function', parse: 9, graceful: 'function', express: 'function', koa: 'function', fastify: 'function',
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
      header: 'timeout=5, max=9', stats: 5, express: 'function', koa: 'function', fastify: 'function',
      cluster: 'standalone', start: 'function', metrics: 'function',
    })
  })

  it.each(['node16', 'bundler'] as const)('type-check a TypeScript consumer with moduleResolution %s', async (resolution) => {
    const source = `import http from 'node:http'
import { createKeepAlive, type KeepAliveStats, type ShutdownReport } from '@keepalive/core'
import { keepAlive } from '@keepalive/express'
import koaKeepAlive from '@keepalive/koa'
import fastifyKeepAlive from '@keepalive/fastify'
import Fastify from 'fastify'
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
const member = joinCluster(ka, { server, timeout: 5 })
const mode: 'cluster' | 'pm2' | 'standalone' = member.mode
const metricsText: Promise<string> = createClusterMetrics({ by: 'sum' }).metrics()
declare const clusterStats: ClusterStats
const firstRow: number = clusterStats.workers[0]!.id
declare const reloaded: ReloadReport
const code: number | null = reloaded.workers[0]!.code
// @ts-expect-error joinCluster's options are typed too
joinCluster(ka, { sever: server })
void open; void report; void mode; void metricsText; void firstRow; void code
`
    const dir = join(project, `ts-${resolution}`)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, resolution === 'node16' ? 'consumer.mts' : 'consumer.ts'), source)
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
  }, 60_000)

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
})
