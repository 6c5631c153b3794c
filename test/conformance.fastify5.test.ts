import { runConformance } from './conformance.js'
import { fastify5Harness } from './harness/fastify.js'

runConformance(fastify5Harness)
