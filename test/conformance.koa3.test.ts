import { runConformance } from './conformance.js'
import { koa3Harness } from './harness/koa.js'

runConformance(koa3Harness)
