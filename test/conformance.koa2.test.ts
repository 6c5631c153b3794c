import { runConformance } from './conformance.js'
import { koa2Harness } from './harness/koa.js'

runConformance(koa2Harness)
