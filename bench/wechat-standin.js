'use strict'

// The benchmark's WeChat stand-in, in its own process so that its work is not the library's.
// Stateless: a login code is `<openId>.<session key as hex>`, and jscode2session answers
// with that openid and key, so codes can be made and reused by the benchmark at will.

const http = require('node:http')

const server = http.createServer((req, res) => {
  const query = new URL(req.url, 'http://localhost').searchParams
  const [openid, keyHex] = (query.get('js_code') ?? '').split('.')
  const body =
    openid && keyHex ? { openid, session_key: Buffer.from(keyHex, 'hex').toString('base64') } : { errcode: 40029, errmsg: 'invalid code' }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`))
// The benchmark asks for this process's CPU time to split each workload's cost by process.
process.on('message', () => process.send(process.cpuUsage()))
process.on('disconnect', () => process.exit(0))
