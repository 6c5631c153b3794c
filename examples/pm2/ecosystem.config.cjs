// PM2 running examples/express/server.mjs in cluster mode, as docs/pm2-cluster.md shows it:
//   pm2 start examples/pm2/ecosystem.config.cjs
// PM2 stops and reloads a process with SIGINT (gracefulShutdown listens for it by default), then
// SIGKILL after kill_timeout ms: kill_timeout must cover the readiness delay, the drain timeout and a
// margin. test/guides.test.ts checks these numbers and runs the server through a SIGINT.
/* global module */
module.exports = {
  apps: [
    {
      name: 'web',
      script: 'examples/express/server.mjs',
      exec_mode: 'cluster',
      instances: 2,
      env: { PORT: '3000' },
      // gracefulShutdown's defaults: readinessDelay 0 s, drain timeout 10 s; plus a 5 s margin.
      kill_timeout: 15_000,
    },
  ],
}
