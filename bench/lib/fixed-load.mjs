// `node fixed-load.mjs <port> <requests> <connections>`: exactly `requests` GET / over
// `connections` keep-alive connections (http.Agent), then prints {"errors": n}. The instructions
// suite needs a count of requests, not a duration (see suites/instructions.mjs).
import http from 'node:http'

const [port, requests, connections] = process.argv.slice(2).map(Number)
const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
let sent = 0
let done = 0
let errors = 0
await new Promise((resolve) => {
  const finished = () => (++done === requests ? resolve() : next())
  const next = () => {
    if (sent >= requests) return
    sent++
    http
      .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        if (res.statusCode !== 200) errors++
        res.resume()
        res.on('end', finished)
      })
      .on('error', () => {
        errors++
        finished()
      })
  }
  for (let i = 0; i < connections; i++) next()
})
agent.destroy()
console.log(JSON.stringify({ errors }))
