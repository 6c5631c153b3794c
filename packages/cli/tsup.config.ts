import { defineConfig } from 'tsup'
import { packageBuild } from '../../tsup.base'

export default defineConfig([
  // Everything but the bin, which the second build writes at the same time.
  { ...packageBuild, clean: ['!cli.js'] },
  { entry: { cli: 'src/cli.ts' }, format: ['esm'], banner: { js: '#!/usr/bin/env node' }, target: 'node20', sourcemap: false },
])
