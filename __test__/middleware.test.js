'use strict'

const assert = require('node:assert/strict')
const http = require('node:http')
const { after, before, describe, test } = require('node:test')

const express = require('express')
const Fastify = require('fastify')
const Koa = require('koa')

const { useHarness, rejection, SKU } = require('./support/harness')

const TTL = 3600 // the harness's tokenTTL

// One protected route per framework; the route answers with what the middleware attached,
// `{}` when nothing was (an optional middleware without a token), or the error it was given.
const frameworks = {
  http(instance, options) {
    const middleware = instance.middleware(options)
    return (req, res) =>
      middleware(req, res, (err) => {
        res.statusCode = err ? 500 : 200
        res.end(JSON.stringify(err ? { error: err.message } : (req.mpauthx ?? {})))
      })
  },
  express(instance, options) {
    const app = express()
    app.get('/me', instance.middleware(options), (req, res) => res.json(req.mpauthx ?? {}))
    app.use((err, req, res, _next) => res.status(500).json({ error: err.message }))
    return app
  },
  koa(instance, options) {
    const app = new Koa()
    app.use(async (ctx, next) => {
      try {
        await next()
      } catch (err) {
        ctx.status = 500
        ctx.body = { error: err.message }
      }
    })
    app.use(instance.koaMiddleware(options))
    app.use((ctx) => {
      ctx.body = ctx.state.mpauthx ?? {}
    })
    return app.callback()
  },
  async fastify(instance, options) {
    const app = Fastify()
    await app.register(instance.fastifyPlugin(options))
    app.get('/me', async (request) => request.mpauthx ?? {})
    app.setErrorHandler((err, request, reply) => reply.code(500).send({ error: err.message }))
    await app.ready()
    return (req, res) => app.routing(req, res)
  },
}

/** What a route sees for a live token: its parts and whole seconds left. */
function assertAuth(body, { token, openId, sku = SKU }) {
  const { expiresIn, ...rest } = body
  assert.deepEqual(rest, { token, openId, sku })
  assert.ok(Number.isInteger(expiresIn) && expiresIn > 0 && expiresIn <= TTL, `expiresIn ${expiresIn}`)
}

/** Serves `listener` (or the promise of one) on loopback; `get(headers, query)` requests the protected route. */
async function serve(listener) {
  const server = http.createServer(await listener)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${server.address().port}/me`
  return {
    async get(headers = {}, query = '') {
      const res = await fetch(url + query, { headers })
      return { status: res.status, headers: res.headers, body: await res.json() }
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  }
}

for (const [name, mount] of Object.entries(frameworks)) {
  describe(`middleware with ${name}`, () => {
    const h = useHarness()
    let auth
    let server
    let token
    before(async () => {
      auth = h.create()
      server = await serve(mount(auth))
      token = (await h.login({ openId: 'oMiddleware' }, auth)).response
    })
    after(() => server.close())

    test('a live Bearer token reaches the route with token, openId, sku and expiresIn', async () => {
      for (let i = 0; i < 2; i++) {
        // The first from the store, the second from the validation cache.
        const reply = await server.get({ authorization: `Bearer ${token}` })
        assert.equal(reply.status, 200)
        assertAuth(reply.body, { token, openId: 'oMiddleware' })
      }
    })

    test('the scheme is case-insensitive and x-access-token is the fallback', async () => {
      assert.equal((await server.get({ authorization: `bearer ${token}` })).status, 200)
      const reply = await server.get({ 'x-access-token': token })
      assert.equal(reply.status, 200)
      assert.equal(reply.body.openId, 'oMiddleware')
      const notBearer = await server.get({ authorization: 'Basic dXNlcjpwYXNz', 'x-access-token': token })
      assert.equal(notBearer.status, 200)
    })

    test('answers from the validation cache match the store: header spellings, a revoked token', async () => {
      const own = (await h.login({ openId: 'oMiddlewareCached' }, auth)).response
      for (let i = 0; i < 5; i++) {
        assert.equal((await server.get({ authorization: `Bearer ${own}` })).status, 200)
        assert.equal((await server.get({ authorization: `Bearer  ${own}\t` })).status, 200)
        assert.equal((await server.get({ authorization: `Bearer ${own}0` })).status, 401)
        assert.equal((await server.get({ authorization: `Bearer ${own} extra` })).status, 401)
      }
      await auth.revokeToken(own)
      assert.equal((await server.get({ authorization: `Bearer ${own}` })).status, 401)
    })

    test('a missing token answers 401 with status_code 6007 and never reaches the route', async () => {
      for (const headers of [{}, { authorization: 'Bearer' }, { authorization: `Token ${token}` }]) {
        const reply = await server.get(headers)
        assert.equal(reply.status, 401, JSON.stringify(headers))
        assert.equal(reply.body.status_code, 6007)
        assert.match(reply.body.status_message, /missing/)
        assert.deepEqual(Object.keys(reply.body).sort(), ['status_code', 'status_message'])
        assert.match(reply.headers.get('www-authenticate'), /^Bearer/)
        assert.match(reply.headers.get('content-type'), /^application\/json/)
      }
    })

    test('a dead, replaced or forged token answers 401 with 6007', async () => {
      const { response: old } = await h.login({ openId: 'oReplaced' }, auth)
      await auth.refreshToken('oReplaced')
      for (const dead of [old, `oMiddleware|${SKU}|${'0'.repeat(64)}`, 'not-a-token']) {
        const reply = await server.get({ authorization: `Bearer ${dead}` })
        assert.equal(reply.status, 401, dead)
        assert.equal(reply.body.status_code, 6007)
      }
    })

    test('a token of another sku answers 401 unless the route takes any sku', async () => {
      const other = h.create({ sku: 'othersku' })
      const { response: otherToken } = await h.login({ openId: 'oOtherSku' }, other)
      const reply = await server.get({ authorization: `Bearer ${otherToken}` })
      assert.equal(reply.status, 401)
      assert.equal(reply.body.status_code, 6007)

      const anySku = await serve(mount(auth, { anySku: true }))
      try {
        const accepted = await anySku.get({ authorization: `Bearer ${otherToken}` })
        assert.equal(accepted.status, 200)
        assertAuth(accepted.body, { token: otherToken, openId: 'oOtherSku', sku: 'othersku' })
      } finally {
        await anySku.close()
      }
    })

    test('optional: no token reaches the route without mpauthx; a bad token still answers 401', async () => {
      const optional = await serve(mount(auth, { optional: true }))
      try {
        const none = await optional.get()
        assert.equal(none.status, 200)
        assert.deepEqual(none.body, {})
        assertAuth((await optional.get({ authorization: `Bearer ${token}` })).body, { token, openId: 'oMiddleware' })
        const bad = await optional.get({ authorization: `Bearer oMiddleware|${SKU}|${'0'.repeat(64)}` })
        assert.equal(bad.status, 401)
        assert.equal(bad.body.status_code, 6007)
      } finally {
        await optional.close()
      }
    })

    test('tokenFrom: a cookie, a query parameter or another header; Bearer first unless told otherwise', async () => {
      const fromCookie = await serve(mount(auth, { tokenFrom: { cookie: 'mp_token' } }))
      const fromQuery = await serve(mount(auth, { tokenFrom: { bearer: false, query: 'token', header: 'x-token' } }))
      try {
        const cookie = { cookie: `theme=dark; mp_token=${encodeURIComponent(token)}; lang=zh` }
        assertAuth((await fromCookie.get(cookie)).body, { token, openId: 'oMiddleware' })
        assert.equal((await fromCookie.get({ authorization: `Bearer ${token}`, cookie: 'mp_token=x' })).status, 200)
        // Only the sources named: x-access-token is no longer read.
        const unread = await fromCookie.get({ 'x-access-token': token })
        assert.equal(unread.status, 401)
        assert.match(unread.body.status_message, /missing/)

        assertAuth((await fromQuery.get({}, `?token=${encodeURIComponent(token)}`)).body, { token, openId: 'oMiddleware' })
        assertAuth((await fromQuery.get({ 'x-token': token })).body, { token, openId: 'oMiddleware' })
        // The query is named first, so it wins over the header; Bearer is not read at all.
        assert.equal((await fromQuery.get({ 'x-token': token }, '?token=nope')).status, 401)
        assert.equal((await fromQuery.get({ authorization: `Bearer ${token}` })).status, 401)
      } finally {
        await fromCookie.close()
        await fromQuery.close()
      }
    })

    test('failureBody shapes the 401 and 503 bodies; status and headers stay', async () => {
      const seen = []
      const failureBody = (err) => {
        seen.push(err.code)
        return { code: err.code === 6007 ? 40100 : 50300, msg: 'please log in again', data: null }
      }
      const shaped = await serve(mount(auth, { failureBody }))
      const closed = h.create()
      await closed.close()
      const down = await serve(mount(closed, { failureBody }))
      try {
        const reply = await shaped.get({ authorization: 'Bearer nope' })
        assert.equal(reply.status, 401)
        assert.deepEqual(reply.body, { code: 40100, msg: 'please log in again', data: null })
        assert.match(reply.headers.get('www-authenticate'), /^Bearer/)
        assert.match(reply.headers.get('content-type'), /^application\/json/)
        const unavailable = await down.get({ authorization: `Bearer ${token}` })
        assert.equal(unavailable.status, 503)
        assert.equal(unavailable.body.code, 50300)
        assert.equal(unavailable.headers.get('retry-after'), '1')
        assert.deepEqual(seen, [6007, 6000])
      } finally {
        await shaped.close()
        await down.close()
      }
    })

    test('a store that cannot answer gives 503 with status_code 6000', async () => {
      const closed = h.create()
      await closed.close()
      const down = await serve(mount(closed))
      try {
        const reply = await down.get({ authorization: `Bearer ${token}` })
        assert.equal(reply.status, 503)
        assert.equal(reply.body.status_code, 6000)
        assert.equal(typeof reply.body.status_message, 'string')
      } finally {
        await down.close()
      }
    })
  })
}

describe('middleware while Redis is down', () => {
  const h = useHarness()

  test('answers 503 with 6000, then lets the same token through once Redis is back', async () => {
    const auth = h.create()
    const server = await serve(frameworks.express(auth))
    try {
      const { response: token } = await h.login({ openId: 'oOutage' }, auth)
      await h.redis.stop()
      const reply = await server.get({ authorization: `Bearer ${token}` })
      assert.equal(reply.status, 503)
      assert.equal(reply.body.status_code, 6000)
      assert.equal(reply.headers.get('retry-after'), '1')
      await h.redis.start()
      // The restarted Redis kept nothing, so a new login is needed and then works.
      const { response: fresh } = await h.login({ openId: 'oOutage' }, auth)
      assert.equal((await server.get({ authorization: `Bearer ${fresh}` })).status, 200)
    } finally {
      await server.close()
    }
  })
})

describe('middleware options', () => {
  const h = useHarness()

  test('are checked when the middleware is made', () => {
    const auth = h.create()
    assert.throws(() => auth.middleware({ anySku: 'yes' }), { name: 'TypeError', message: /anySku must be a boolean/ })
    assert.throws(() => auth.koaMiddleware({ anysku: true }), { name: 'TypeError', message: /unknown key 'anysku'/ })
    assert.throws(() => auth.middleware(5), TypeError)
    assert.throws(() => auth.middleware({ tokenFrom: { cookie: 5 } }), { name: 'TypeError', message: /tokenFrom\.cookie must be a string/ })
    assert.throws(() => auth.middleware({ tokenFrom: { body: 'token' } }), { name: 'TypeError', message: /unknown key 'body'/ })
    assert.throws(() => auth.middleware({ tokenFrom: { bearer: false } }), { name: 'TypeError', message: /names no source/ })
    assert.throws(() => auth.middleware({ failureBody: {} }), { name: 'TypeError', message: /failureBody must be a function/ })
    assert.throws(() => auth.fastifyPlugin({ optional: 1 }), { name: 'TypeError', message: /optional must be a boolean/ })
    assert.equal(typeof auth.middleware(), 'function')
    assert.equal(auth.middleware().length, 3)
    assert.equal(auth.koaMiddleware().length, 2)
  })
})

describe('koaMiddleware in Egg and Midway', () => {
  const h = useHarness()

  test('accepts the keys Egg and Midway pass to every middleware factory: enable and core are theirs, match and ignore act', async () => {
    const auth = h.create()
    // What Egg passes for `config.mpauthx = { ignore: '/login' }` with the app's defaults.
    const middleware = auth.koaMiddleware({ ignore: '/login', match: undefined, enable: true, core: false })
    assert.equal(typeof middleware, 'function')
    assert.throws(() => auth.middleware({ enable: true }), { name: 'TypeError', message: /unknown key 'enable'/ })
    assert.throws(() => auth.koaMiddleware({ ignroe: '/login' }), { name: 'TypeError', message: /unknown key 'ignroe'/ })
    // ignore now acts outside Egg too (see public-routes.test.js): /me is no longer checked.
    const server = await serve(frameworks.koa(auth, { ignore: '/me', enable: false }))
    try {
      const reply = await server.get()
      assert.equal(reply.status, 200)
      assert.deepEqual(reply.body, {})
    } finally {
      await server.close()
    }
  })
})

describe('fastifyPlugin', () => {
  const h = useHarness()
  let auth
  let token
  before(async () => {
    auth = h.create()
    token = (await h.login({ openId: 'oFastify' }, auth)).response
  })

  test('covers routes added before and after registering it, and those of child plugins', async () => {
    const app = Fastify()
    app.get('/before', async (request) => request.mpauthx)
    await app.register(auth.fastifyPlugin())
    app.get('/after', async (request) => request.mpauthx)
    await app.register(async (child) => child.get('/child', async (request) => request.mpauthx), { prefix: '/v1' })
    for (const url of ['/before', '/after', '/v1/child']) {
      const denied = await app.inject({ url })
      assert.equal(denied.statusCode, 401, url)
      assert.deepEqual(denied.json(), { status_code: 6007, status_message: 'token is missing, invalid or expired' })
      assert.match(denied.headers['www-authenticate'], /^Bearer realm="mpauthx"/)
      assert.match(denied.headers['content-type'], /^application\/json/)
      const allowed = await app.inject({ url, headers: { authorization: `Bearer ${token}` } })
      assert.equal(allowed.statusCode, 200, url)
      assertAuth(allowed.json(), { token, openId: 'oFastify' })
    }
    await app.close()
  })

  test('registered in an encapsulated context, it protects that context only', async () => {
    const app = Fastify()
    app.get('/public', async () => ({ open: true }))
    await app.register(async (api) => {
      await api.register(auth.fastifyPlugin())
      api.get('/private', async (request) => request.mpauthx)
    })
    await app.register(async (api) => {
      await api.register(auth.fastifyPlugin({ optional: true }))
      api.get('/maybe', async (request) => ({ auth: request.mpauthx }))
    })
    assert.deepEqual((await app.inject({ url: '/public' })).json(), { open: true })
    assert.equal((await app.inject({ url: '/private' })).statusCode, 401)
    // Two registrations declare the request decorator once; without a token it stays null.
    assert.deepEqual((await app.inject({ url: '/maybe' })).json(), { auth: null })
    const mine = await app.inject({ url: '/maybe', headers: { authorization: `Bearer ${token}` } })
    assertAuth(mine.json().auth, { token, openId: 'oFastify' })
    await app.close()
  })

  test('a store failure answers 503 through the reply; other failures go to the error handler', async () => {
    const closed = h.create()
    await closed.close()
    const app = Fastify()
    await app.register(closed.fastifyPlugin())
    app.get('/me', async (request) => request.mpauthx)
    const reply = await app.inject({ url: '/me', headers: { authorization: `Bearer ${token}` } })
    assert.equal(reply.statusCode, 503)
    assert.equal(reply.headers['retry-after'], '1')
    assert.equal(reply.json().status_code, 6000)
    assert.equal(reply.json().status_message, 'authentication is temporarily unavailable, try again')
    await app.close()

    const throwing = Fastify()
    await throwing.register(
      auth.fastifyPlugin({
        failureBody: () => {
          throw new Error('shaping failed')
        },
      }),
    )
    throwing.get('/me', async () => ({}))
    throwing.setErrorHandler((err, request, reply) => reply.code(500).send({ handled: err.message }))
    const failed = await throwing.inject({ url: '/me' })
    assert.equal(failed.statusCode, 500)
    assert.deepEqual(failed.json(), { handled: 'shaping failed' })
    await throwing.close()
  })
})

describe('authenticate', () => {
  const h = useHarness()
  let auth
  let token
  let otherToken
  before(async () => {
    auth = h.create()
    token = (await h.login({ openId: 'oAuthenticate' }, auth)).response
    otherToken = (await h.login({ openId: 'oAuthenticateOther' }, h.create({ sku: 'othersku' }))).response
  })

  test('takes a request or a headers object and resolves with token, openId, sku and expiresIn', async () => {
    const bearer = { authorization: `Bearer ${token}` }
    for (const request of [
      { headers: bearer },
      bearer,
      { 'x-access-token': token },
      new Headers(bearer),
      { headers: new Headers({ 'x-access-token': token }) },
    ]) {
      assertAuth(await auth.authenticate(request), { token, openId: 'oAuthenticate' })
    }
  })

  test('admits only this sku unless anySku; optional resolves null without a token', async () => {
    const other = await rejection(auth.authenticate({ authorization: `Bearer ${otherToken}` }))
    assert.equal(other.code, 6007)
    assert.equal(other.name, 'MpauthxError')
    assertAuth(await auth.authenticate({ authorization: `Bearer ${otherToken}` }, { anySku: true }), {
      token: otherToken,
      openId: 'oAuthenticateOther',
      sku: 'othersku',
    })
    assert.equal(await auth.authenticate({}, { optional: true }), null)
    assert.equal((await rejection(auth.authenticate({}))).code, 6007)
    assert.equal((await rejection(auth.authenticate({ authorization: 'Bearer nope' }, { optional: true }))).code, 6007)
  })

  test('reads the sources of tokenFrom, from the URL when the framework parsed no query', async () => {
    const options = { tokenFrom: { query: 'access_token' } }
    const request = { headers: {}, url: `/ws?access_token=${encodeURIComponent(token)}` }
    assertAuth(await auth.authenticate(request, options), { token, openId: 'oAuthenticate' })
    assertAuth(await auth.authenticate({ headers: {}, query: { access_token: token } }, options), { token, openId: 'oAuthenticate' })
  })

  test('a store that cannot answer rejects 6000; bad arguments reject with a TypeError', async () => {
    const closed = h.create()
    await closed.close()
    assert.equal((await rejection(closed.authenticate({ authorization: `Bearer ${token}` }))).code, 6000)
    for (const request of [undefined, null, 'Bearer x', 5]) {
      assert.equal((await rejection(auth.authenticate(request))).name, 'TypeError', String(request))
    }
    // The integrations' options are accepted, so one options object can serve both.
    const shared = { anySku: false, failureBody: () => ({ code: 401 }) }
    assertAuth(await auth.authenticate({ authorization: `Bearer ${token}` }, shared), { token, openId: 'oAuthenticate' })
    const unknown = await rejection(auth.authenticate({}, { ownSku: true }))
    assert.match(unknown.message, /unknown key 'ownSku'/)
  })
})

describe('isTokenValid with ownSku', () => {
  const h = useHarness()

  test("rejects 6007 for another sku's token; without the option it stays 1.3.2's check", async () => {
    const auth = h.create()
    const own = (await h.login({ openId: 'oOwnSku' }, auth)).response
    const other = (await h.login({ openId: 'oOwnSkuOther' }, h.create({ sku: 'admin-app' }))).response
    for (let i = 0; i < 2; i++) {
      // Once from the store, once from the validation cache.
      assert.equal(await auth.isTokenValid(other), undefined)
      const refused = await rejection(auth.isTokenValid(other, { ownSku: true }))
      assert.equal(refused.code, 6007)
      assert.match(refused.message, /not for this sku/)
      assert.equal(await auth.isTokenValid(own, { ownSku: true }), undefined)
      assert.equal(await auth.isTokenValid(own, { ownSku: false }), undefined)
    }
    assert.equal((await rejection(auth.isTokenValid(`oOwnSku|${SKU}|${'0'.repeat(64)}`, { ownSku: true }))).code, 6007)
    assert.equal((await rejection(auth.isTokenValid('', { ownSku: true }))).code, 6001)
    assert.equal((await rejection(auth.isTokenValid(own, { ownsku: true }))).name, 'TypeError')
  })
})
