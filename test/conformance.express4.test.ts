import { runConformance } from './conformance.js'
import { express4Harness } from './harness/express.js'

runConformance(express4Harness)
