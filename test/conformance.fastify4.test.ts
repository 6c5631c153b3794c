import { runConformance } from './conformance.js'
import { fastify4Harness } from './harness/fastify.js'

runConformance(fastify4Harness)
