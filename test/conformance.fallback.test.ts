// The conformance suite through the header-store path keepalive falls back to when a Node release
// no longer writes the connection headers from the response fields it sets (docs/architecture.md §5).
import { vi } from 'vitest'

vi.hoisted(() => {
  process.env.KEEPALIVE_NODE_FIELDS = '0'
})

const { runConformance } = await import('./conformance.js')
const { nodeFields } = await import('../packages/core/src/response.js')
if (nodeFields) throw new Error('KEEPALIVE_NODE_FIELDS=0 did not switch to the header-store path')
const { nodeHarness } = await import('./harness/node.js')
const { express5Harness } = await import('./harness/express.js')

runConformance(nodeHarness)
runConformance(express5Harness)
