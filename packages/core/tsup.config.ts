import { defineConfig } from 'tsup'
import { packageBuild } from '../../tsup.base'

// `check` is the option-checking kit the exporters share (internal subpath, not public API).
export default defineConfig({ ...packageBuild, entry: ['src/index.ts', 'src/check.ts'] })
