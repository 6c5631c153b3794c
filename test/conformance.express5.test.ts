import { runConformance } from './conformance.js'
import { express5Harness } from './harness/express.js'

runConformance(express5Harness)
