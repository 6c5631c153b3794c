import { defineConfig } from 'tsup'
import { packageBuild } from '../../tsup.base'

// `metrics` is its own entry so that the main one loads without prom-client installed.
export default defineConfig({ ...packageBuild, entry: ['src/index.ts', 'src/metrics.ts'] })
