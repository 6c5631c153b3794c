import type { Options } from 'tsup'

/** The build every package shares: ESM and CJS for Node 20, each with its own type declarations. */
export const packageBuild = {
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  target: 'node20',
  sourcemap: false,
} satisfies Options
