// `node bench/profile.mjs [node|express|koa|fastify] [seconds] [options JSON, "Infinity" allowed] [bare server JSON]`:
// CPU-profiles one framework's hello-world server (node --cpu-prof) under wrk load, bare and with
// keepalive, and prints where the time goes: the top functions by self time, and the share spent in
// keepalive's own code and in the Node.js functions only keepalive calls per request. Shares are of
// the busy samples (the `(idle)` ones left out), so they read as a share of the server's CPU time.
// The bare server's JSON sets what it does alike, e.g. '{"maxRequestsPerSocket":1000}' to recycle as
// often as keepalive's default `max`. Profiles are kept in bench/.out/profiles.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { benchDir, createLoadGenerator, fmtNum, pinning, printTable, startChild, configArg } from './lib/util.mjs'

const framework = process.argv[2] ?? 'node'
const seconds = Number(process.argv[3] ?? 10)
const options = JSON.parse(process.argv[4] ?? '{}', (_, v) => (v === 'Infinity' ? Infinity : v))
const bareConfig = JSON.parse(process.argv[5] ?? '{}')
const dir = join(benchDir, '.out', 'profiles')
mkdirSync(dir, { recursive: true })
const load = createLoadGenerator({ quick: false })

/** Self time per function (by name and file) from a .cpuprofile. */
function selfTimes(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  // Each sample's time is the delta that follows it: self time in µs, not a count.
  const counts = new Map()
  profile.samples.forEach((id, i) => counts.set(id, (counts.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0)))
  let total = 0
  const functions = new Map()
  for (const [id, count] of counts) {
    const { callFrame } = byId.get(id)
    if (callFrame.functionName === '(idle)') continue
    total += count
    const where = callFrame.url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\/(\.pnpm\/[^/]+\/node_modules\/)?/, '')
    const key = `${callFrame.functionName || '(anonymous)'} ${where ? `${where.split('/').slice(-3).join('/')}:${callFrame.lineNumber + 1}` : ''}`.trim()
    functions.set(key, (functions.get(key) ?? 0) + count)
  }
  return { total, functions }
}

async function profileOne(variant) {
  const prefix = `${framework}-${variant}`
  for (const f of readdirSync(dir)) if (f.startsWith(prefix)) rmSync(join(dir, f))
  const config = variant === 'keepalive' ? { framework, keepalive: options } : { framework, keepalive: null, ...bareConfig }
  const server = await startChild('server.mjs', [configArg(config)], {
    cpu: pinning()?.server ?? null,
    execArgv: ['--cpu-prof', '--cpu-prof-interval=200', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${prefix}.cpuprofile`],
  })
  const result = await load.run({ url: `http://127.0.0.1:${server.info.port}/`, connections: 50, seconds })
  await server.stop()
  return { result, ...selfTimes(join(dir, `${prefix}.cpuprofile`)) }
}

/** keepalive's own code: the built packages. */
const isOurs = (name) => /(core|express|koa|fastify)\/dist\/index\.js/.test(name)
const share = (p, name) => ((p.functions.get(name) ?? 0) / p.total) * 100

// Both at once, on the same core, each under its own load: whatever slows the machine slows both.
const profiles = {}
const [bareProfile, keepaliveProfile] = await Promise.all(['bare', 'keepalive'].map((variant) => profileOne(variant)))
profiles.bare = bareProfile
profiles.keepalive = keepaliveProfile
for (const [variant, p] of Object.entries(profiles)) {
  const top = [...p.functions].sort((a, b) => b[1] - a[1]).slice(0, 20)
  printTable(
    `${framework} ${variant}: ${fmtNum(p.result.rps, 0)} req/s under profiling; top self time (${fmtNum(p.total / 1000, 0)} ms busy, ${fmtNum(p.total / p.result.requests, 2)} µs per request)`,
    ['function', 'self %'],
    top.map(([name, n]) => [name.slice(0, 100), fmtNum((n / p.total) * 100, 2)]),
  )
}
const { bare, keepalive } = profiles
const mine = [...keepalive.functions.keys()].filter(isOurs).sort((a, b) => share(keepalive, b) - share(keepalive, a))
printTable(
  `${framework} + keepalive: keepalive's own functions`,
  ['function', 'self %'],
  mine.map((name) => [name.slice(0, 100), fmtNum(share(keepalive, name), 2)]),
)
console.log(
  `total self time in keepalive's own code: ${fmtNum(
    mine.reduce((a, name) => a + share(keepalive, name), 0),
    2,
  )}%`,
)
const names = new Set([...bare.functions.keys(), ...keepalive.functions.keys()])
const grown = [...names]
  .filter((name) => !isOurs(name) && !name.startsWith('('))
  .map((name) => [name, share(bare, name), share(keepalive, name)])
  .sort((a, b) => b[2] - b[1] - (a[2] - a[1]))
  .slice(0, 12)
const perRequest = (p, name) => (p.functions.get(name) ?? 0) / p.result.requests
const grownUs = [...names]
  .map((name) => [name, perRequest(bare, name), perRequest(keepalive, name)])
  .sort((a, b) => b[2] - b[1] - (a[2] - a[1]))
  .slice(0, 16)
printTable(
  `${framework}: self time per request (µs), the functions that grew most with keepalive; busy µs per request: bare ${fmtNum(bare.total / bare.result.requests, 2)}, keepalive ${fmtNum(keepalive.total / keepalive.result.requests, 2)}`,
  ['function', 'bare µs', 'keepalive µs', 'change'],
  grownUs.map(([name, b, k]) => [name.slice(0, 100), fmtNum(b, 3), fmtNum(k, 3), `${k - b >= 0 ? '+' : ''}${fmtNum(k - b, 3)}`]),
)
printTable(
  `${framework}: other functions whose self time grew most with keepalive`,
  ['function', 'bare %', 'keepalive %', 'change'],
  grown.map(([name, b, k]) => [name.slice(0, 100), fmtNum(b, 2), fmtNum(k, 2), `${k - b >= 0 ? '+' : ''}${fmtNum(k - b, 2)}`]),
)
