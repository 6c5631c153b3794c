import { runConformance } from './conformance.js'
import { nodeHarness } from './harness/node.js'

runConformance(nodeHarness)
