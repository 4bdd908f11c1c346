'use strict'

// An Egg 3 backend for a mini-program, in one process (Egg's single-process mode):
// `POST /login` trades wx.login()'s code for a token, every other route needs that token.
//
//   APP_ID=wx... APP_SECRET=... SKU=myapp node examples/egg/server.js
//
// In production, `egg-scripts start` (cluster mode) runs the same app directory. PORT
// defaults to 7001.

const http = require('node:http')
const egg = require('egg')

async function main() {
  const app = await egg.start({ baseDir: __dirname, ignoreWarning: true })
  const server = http.createServer(app.callback())
  server.listen(Number(process.env.PORT ?? 7001), '127.0.0.1', () => {
    app.emit('server', server)
    console.log(`listening on http://127.0.0.1:${server.address().port}`)
  })
  // app.close() runs app.js's beforeClose, which closes mpauthx; Egg's own plugins leave
  // timers behind in single-process mode, so the process ends itself once all is closed.
  process.once('SIGTERM', () => server.close(() => app.close().then(() => process.exit(0))))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
