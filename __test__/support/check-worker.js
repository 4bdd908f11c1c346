'use strict'

// A second backend process for the validation-cache tests: an instance on the Redis (or
// cluster, or SQLite file) it is told about, driven by messages from the test:
//   { warm: token }  → checks `token` until one check is answered from the validation cache
//   { watch: token } → checks `token` back to back until it is rejected
// and answering with what `watchToken` / `warmToken` report.

const mpauthx = require('../..')
const { warmToken, watchToken } = require('./checks')

process.once('message', ({ appId, appSecret, sku, dbFile, options }) => {
  const events = []
  const logger = (event) => events.length < 1000 && events.push(event)
  const auth = mpauthx(appId, appSecret, sku, dbFile, null, 3600, { ...options, logger })
  process.on('message', async ({ warm, watch }) => {
    try {
      if (warm) process.send(await warmToken(auth, events, warm))
      if (watch) process.send(await watchToken(auth, watch))
    } catch (err) {
      process.send({ error: err.message })
    }
  })
  process.on('disconnect', async () => {
    await auth.close()
    process.exit(0)
  })
  process.send({ ready: true })
})
