// A TypeScript backend written against the typings, compiled with `tsc --strict --noEmit`.
// `@ts-expect-error` lines fail the compile when the typings become too loose.

import mpauthx = require('../..')
import defaultImport from '../..'
import express = require('express')
import Fastify = require('fastify')
import Koa = require('koa')
import http = require('node:http')
import diagnosticsChannel = require('node:diagnostics_channel')

const auth: mpauthx.Mpauthx = mpauthx('wx0123456789abcdef', 'secret', 'myapp', 'users.db')
const withEverything = defaultImport('wx0123456789abcdef', 'secret', 'myapp', { filename: 'users.db' }, null, 3600, {
  redisUrl: 'redis://127.0.0.1:6379',
  wechatApiBase: 'https://api.weixin.qq.com',
  httpTimeoutMs: 5000,
  slidingTtl: true,
  logger: (event: mpauthx.DiagnosticEvent) => {
    const line: string = `${event.method} ${event.step} +${event.elapsedMs.toFixed(1)}ms ${event.detail}`
    const status: mpauthx.StatusCode | undefined = event.statusCode
    ;(void line, status)
  },
})
mpauthx.default('a', 'b', 'c', { name: 'users.db' })
const overTls: mpauthx.Options = {
  redisUrl: 'rediss://default:password@localhost:6380',
  redisTls: { ca: Buffer.from('-----BEGIN CERTIFICATE-----'), cert: 'PEM', key: 'PEM', rejectUnauthorized: true },
}
void overTls
const withSentinel: mpauthx.Options = {
  redisSentinel: { nodes: ['redis://10.0.0.1:26379'], masterName: 'mymaster', sentinelPassword: 'x' },
}
void withSentinel

// @ts-expect-error a misspelt option
mpauthx('a', 'b', 'c', 'users.db', null, 60, { redisURL: 'redis://x' })
// @ts-expect-error the database is a path or a Database object
mpauthx('a', 'b', 'c', 42)

// Literal types: a switch over codes and constants that cannot be reassigned.
const invalid: 6007 = mpauthx.constants.statusCode.invalidAccessToken
const success: 1 = auth.constants.statusCode.success
// @ts-expect-error constants are read-only
mpauthx.constants.statusCode.success = 2
;(void invalid, success)

async function login(code: string, encryptedData: string, iv: string): Promise<string> {
  try {
    const reply: mpauthx.Success<string> = await auth.authorize(code, encryptedData, iv)
    const status: 1 = reply.status_code
    const message: 'OK' = reply.status_message
    ;(void status, message)
    const refreshed = await auth.refreshToken(auth.extractOpenId(reply.response))
    await auth.isTokenValid(refreshed.response)
    const sku: string | null = auth.extractSku(refreshed.response)
    const info: mpauthx.TokenInfo = (await auth.verifyToken(refreshed.response)).response
    const expiresIn: number | null = info.expiresIn
    const revoked: boolean = (await auth.revokeToken(refreshed.response)).response
    const loggedOut: number = (await auth.revokeUser(auth.extractOpenId(refreshed.response))).response
    const everywhere: mpauthx.RevokeUserOptions = { allSkus: true }
    ;(void loggedOut, (await auth.revokeUser('oUser', everywhere)).response)
    // @ts-expect-error allSkus is a boolean
    void auth.revokeUser('oUser', { allSkus: 'yes' })
    const codeOnly: string = (await auth.login(code)).response
    const data: Record<string, unknown> = (await auth.decryptData(refreshed.response, encryptedData, iv)).response
    const signed: boolean = (await auth.checkSignature(refreshed.response, '{}', 'ab')).response
    const access: mpauthx.AccessToken = (await auth.getAccessToken()).response
    const phone: mpauthx.PhoneNumber = (await auth.getPhoneNumber(code)).response
    ;(void expiresIn, revoked, codeOnly, data, signed, access.accessToken, phone.purePhoneNumber)
    return `${sku}`
  } catch (err) {
    if (err instanceof mpauthx.MpauthxError) {
      const code: mpauthx.ErrorCode = err.code
      // What Express, Koa and Fastify answer, and what a log may keep.
      const status: mpauthx.HttpStatus = err.status
      const expose: boolean = err.expose
      const detail: string = err.detail
      ;(void status, expose, detail)
      // @ts-expect-error the status is one of the HTTP statuses of the codes
      const teapot: 418 = err.status
      void teapot
      switch (code) {
        case mpauthx.constants.statusCode.databaseRelatedError:
          return 'retry later'
        case 6007:
          return 'log in again'
        // @ts-expect-error 1 is never a rejection's code
        case 1:
          return 'impossible'
        default:
          return err.message
      }
    }
    throw err
  }
}

// @ts-expect-error authorize takes strings
auth.authorize(1, 2, 3)

// Express: the middleware fits app.use and route handlers, and `req.mpauthx` is typed.
const app = express()
app.use('/api', auth.middleware())
app.get('/me', auth.middleware({ anySku: true }), (req, res) => {
  const openId: string | undefined = req.mpauthx?.openId
  res.json({ openId })
})
app.post('/login', express.json(), async (req, res) => {
  res.json({ token: await login(req.body.code, req.body.encryptedData, req.body.iv) })
})
// @ts-expect-error a misspelt middleware option
auth.middleware({ anysku: true })
// Every option of the integrations: an optional check, other token sources, a shaped body.
app.get(
  '/feed',
  auth.middleware({
    optional: true,
    tokenFrom: { cookie: 'mp_token', query: 'token', header: 'x-token', bearer: true },
    failureBody: (err: mpauthx.MpauthxError) => ({ code: err.code, msg: 'please log in', data: null }),
  }),
  (req, res) => {
    const seconds: number | null | undefined = req.mpauthx?.expiresIn
    res.json({ seconds })
  },
)
// @ts-expect-error tokenFrom names sources by string
auth.middleware({ tokenFrom: { cookie: 1 } })
// Public routes: Egg's path patterns, a function of the request, or an array of these.
app.use(auth.middleware({ ignore: '/login' }))
app.use(auth.middleware({ match: ['/api', /^\/v\d\//, (req) => req.method === 'POST'] }))
const publicPaths: mpauthx.PathPattern = ['/login', ['/health', /^\/public\//]]
auth.middleware({ ignore: publicPaths })
// @ts-expect-error a pattern is a string, a RegExp, a function or an array of these
auth.middleware({ ignore: 5 })
// @ts-expect-error Egg's enable and core belong to koaMiddleware only
auth.middleware({ enable: true })

// authenticate: the building block of guards (NestJS, Midway, Fastify hooks, plain http).
async function guard(req: http.IncomingMessage): Promise<string> {
  const who: mpauthx.RequestAuth | null = await auth.authenticate(req)
  const fromHeaders = await auth.authenticate({ authorization: 'Bearer x' }, { anySku: true })
  const fromFetch = await auth.authenticate(new Headers(), { optional: true, tokenFrom: { header: 'x-token' } })
  // @ts-expect-error a misspelt option
  void auth.authenticate(req, { anysku: true })
  await auth.isTokenValid('token', { ownSku: true })
  // @ts-expect-error ownSku is a boolean
  void auth.isTokenValid('token', { ownSku: 'yes' })
  return `${who?.openId}${fromHeaders?.sku}${fromFetch?.expiresIn}`
}
void guard

// Fastify: register the plugin; FastifyRequest.mpauthx is typed.
async function fastifyApp(): Promise<void> {
  const app = Fastify()
  await app.register(auth.fastifyPlugin())
  await app.register(auth.fastifyPlugin({ optional: true, failureBody: () => ({ code: 401 }) }))
  app.get('/me', async (request) => {
    const who: mpauthx.RequestAuth | null = request.mpauthx
    return { openId: who?.openId ?? null }
  })
  // Public and optional routes in the route's config; a guard per route.
  app.post('/login', { config: { mpauthx: false } }, async () => ({ token: 'x' }))
  app.get('/feed', { config: { mpauthx: { optional: true } } }, async (request) => ({ who: request.mpauthx?.openId }))
  app.get('/guarded', { onRequest: [app.mpauthxGuard] }, async (request) => ({ who: request.mpauthx?.openId }))
  app.get('/guarded-too', { onRequest: app.mpauthxGuard, preHandler: app.mpauthxGuard }, async () => ({}))
  const publicRoute: Fastify.FastifyContextConfig = { mpauthx: false }
  // @ts-expect-error config.mpauthx is false or { optional }
  const badRoute: Fastify.FastifyContextConfig = { mpauthx: true }
  ;(void publicRoute, badRoute)
  await app.register(auth.fastifyPlugin({ match: [], ignore: undefined }))
}
void fastifyApp

// Koa: the middleware fits app.use, and Koa<mpauthx.KoaState> types ctx.state.mpauthx.
const koa = new Koa<mpauthx.KoaState>()
koa.use(auth.koaMiddleware())
// Egg and Midway pass their own keys to every middleware factory.
koa.use(auth.koaMiddleware({ ignore: '/login', match: undefined, enable: true, core: false }))
koa.use(auth.koaMiddleware({ match: ['/api', (ctx) => ctx.path.startsWith('/v2/')] }))
koa.use((ctx) => {
  const auth: mpauthx.RequestAuth = ctx.state.mpauthx
  ctx.body = { openId: auth.openId, sku: auth.sku, token: auth.token }
})

// A plain Node server: the Connect-style handler takes Node's request and response.
const protect = auth.middleware()
http.createServer((req, res) => protect(req, res, () => res.end('ok')))

async function shutdown(): Promise<void> {
  await Promise.all([auth.close(), withEverything.close()])
}
void shutdown

// Users in the application's own database: a pg-like pool, and a store written by hand.
declare const pgPool: { query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> }
const inPostgres = mpauthx('a', 'b', 'c', null, null, 60, {
  userStore: mpauthx.userStores.postgres(pgPool, { table: 'members', idColumn: 'uid', profileColumns: ['nickName'] }),
  userStoreTimeoutMs: 2000,
})
const handWritten: mpauthx.UserStore = {
  hasUser: async (userId) => userId.length > 0,
  addUser: async (_userId, profile: mpauthx.UserProfile) => profile.nickName !== undefined,
}
mpauthx('a', 'b', 'c', null, null, 60, { userStore: handWritten })
// @ts-expect-error addUser must resolve with a boolean
mpauthx('a', 'b', 'c', null, null, 60, { userStore: { hasUser: async () => true, addUser: async () => 1 } })
void inPostgres

// Operating it: a metrics collector, a readiness probe and a diagnostics_channel subscriber.
const stats: mpauthx.Stats = auth.stats()
const loginFailures: number = Object.values(stats.calls.login.failures).reduce((sum, n) => sum + n, 0)
const p99Bucket: number | undefined = stats.wechat.latencyMs.le.find(
  (_, i) => stats.wechat.latencyMs.counts[i] >= 0.99 * stats.wechat.latencyMs.count,
)
const cacheOn: boolean = stats.validationCache.on
const redisUp: boolean = auth.health().connections.redis?.state === 'up'
void [loginFailures, p99Bucket, cacheOn, redisUp]
diagnosticsChannel.tracingChannel<object, mpauthx.CallContext>(mpauthx.channels.calls.authorize).subscribe({
  start: (context) => void context.sku,
  end: () => {},
  asyncStart: () => {},
  asyncEnd: (context) => void (context.code === 1),
  error: (context) => void context.error?.status,
})
diagnosticsChannel.subscribe(mpauthx.channels.wechat, (message) => {
  const event = message as mpauthx.WechatEvent | mpauthx.ConnectionChange
  if ('endpoint' in event) void [event.durationMs, event.errcode]
})
const readyChannel: 'mpauthx:ready' = mpauthx.channels.calls.ready
// @ts-expect-error not a traced method
void mpauthx.channels.calls.extractSku
void readyChannel
