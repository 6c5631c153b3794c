// Fallback load generator (when wrk is unavailable): autocannon against argv URL, printing one JSON
// line in the shape of parseWrk() (util.mjs).
import autocannon from 'autocannon'

const [url, connections, seconds] = process.argv.slice(2)
const result = await autocannon({ url, connections: Number(connections), duration: Number(seconds), pipelining: 1 })
console.log(
  JSON.stringify({
    rps: result.requests.total / (result.duration || Number(seconds)),
    requests: result.requests.total,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  }),
)
