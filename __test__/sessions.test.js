'use strict'

// The session rules, run against every token store: Redis (the default), the SQLite file and
// a Redis Cluster. Everything here is observed through the API, as an application would, and
// through what the store holds.

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')

const { useCluster, useHarness, rejection, sql, SKU } = require('./support/harness')
const { waitUntil } = require('./support/redis')

for (const [store, tokenStore] of [
  ['Redis', 'redis'],
  ['SQLite', 'sqlite'],
  ['a Redis Cluster', 'redis'],
]) {
  describe(`sessions in ${store}`, () => {
    const h = store === 'a Redis Cluster' ? useCluster() : useHarness()
    const create = (settings = {}) => h.create({ ...settings, options: { tokenStore, ...settings.options } })
    /** The live tokens the store holds for `openId`. */
    const storedTokens = (openId) =>
      tokenStore === 'sqlite'
        ? sql(h.dbFile, `SELECT token FROM mpauthx_session WHERE user_id = '${openId}' AND expires_at_us > ${Date.now() * 1000}`)
            .split('\n')
            .filter(Boolean)
        : h.tokensOf(openId)
    const login = (user, instance) => h.login(user, instance).then((reply) => reply.response)
    const outcome = (promise) =>
      promise.then(
        () => 1,
        (err) => err.code,
      )

    test('a login issues a token that validates, and the next login reuses it', async () => {
      const auth = create()
      const token = await login({ openId: 'oRules' }, auth)
      assert.match(token, new RegExp(`^oRules\\|${SKU}\\|[0-9a-f]{64}$`))
      await auth.isTokenValid(token)
      assert.equal(await login({ openId: 'oRules' }, auth), token)
      assert.equal((await auth.login(h.wechat.login({ openId: 'oRules' }).code)).response, token)
      assert.equal((await rejection(auth.isTokenValid(`oRules|${SKU}|${'0'.repeat(64)}`))).code, 6007)
    })

    test('refreshToken replaces the token; the old one stops validating', async () => {
      const auth = create()
      const token = await login({ openId: 'oRefresh' }, auth)
      const { response: first } = await auth.refreshToken('oRefresh')
      const { response: second } = await auth.refreshToken('oRefresh')
      assert.equal(new Set([token, first, second]).size, 3)
      assert.deepEqual(await Promise.all([token, first, second].map((t) => outcome(auth.isTokenValid(t)))), [6007, 6007, 1])
      assert.equal((await rejection(auth.refreshToken('oNobodyHere'))).code, 6010)
    })

    test('revokeToken logs out; the next login issues a fresh token', async () => {
      const auth = create()
      const token = await login({ openId: 'oRevoke' }, auth)
      assert.deepEqual(await auth.revokeToken(token), { status_code: 1, status_message: 'OK', response: true })
      assert.deepEqual(storedTokens('oRevoke'), [])
      assert.equal((await auth.revokeToken(token)).response, false)
      assert.equal((await rejection(auth.isTokenValid(token))).code, 6007)
      assert.equal((await rejection(auth.verifyToken(token))).code, 6007)
      const fresh = await login({ openId: 'oRevoke' }, auth)
      assert.notEqual(fresh, token)
      await auth.isTokenValid(fresh)
    })

    test('verifyToken tells the user, sku, issue time and seconds left', async () => {
      const auth = create({ ttl: 120 })
      const before = Date.now()
      const token = await login({ openId: 'oVerify' }, auth)
      const { status_code, status_message, response } = await auth.verifyToken(token)
      assert.equal(status_code, 1)
      assert.equal(status_message, 'OK')
      assert.equal(response.openId, 'oVerify')
      assert.equal(response.sku, SKU)
      assert.ok(response.ctime >= before - 1000 && response.ctime <= Date.now(), String(response.ctime))
      assert.ok(response.expiresIn > 110 && response.expiresIn <= 120, String(response.expiresIn))
    })

    test('a token expires after tokenTTL seconds, and the next login issues a new one', async () => {
      const auth = create({ ttl: 1 })
      const token = await login({ openId: 'oExpiry' }, auth)
      assert.ok((await auth.verifyToken(token)).response.expiresIn <= 1)
      await waitUntil(() => outcome(auth.isTokenValid(token)).then((code) => code === 6007), 'the token to expire')
      assert.equal((await auth.revokeToken(token)).response, false)
      const next = await login({ openId: 'oExpiry' }, auth)
      assert.notEqual(next, token)
      await auth.isTokenValid(next)
    })

    test('20 concurrent logins of one new user on two instances: one token, one row', async () => {
      const [a, b] = [create(), create()]
      const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => login({ openId: 'oCrowd' }, i % 2 ? a : b)))
      assert.equal(new Set(tokens).size, 1)
      assert.deepEqual(storedTokens('oCrowd'), [tokens[0]])
      assert.equal(sql(h.dbFile, "SELECT count(*) FROM user WHERE openId = 'oCrowd'"), '1')
    })

    test('concurrent refreshes leave exactly one live token', async () => {
      const auth = create()
      await login({ openId: 'oRace' }, auth)
      const tokens = (await Promise.all(Array.from({ length: 10 }, () => auth.refreshToken('oRace')))).map((r) => r.response)
      const live = []
      for (const token of new Set(tokens)) if ((await outcome(auth.isTokenValid(token))) === 1) live.push(token)
      assert.equal(live.length, 1)
      assert.deepEqual(storedTokens('oRace'), live)
      assert.equal(await login({ openId: 'oRace' }, auth), live[0])
    })

    test('tokens of several users are checked together, each with its own outcome', async () => {
      const auth = create()
      const tokens = await Promise.all(['oMix1', 'oMix2', 'oMix3'].map((openId) => login({ openId }, auth)))
      await auth.revokeToken(tokens[1])
      const codes = await Promise.all([...tokens, 'junk', ''].map((t) => outcome(auth.isTokenValid(t))))
      assert.deepEqual(codes, [1, 6007, 1, 6007, 6001])
    })

    test('after close() every call rejects with 6000', async () => {
      const auth = create()
      const token = await login({ openId: 'oClosed' }, auth)
      await auth.close()
      const calls = [auth.isTokenValid(token), auth.verifyToken(token), auth.revokeToken(token), auth.refreshToken('oClosed')]
      assert.deepEqual(await Promise.all(calls.map(outcome)), [6000, 6000, 6000, 6000])
    })
  })
}

describe('the SQLite token store', () => {
  const h = useHarness()

  test('needs no Redis at all', async () => {
    const auth = h.create({ options: { tokenStore: 'sqlite', redisUrl: 'redis://127.0.0.1:1' } })
    const { response: token } = await h.login({ openId: 'oNoRedis' }, auth)
    await auth.isTokenValid(token)
    const { response: fresh } = await auth.refreshToken('oNoRedis')
    assert.equal((await auth.verifyToken(fresh)).response.openId, 'oNoRedis')
    assert.equal(sql(h.dbFile, "SELECT count(*) FROM mpauthx_session WHERE user_id = 'oNoRedis'"), '1')
  })

  test('rejects an unknown store name', () => {
    assert.throws(() => h.create({ options: { tokenStore: 'memcached' } }), { name: 'RangeError', message: /tokenStore/ })
  })
})
