import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const src = (name: string): string => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url))

export default defineConfig({
  resolve: {
    alias: {
      // Subpaths first: the package aliases below would otherwise swallow them.
      '@keepalive/cluster/metrics': fileURLToPath(new URL('./packages/cluster/src/metrics.ts', import.meta.url)),
      '@keepalive/core/check': fileURLToPath(new URL('./packages/core/src/check.ts', import.meta.url)),
      '@keepalive/core': src('core'),
      '@keepalive/express': src('express'),
      '@keepalive/koa': src('koa'),
      '@keepalive/fastify': src('fastify'),
      '@keepalive/prometheus': src('prometheus'),
      '@keepalive/otel': src('otel'),
      '@keepalive/cli': src('cli'),
      '@keepalive/cluster': src('cluster'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts', 'bench/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // scripts/test.mjs reads the JSON report for its closing "N passed, N failed" line.
    reporters: ['default', 'json'],
    outputFile: { json: '.cache/vitest-report.json' },
  },
})
