'use strict'

// Sessions that live while used (`slidingTtl`) and logging a user out everywhere
// (`revokeUser`), on the Redis store, the SQLite store and a Redis Cluster. TTLs are a few
// seconds; every wait polls what the store says (PTTL, the row's expiry) with a deadline.

const assert = require('node:assert/strict')
const http = require('node:http')
const { setImmediate: nextMacrotask } = require('node:timers/promises')
const { after, before, describe, test } = require('node:test')

const mpauthx = require('..')
const { useCluster, useHarness, rejection, SKU } = require('./support/harness')
const { waitUntil } = require('./support/redis')
const { answeredFromMemory, startWorker, validates, warmToken } = require('./support/checks')

/** The TTL of these tests, in seconds: a token is due to slide after half of it. */
const TTL = 4
const TTL_MS = TTL * 1000
/** Left of a token's TTL, at most, when it counts as in the second half of its life. */
const SECOND_HALF_MS = TTL_MS / 2 - 200
/** Left of a token's TTL, at least, right after it slid (the whole TTL, less generous slack). */
const SLID_MS = TTL_MS - 1000

const OTHER_SKU = 'othersku'

/** How each store is set up and observed from outside. */
function storesOf(h) {
  return {
    redis: {
      options: {},
      remainingMs: (token) => Number(h.redis.cli('PTTL', token)),
      indexRemainingMs: (userId, sku = SKU) => Number(h.redis.cli('PTTL', `mpauthx|index|${sku}|${userId}`)),
      /** Counts the writes that extend a TTL from now on: EXPIRE calls, scripts' included. */
      countWrites() {
        const expires = () => Number(/cmdstat_expire:calls=(\d+)/.exec(h.redis.cli('INFO', 'commandstats'))?.[1] ?? 0)
        const before = expires()
        return () => expires() - before
      },
    },
    sqlite: {
      options: { tokenStore: 'sqlite' },
      remainingMs: (token) => Number(h.sql(`SELECT expires_at_us FROM mpauthx_session WHERE token = '${token}'`) || 0) / 1000 - Date.now(),
      // The row holds the token and its user's index: one expiry for both.
      indexRemainingMs: (userId, sku = SKU) =>
        Number(h.sql(`SELECT expires_at_us FROM mpauthx_session WHERE user_id = '${userId}' AND sku = '${sku}'`) || 0) / 1000 - Date.now(),
      /** Counts the writes that extend a token from now on, with a trigger on its expiry. */
      countWrites() {
        h.sql(
          'CREATE TABLE IF NOT EXISTS slide_log(token TEXT); DELETE FROM slide_log; ' +
            'CREATE TRIGGER IF NOT EXISTS slide_logged AFTER UPDATE OF expires_at_us ON mpauthx_session ' +
            'BEGIN INSERT INTO slide_log VALUES (new.token); END;',
        )
        return () => Number(h.sql('SELECT count(*) FROM slide_log'))
      },
    },
  }
}

/** Polls until `token` has less than half its TTL left. */
function untilSecondHalf(store, token) {
  return waitUntil(() => store.remainingMs(token) < SECOND_HALF_MS, 'the token to reach the second half of its TTL', TTL_MS + 2000)
}

/** An instance whose latest diagnostics are collected in `instance.events`. */
function observed(h, options = {}, more = {}) {
  const events = []
  const instance = h.create({ ttl: TTL, ...more, options: { ...options, logger: (event) => events.push(event) } })
  instance.events = events
  return instance
}

/** A request through `auth.middleware()` in a real HTTP server: its status. */
async function throughMiddleware(auth, token) {
  const middleware = auth.middleware()
  const server = http.createServer((req, res) => middleware(req, res, () => res.end('ok')))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const reply = await fetch(`http://127.0.0.1:${server.address().port}/`, { headers: { authorization: `Bearer ${token}` } })
    await reply.text()
    return reply.status
  } finally {
    server.close()
  }
}

describe('slidingTtl', () => {
  const h = useHarness()
  let user = 0
  const nextUser = (name) => `o${name}${++user}`

  for (const storeName of ['redis', 'sqlite']) {
    describe(`on the ${storeName} store`, () => {
      const store = () => storesOf(h)[storeName]

      test('a token checked in the second half of its life outlives its first expiry, and the next login reuses it', async () => {
        const auth = h.create({ ttl: TTL, options: { ...store().options, slidingTtl: true } })
        const openId = nextUser('Slide')
        const loggedInAt = Date.now()
        const { response: token } = await h.login({ openId }, auth)
        // A check in the first half writes nothing.
        const writes = store().countWrites()
        await auth.isTokenValid(token)
        assert.equal(writes(), 0, 'a check in the first half of the TTL writes nothing')
        await untilSecondHalf(store(), token)
        await auth.isTokenValid(token)
        assert.ok(store().remainingMs(token) > SLID_MS, 'the token has its whole TTL back')
        assert.ok(store().indexRemainingMs(openId) > SLID_MS, 'its index too')
        // Past the first expiry (polled, with a margin), the token still validates.
        await waitUntil(() => Date.now() > loggedInAt + TTL_MS + 500, 'the first expiry to pass', TTL_MS + 2000)
        assert.equal(await validates(auth.isTokenValid(token)), true, 'live past its first expiry')
        assert.equal((await h.login({ openId }, auth)).response, token, 'the next login reuses it')
      })

      test('without slidingTtl, a token checked all along expires at its TTL', async () => {
        const auth = h.create({ ttl: TTL, options: store().options })
        const openId = nextUser('Fixed')
        const { response: token } = await h.login({ openId }, auth)
        const writes = store().countWrites()
        await untilSecondHalf(store(), token)
        await auth.isTokenValid(token)
        await auth.verifyToken(token)
        assert.ok(store().remainingMs(token) < SECOND_HALF_MS, 'not extended')
        assert.equal(writes(), 0, 'no write')
        await waitUntil(async () => !(await validates(auth.isTokenValid(token))), 'the token to expire', TTL_MS + 3000)
        assert.notEqual((await h.login({ openId }, auth)).response, token, 'the next login issues a new token')
      })

      test("another sku's token keeps the TTL its own instance gave it, however a sliding instance checks it", async () => {
        const auth = h.create({ ttl: TTL, options: { ...store().options, slidingTtl: true } })
        const issuer = h.create({ sku: OTHER_SKU, ttl: TTL, options: store().options })
        const openId = nextUser('Foreign')
        const { response: token } = await h.login({ openId }, issuer)
        const writes = store().countWrites()
        await untilSecondHalf(store(), token)
        for (let i = 0; i < 3; i++) {
          assert.equal(await validates(auth.isTokenValid(token)), true)
          await auth.verifyToken(token)
          await auth.authenticate({ authorization: `Bearer ${token}` }, { anySku: true })
        }
        assert.equal(writes(), 0, 'no write')
        assert.ok(store().remainingMs(token) < SECOND_HALF_MS, 'not extended')
      })

      test('many concurrent and back-to-back checks of a token due to slide write it once', async () => {
        const auth = h.create({ ttl: TTL, options: { ...store().options, slidingTtl: true } })
        const openId = nextUser('Once')
        const { response: token } = await h.login({ openId }, auth)
        await untilSecondHalf(store(), token)
        const writes = store().countWrites()
        const checks = [
          ...Array.from({ length: 100 }, () => auth.isTokenValid(token)),
          ...Array.from({ length: 20 }, () => auth.verifyToken(token)),
        ]
        await Promise.all(checks)
        for (let i = 0; i < 50; i++) {
          await auth.isTokenValid(token)
          await nextMacrotask()
        }
        assert.ok(store().remainingMs(token) > SLID_MS, 'the token slid')
        // Redis: one EXPIRE each for the token, its index and the user's registration record,
        // in one script; SQLite: one UPDATE of the row.
        assert.equal(writes(), storeName === 'redis' ? 3 : 1, 'one write for 170 checks')
      })

      test('verifyToken slides the token and reports its new lifetime', async () => {
        const auth = h.create({ ttl: TTL, options: { ...store().options, slidingTtl: true } })
        const { response: token } = await h.login({ openId: nextUser('Verify') }, auth)
        await untilSecondHalf(store(), token)
        const { response } = await auth.verifyToken(token)
        assert.ok(response.expiresIn >= TTL - 1, `expiresIn ${response.expiresIn} after the slide`)
        assert.ok(store().remainingMs(token) > SLID_MS)
      })

      test('the middleware and authenticate slide the token', async () => {
        const auth = h.create({ ttl: TTL, options: { ...store().options, slidingTtl: true } })
        let { response: token } = await h.login({ openId: nextUser('Midw') }, auth)
        assert.equal(await throughMiddleware(auth, token), 200)
        await untilSecondHalf(store(), token)
        assert.equal(await throughMiddleware(auth, token), 200)
        assert.ok(store().remainingMs(token) > SLID_MS, 'the middleware slid it')

        token = (await h.login({ openId: nextUser('Authenticate') }, auth)).response
        const request = { headers: { authorization: `Bearer ${token}` } }
        assert.equal((await auth.authenticate(request)).token, token)
        await untilSecondHalf(store(), token)
        assert.equal((await auth.authenticate(request)).token, token)
        assert.ok(store().remainingMs(token) > SLID_MS, 'authenticate slid it')
      })
    })
  }

  for (const validationCacheSize of [10000, 0]) {
    test(`a token checked only through the validation cache still slides (validationCacheSize ${validationCacheSize})`, async () => {
      const store = storesOf(h).redis
      const auth = observed(h, { slidingTtl: true, validationCacheSize })
      const { response: token } = await h.login({ openId: nextUser('Cached') }, auth)
      if (validationCacheSize > 0) await warmToken(auth, auth.events, token)
      await untilSecondHalf(store, token)
      // A busy backend checks back to back; one of the checks must reach Redis and slide.
      await waitUntil(
        async () => {
          await auth.isTokenValid(token)
          return store.remainingMs(token) > SLID_MS
        },
        'a check to slide the token',
        2000,
      )
      if (validationCacheSize > 0) {
        // With its whole TTL back, the token is answered from memory again.
        await warmToken(auth, auth.events, token)
        auth.events.length = 0
        await auth.isTokenValid(token)
        assert.ok(answeredFromMemory(auth.events))
      }
    })
  }

  test('slidingTtl must be a boolean', () => {
    assert.throws(() => h.create({ options: { slidingTtl: 'yes' } }), TypeError)
  })
})

describe('revokeUser', () => {
  const h = useHarness()

  for (const storeName of ['redis', 'sqlite']) {
    test(`logs a user out of this sku, or of every sku with allSkus (${storeName} store)`, async () => {
      const options = storesOf(h)[storeName].options
      const own = h.create({ options })
      const other = h.create({ sku: OTHER_SKU, options })
      const openId = `oRevokeUser-${storeName}`
      const tokenOf = async (auth, id = openId) => (await h.login({ openId: id }, auth)).response
      const [ownToken, otherToken, bystander] = [await tokenOf(own), await tokenOf(other), await tokenOf(own, `${openId}-x`)]

      assert.deepEqual(await own.revokeUser(openId), { status_code: 1, status_message: 'OK', response: 1 })
      assert.equal(await validates(own.isTokenValid(ownToken)), false, 'this sku: logged out')
      assert.equal(await validates(own.isTokenValid(otherToken)), true, 'the other sku: still in')
      assert.equal((await own.revokeUser(openId)).response, 0, 'nothing left in this sku')

      const freshToken = await tokenOf(own)
      assert.notEqual(freshToken, ownToken, 'the next login issues a new token')
      assert.equal((await own.revokeUser(openId, { allSkus: true })).response, 2)
      for (const token of [freshToken, otherToken]) assert.equal(await validates(other.isTokenValid(token)), false)
      assert.equal(await validates(own.isTokenValid(bystander)), true, 'another user is untouched')
      assert.equal((await other.revokeUser(openId, { allSkus: true })).response, 0)
      assert.notEqual(await tokenOf(other), otherToken, 'the next login in the other sku issues a new token')
    })
  }

  test('user ids are matched exactly, glob characters included', async () => {
    const auth = h.create()
    const ids = ['o*', 'o?', 'o[ab]', 'oa', 'o\\x', 'ox']
    const tokens = {}
    for (const id of ids) tokens[id] = (await h.login({ openId: id }, auth)).response
    for (const id of ['o*', 'o?', 'o[ab]', 'o\\x']) {
      assert.equal((await auth.revokeUser(id, { allSkus: true })).response, 1, id)
    }
    assert.equal(await validates(auth.isTokenValid(tokens.oa)), true)
    assert.equal(await validates(auth.isTokenValid(tokens.ox)), true)
  })

  test('a stray key in the index is never deleted, only the index', async () => {
    const auth = h.create()
    const index = `mpauthx|index|${SKU}|oStray`
    h.redis.cli('SET', 'oStray|other|app-data', 'keep me')
    h.redis.cli('SET', index, 'oStray|other|app-data')
    assert.equal((await auth.revokeUser('oStray', { allSkus: true })).response, 0)
    assert.equal(h.redis.cli('GET', 'oStray|other|app-data'), 'keep me')
    assert.equal(h.redis.cli('EXISTS', index), '0')
  })

  test('a missing or malformed user id rejects with 6001; bad options throw TypeError', async () => {
    for (const tokenStore of ['redis', 'sqlite']) {
      const auth = h.create({ options: { tokenStore } })
      for (const userId of ['', 'a|b', 42, null, undefined, {}]) {
        const err = await rejection(auth.revokeUser(userId, { allSkus: true }))
        assert.equal(err.code, 6001, `${tokenStore}: ${String(userId)}`)
        assert.ok(err instanceof mpauthx.MpauthxError)
      }
      assert.throws(() => auth.revokeUser('oUser', { allSkus: 'yes' }), TypeError)
      assert.throws(() => auth.revokeUser('oUser', { everywhere: true }), /known keys: allSkus/)
      assert.throws(() => auth.revokeUser('oUser', 'all'), TypeError)
    }
  })

  describe('across processes', () => {
    const env = {}
    before(async () => {
      env.worker = await startWorker({ dbFile: h.dbFile, options: { redisUrl: h.redis.url, wechatApiBase: h.wechat.base } })
    })
    after(() => env.worker.stop())

    test('another process that answers the tokens from memory rejects them after revokeUser', async () => {
      const own = h.create()
      const other = h.create({ sku: OTHER_SKU })
      const openId = 'oTwoProcesses'
      const ownToken = (await h.login({ openId }, own)).response
      const otherToken = (await h.login({ openId }, other)).response
      await env.worker.warm(ownToken)
      await env.worker.warm(otherToken)
      const watching = env.worker.watch(ownToken)
      assert.equal((await own.revokeUser(openId, { allSkus: true })).response, 2)
      // The worker checks back to back and reports the first rejection; its deadline is 5 s.
      assert.equal((await watching).code, 6007, 'the token of this sku is rejected there')
      const next = await env.worker.watch(otherToken)
      assert.equal(next.code, 6007, 'and the token of the other sku')
      assert.equal(next.validated, 0, 'at once')
    })
  })
})

describe('slidingTtl and revokeUser on a Redis Cluster', () => {
  const h = useCluster()
  const create = (sku = SKU, options = {}) => h.create({ sku, ttl: TTL, options })
  const login = (openId, auth) => h.login({ openId }, auth).then((reply) => reply.response)
  const pttl = (key) => Number(h.cluster.masterOf(key).cli('PTTL', key))

  test('a token and its index, on different nodes, slide together', async () => {
    const auth = create(SKU, { slidingTtl: true })
    const openId = 'oClusterSlide'
    const token = await login(openId, auth)
    const index = `mpauthx|index|${SKU}|${openId}`
    await waitUntil(() => pttl(token) < SECOND_HALF_MS, 'the second half of the TTL', TTL_MS + 2000)
    await waitUntil(
      async () => {
        await auth.isTokenValid(token)
        return pttl(token) > SLID_MS
      },
      'a check to slide the token',
      2000,
    )
    assert.ok(pttl(index) > SLID_MS, 'the index slid too')
    assert.equal(await login(openId, auth), token)
  })

  test('revokeUser with allSkus finds the indexes on every master', async () => {
    const skus = ['sku-a', 'sku-b', 'sku-c', 'sku-d', 'sku-e', 'sku-f']
    const instances = skus.map((sku) => create(sku))
    const openId = 'oClusterRevoke'
    const tokens = await Promise.all(instances.map((auth) => login(openId, auth)))
    const masters = new Set(skus.map((sku) => h.cluster.masterOf(`mpauthx|index|${sku}|${openId}`).port))
    assert.ok(masters.size >= 2, 'the indexes live on more than one master')
    assert.equal((await instances[0].revokeUser(openId)).response, 1)
    assert.equal((await instances[1].revokeUser(openId, { allSkus: true })).response, skus.length - 1)
    for (const token of tokens) assert.equal(await validates(instances[0].isTokenValid(token)), false)
  })
})
