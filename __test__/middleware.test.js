'use strict'

const assert = require('node:assert/strict')
const http = require('node:http')
const { after, before, describe, test } = require('node:test')

const express = require('express')
const Koa = require('koa')

const { useHarness, SKU } = require('./support/harness')

// One protected route per framework; the route answers with what the middleware attached.
const frameworks = {
  http(instance, options) {
    const middleware = instance.middleware(options)
    return (req, res) =>
      middleware(req, res, (err) => {
        res.statusCode = err ? 500 : 200
        res.end(JSON.stringify(err ? { error: err.message } : req.mpauthx))
      })
  },
  express(instance, options) {
    const app = express()
    app.get('/me', instance.middleware(options), (req, res) => res.json(req.mpauthx))
    return app
  },
  koa(instance, options) {
    const app = new Koa()
    app.use(instance.koaMiddleware(options))
    app.use((ctx) => {
      ctx.body = ctx.state.mpauthx
    })
    return app.callback()
  },
}

/** Serves `listener` on loopback; `get(headers)` requests the protected route. */
async function serve(listener) {
  const server = http.createServer(listener)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${server.address().port}/me`
  return {
    async get(headers = {}) {
      const res = await fetch(url, { headers })
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

    test('a live Bearer token reaches the route with token, openId and sku', async () => {
      const reply = await server.get({ authorization: `Bearer ${token}` })
      assert.equal(reply.status, 200)
      assert.deepEqual(reply.body, { token, openId: 'oMiddleware', sku: SKU })
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

    test("a token of another sku answers 401 unless the route takes any sku", async () => {
      const other = h.create({ sku: 'othersku' })
      const { response: otherToken } = await h.login({ openId: 'oOtherSku' }, other)
      const reply = await server.get({ authorization: `Bearer ${otherToken}` })
      assert.equal(reply.status, 401)
      assert.equal(reply.body.status_code, 6007)

      const anySku = await serve(mount(auth, { anySku: true }))
      try {
        const accepted = await anySku.get({ authorization: `Bearer ${otherToken}` })
        assert.equal(accepted.status, 200)
        assert.deepEqual(accepted.body, { token: otherToken, openId: 'oOtherSku', sku: 'othersku' })
      } finally {
        await anySku.close()
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
    assert.equal(typeof auth.middleware(), 'function')
    assert.equal(auth.middleware().length, 3)
    assert.equal(auth.koaMiddleware().length, 2)
  })
})
