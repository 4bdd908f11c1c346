'use strict'

// examples/egg: the Egg 3 app run as its README says (Egg's single-process mode), against this
// suite's Redis and WeChat stand-in.

const assert = require('node:assert/strict')
const path = require('node:path')
const { describe, test } = require('node:test')

const { useHarness } = require('./support/harness')
const { useExample } = require('./support/example-server')

const SKU = 'eggsku'

describe('examples/egg', () => {
  const h = useHarness()
  const server = useExample(h, path.join(__dirname, '..', 'examples', 'egg', 'server.js'), { SKU })

  const login = (body) => server.post('/login', body)
  const me = (headers) => server.get('/me', headers)

  test('/login is open (config.mpauthx.ignore) and /me answers from ctx.state.mpauthx', async () => {
    const answer = await login({ code: h.wechat.login({ openId: 'oEgg' }).code })
    assert.equal(answer.status, 200)
    const { token } = await answer.json()
    assert.match(token, /^oEgg\|eggsku\|[0-9a-f]{64}$/)
    const bearer = await me({ authorization: `Bearer ${token}` })
    assert.equal(bearer.status, 200)
    assert.deepEqual(await bearer.json(), { openId: 'oEgg', sku: SKU })
    const header = await me({ 'x-access-token': token })
    assert.equal(header.status, 200)
  })

  test("config.mpauthx.ignore: '/login' opens /login and the paths under it, and nothing beside them", async () => {
    // Egg runs the middleware where its config says and passes it the same options, which it
    // applies again on the same ctx.path: what Egg lets through is checked, the rest is not.
    for (const route of ['/login/help', '/LOGIN/x', '/login?next=/me']) {
      const reply = await server.get(route)
      assert.equal(reply.status, 404, `${route} reaches Egg's router unchecked`)
    }
    for (const route of ['/loginx', '/me/login', '/%6Cogin', '/me?then=/login']) {
      const reply = await server.get(route)
      assert.equal(reply.status, 401, route)
      assert.equal((await reply.json()).status_code, 6007)
    }
    const { response: token } = await h.login({ openId: 'oEggPublic' }, h.create({ sku: SKU }))
    const guarded = await me({ authorization: `Bearer ${token}` })
    assert.deepEqual(await guarded.json(), { openId: 'oEggPublic', sku: SKU })
  })

  test('the middleware answers 401 for a missing, unknown or other-sku token', async () => {
    const { response: otherToken } = await h.login({ openId: 'oEgg' }, h.create({ sku: 'othersku' }))
    for (const headers of [{}, { authorization: `Bearer oEgg|eggsku|${'0'.repeat(64)}` }, { 'x-access-token': otherToken }]) {
      const reply = await me(headers)
      assert.equal(reply.status, 401, JSON.stringify(headers))
      assert.equal(reply.headers.get('www-authenticate'), 'Bearer realm="mpauthx"')
      assert.deepEqual(await reply.json(), {
        status_code: 6007,
        status_message: 'token is missing, invalid or expired',
      })
    }
  })

  test('login failures answer with their status codes and err.status', async () => {
    const missing = await login({})
    assert.equal(missing.status, 400)
    assert.equal((await missing.json()).status_code, 6001)
    const refused = await login({ code: 'never-issued' })
    assert.equal(refused.status, 502)
    assert.equal((await refused.json()).status_code, 6008)
  })

  test('stops cleanly on SIGTERM (app.js closes mpauthx)', async () => {
    assert.deepEqual(await server.stop(), { code: 0, signal: null }, server.output())
  })
})
