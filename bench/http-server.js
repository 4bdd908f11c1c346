'use strict'

// The HTTP workload's server, in its own process: a Fastify app on one port with an open
// route and one route per way of checking a token, as a user would write them. Started by
// bench/run.js with the Redis URL and the WeChat stand-in; it logs in `USERS` users, prints
// `{ port, tokens }` on stdout and answers `cpu` messages with its CPU time.

const diagnosticsChannel = require('node:diagnostics_channel')
const fastify = require('fastify')
const mpauthx = require('..')
const { loginData } = require('./login-data')

const [redisUrl, wechatApiBase, dbPath, users, subscribed] = process.argv.slice(2)

// The least a tracer does: a handler on every event of every channel mpauthx publishes on.
if (subscribed === 'subscribed') {
  const noop = () => {}
  const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop }
  for (const name of Object.values(mpauthx.channels.calls)) diagnosticsChannel.tracingChannel(name).subscribe(handlers)
  for (const name of [mpauthx.channels.wechat, mpauthx.channels.store, mpauthx.channels.cache]) diagnosticsChannel.subscribe(name, noop)
}

async function main() {
  const auth = mpauthx('wxbench000000000', 'bench-secret', 'bench', dbPath, null, 3600, { redisUrl, wechatApiBase })
  const tokens = []
  for (let i = 0; i < Number(users); i++) tokens.push((await auth.authorize(...loginData(`oHttp${i}`))).response)

  const app = fastify({ logger: false })
  const hello = { hello: 'world' }
  const bearer = (request) => request.headers.authorization.slice('Bearer '.length)
  app.get('/open', async () => hello)
  // No check at all: reads the header and awaits a settled promise, the floor of any check
  // written as `await something(token)` in an async handler.
  const settled = Promise.resolve()
  app.get('/wait', async (request) => {
    bearer(request)
    await settled
    return hello
  })
  app.get('/auth', async (request) => {
    await auth.isTokenValid(bearer(request))
    return hello
  })
  app.get('/info', async (request) => {
    await auth.verifyToken(bearer(request))
    return hello
  })
  // The Express/Connect middleware called from the handler, so that the route pays for the
  // check and not for a Fastify hook around it.
  const middleware = auth.middleware()
  app.get('/midw', (request, reply) => middleware(request.raw, reply.raw, () => reply.send(hello)))

  // The Fastify plugin, on this route only (its own encapsulated context).
  await app.register(async (plugged) => {
    await plugged.register(auth.fastifyPlugin())
    plugged.get('/plug', async () => hello)
  })

  await app.listen({ port: 0, host: '127.0.0.1' })
  process.stdout.write(JSON.stringify({ port: app.server.address().port, tokens }) + '\n')
  process.on('message', () => process.send(process.cpuUsage()))
  process.on('disconnect', async () => {
    await app.close()
    await auth.close()
    process.exit(0)
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
