'use strict'

// The HTTP workload's load generator, in its own process: autocannon against one route per
// message `{ url, tokens, connections, seconds }` (or `amount`, a number of requests instead of
// a duration), each connection cycling through requests that carry the given tokens (prepared
// once, so that this process spends its core sending, not building requests). Answers each
// message with req/s and latency percentiles.

const autocannon = require('autocannon')

process.on('message', ({ url, tokens, connections, seconds, amount }) => {
  autocannon(
    {
      url,
      connections,
      ...(amount ? { amount } : { duration: seconds }),
      requests: tokens.map((token) => ({ headers: { authorization: `Bearer ${token}` } })),
    },
    (err, result) => {
      if (err) throw err
      if (result.non2xx > 0 || result.errors > 0) {
        throw new Error(`${url}: ${result.non2xx} answers other than 2xx, ${result.errors} errors`)
      }
      process.send({
        perSecond: result.requests.total / (amount ? result.duration : seconds),
        calls: result.requests.total,
        p50Ms: result.latency.p50,
        p99Ms: result.latency.p99,
      })
    },
  )
})
process.on('disconnect', () => process.exit(0))
