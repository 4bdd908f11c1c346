'use strict'

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { before, describe, test } = require('node:test')

const { useHarness, rejection, SKU } = require('./support/harness')
const { waitUntil } = require('./support/redis')
const { startTcpProxy } = require('./support/tcp-proxy')

describe('isTokenValid, refreshToken and the session index', () => {
  const h = useHarness()
  let auth
  before(() => {
    auth = h.create()
  })

  const login = (user, instance = auth) => h.login(user, instance).then((reply) => reply.response)

  test('isTokenValid resolves with nothing for a live token and rejects with 6007 otherwise', async () => {
    const token = await login({ openId: 'oValid' })
    assert.equal(await auth.isTokenValid(token), undefined)
    const fake = `oValid|${SKU}|${'0'.repeat(64)}`
    for (const bad of [fake, 'oValid', 'oValid|testsku', `${token}|x`, `mpauthx|index|${SKU}|oValid`]) {
      const err = await rejection(auth.isTokenValid(bad))
      assert.equal(err.code, 6007, bad)
    }
  })

  test('isTokenValid rejects with 6001 for a missing or non-string token', async () => {
    for (const bad of [undefined, null, '', 5, {}]) {
      assert.equal((await rejection(auth.isTokenValid(bad))).code, 6001)
    }
  })

  test('keys of the application that are not token hashes are never valid tokens', async () => {
    h.redis.cli('SET', 'app|string|key', 'x')
    h.redis.cli('HSET', 'app|hash|withoutctime', 'name', 'x')
    assert.equal((await rejection(auth.isTokenValid('app|string|key'))).code, 6007)
    assert.equal((await rejection(auth.isTokenValid('app|hash|withoutctime'))).code, 6007)
  })

  test('tokens written by mpauthx 1.3.2 keep validating', async () => {
    const legacy = `oLegacy|${SKU}|${crypto.createHash('sha256').update('1700000000000abcdef').digest('hex')}`
    h.redis.cli('HSET', legacy, 'ctime', '1700000000000')
    h.redis.cli('EXPIRE', legacy, '600')
    await auth.isTokenValid(legacy)
    assert.equal(auth.extractOpenId(legacy), 'oLegacy')
    assert.equal(auth.extractSku(legacy), SKU)
  })

  test('refreshToken replaces the live token: the old one stops validating', async () => {
    const old = await login({ openId: 'oRefresh' })
    const reply = await auth.refreshToken('oRefresh')
    assert.equal(reply.status_code, 1)
    assert.equal(reply.status_message, 'OK')
    assert.notEqual(reply.response, old)
    assert.equal(auth.extractOpenId(reply.response), 'oRefresh')
    await auth.isTokenValid(reply.response)
    assert.equal((await rejection(auth.isTokenValid(old))).code, 6007)
    assert.equal(await login({ openId: 'oRefresh' }), reply.response, 'the next login reuses the new token')
    const ttl = Number(h.redis.cli('TTL', reply.response))
    assert.ok(ttl > 3590 && ttl <= 3600, `TTL ${ttl}`)
  })

  test('refreshToken works for a registered user without a live token', async () => {
    h.sql("INSERT INTO user(openId) VALUES ('oRegisteredByApp')")
    const reply = await auth.refreshToken('oRegisteredByApp')
    await auth.isTokenValid(reply.response)
  })

  test('refreshToken of an unknown user rejects with 6010, matching exactly', async () => {
    await login({ openId: 'oKnown_1' })
    for (const userId of ['oUnknown', 'oKnown%', 'oKnown__', 'OKNOWN_1', "' OR '1'='1", 'oKnown*']) {
      const err = await rejection(auth.refreshToken(userId))
      assert.equal(err.code, 6010, userId)
    }
    assert.equal((await rejection(auth.refreshToken(undefined))).code, 6001)
    assert.equal((await rejection(auth.refreshToken(12))).code, 6001)
  })

  test('refreshToken is per sku', async () => {
    const other = h.create({ sku: 'sku2' })
    const mine = await login({ openId: 'oPerSku' })
    const theirs = await login({ openId: 'oPerSku' }, other)
    await other.refreshToken('oPerSku')
    await auth.isTokenValid(mine)
    assert.equal((await rejection(auth.isTokenValid(theirs))).code, 6007)
  })
})

describe('a password-protected Redis', () => {
  const h = useHarness({ password: 'p@ss word' })

  test('works with redisPass', async () => {
    const auth = h.create()
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oWithPass' })
    const { response } = await auth.authorize(code, encryptedData, iv)
    await auth.isTokenValid(response)
  })

  test('redisPass wins over a wrong password in the URL', async () => {
    const redisUrl = h.redis.url.replace('redis://', 'redis://:wrong@')
    const auth = h.create({ options: { redisUrl } })
    const { response } = await auth.refreshToken('oWithPass')
    await auth.isTokenValid(response)
  })

  test('a wrong or missing password rejects with 6000, never 6007', async () => {
    for (const redisPass of ['wrong', null]) {
      const auth = h.create({ redisPass })
      const err = await rejection(auth.isTokenValid(`oWithPass|${SKU}|${'a'.repeat(64)}`))
      assert.equal(err.code, 6000, String(redisPass))
      assert.match(err.message, /Redis/)
      assert.ok(!err.message.includes('p@ss word'))
    }
  })
})

describe('store failures and close()', () => {
  const h = useHarness()

  test('Redis unreachable: every call rejects with 6000', async () => {
    const auth = h.create({ options: { redisUrl: 'redis://127.0.0.1:1' } })
    assert.equal((await rejection(auth.isTokenValid(`o|${SKU}|${'b'.repeat(64)}`))).code, 6000)
    h.sql("INSERT INTO user(openId) VALUES ('oNoRedis')")
    assert.equal((await rejection(auth.refreshToken('oNoRedis'))).code, 6000)
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oNoRedis' })
    assert.equal((await rejection(auth.authorize(code, encryptedData, iv))).code, 6000)
  })

  test('close() is idempotent and later calls reject with 6000', async () => {
    const auth = h.create()
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oClosing' })
    const { response } = await auth.authorize(code, encryptedData, iv)
    await auth.close()
    await auth.close()
    for (const call of [
      () => auth.isTokenValid(response),
      () => auth.refreshToken('oClosing'),
      () => auth.authorize('c', encryptedData, iv),
    ]) {
      const err = await rejection(call())
      assert.equal(err.code, 6000)
      assert.match(err.message, /closed/)
    }
  })

  test('after close() the Node process exits by itself', async () => {
    const { execFile } = require('node:child_process')
    h.sql("INSERT INTO user(openId) VALUES ('oChild')")
    const script = `
      const auth = require(${JSON.stringify(require.resolve('..'))})('wxChild', 'secret', 'sku', ${JSON.stringify(h.dbFile)}, null, 60, { redisUrl: ${JSON.stringify(h.redis.url)} })
      auth.refreshToken('oChild').then(({ response }) => auth.isTokenValid(response)).then(() => auth.close()).then(() => console.log('closed'))
    `
    const { code, stdout } = await new Promise((resolve) => {
      execFile(process.execPath, ['-e', script], { timeout: 20000 }, (err, stdout) =>
        resolve({ code: err ? (err.code ?? err.signal) : 0, stdout }),
      )
    })
    assert.equal(code, 0)
    assert.equal(stdout.trim(), 'closed')
  })
})

describe('isTokenValid calls made together', () => {
  const h = useHarness()

  for (const validationCacheSize of [undefined, 0]) {
    const cache = validationCacheSize === 0 ? 'without' : 'with'
    test(`${cache} the validation cache, each gets its own outcome, and one tick of calls is one Redis round trip (one more for the live ones, tracked, with the cache)`, async () => {
      const proxy = await startTcpProxy(h.redis.port)
      try {
        const auth = h.create({ options: { redisUrl: `redis://127.0.0.1:${proxy.port}`, validationCacheSize } })
        const live = []
        for (let i = 0; i < 5; i++) live.push((await h.login({ openId: `oBatch${i}${cache}` }, auth)).response)
        // A first check opens every connection the checks use.
        await auth.isTokenValid((await h.login({ openId: `oWarm${cache}` }, auth)).response)
        h.redis.cli('SET', 'app|string|key', 'x')
        const cases = [
          ...live.map((token) => [token, undefined]),
          [`oBatch0|${SKU}|${'0'.repeat(64)}`, 6007],
          ['app|string|key', 6007],
          ['not-a-token', 6007],
          ['', 6001],
          [42, 6001],
          [live[0], undefined],
        ]
        const asked = [...live, `oBatch0|${SKU}|${'0'.repeat(64)}`]
        // With Redis's replies held back, every token of the tick still goes out: no check
        // waits for another's answer.
        const sentFrom = (first) =>
          proxy.requests
            .slice(first)
            .map((request) => request.text)
            .join('')
        const sentBeforeTick = proxy.requests.length
        proxy.freeze()
        const outcomes = Promise.all(
          cases.map(([token]) =>
            auth.isTokenValid(token).then(
              () => undefined,
              (err) => err.code,
            ),
          ),
        )
        await waitUntil(() => asked.every((token) => sentFrom(sentBeforeTick).includes(token)), 'every token of the tick to be sent', 2000)
        const sentBeforeReplies = proxy.requests.length
        proxy.thaw()
        assert.deepEqual(
          await outcomes,
          cases.map(([, code]) => code),
        )
        const sentAfter = sentFrom(sentBeforeReplies)
        // With the cache, only the tokens found live are read once more, tracked, so that they
        // are remembered; a token that is not live is never tracked.
        const again = validationCacheSize === 0 ? [] : live
        assert.deepEqual(
          asked.filter((token) => sentAfter.includes(token)),
          again,
          'which tokens were asked about again',
        )
      } finally {
        proxy.thaw()
        await proxy.stop()
      }
    })
  }

  test('thousands at once are split into batches and all answered', async () => {
    const auth = h.create()
    const { response: token } = await h.login({ openId: 'oMany' }, auth)
    const calls = Array.from({ length: 2500 }, (_, i) => (i % 2 ? token : `${token}x`))
    const outcomes = await Promise.all(
      calls.map((t) =>
        auth.isTokenValid(t).then(
          () => 1,
          (err) => err.code,
        ),
      ),
    )
    assert.deepEqual(
      outcomes,
      calls.map((t) => (t === token ? 1 : 6007)),
    )
  })

  test('when Redis is down, every call of the batch rejects with 6000', async () => {
    const auth = h.create()
    const { response: token } = await h.login({ openId: 'oBatchOutage' }, auth)
    await h.redis.stop()
    try {
      const codes = await Promise.all(
        [token, token, 'x', ''].map((t) =>
          auth.isTokenValid(t).then(
            () => 1,
            (err) => err.code,
          ),
        ),
      )
      assert.deepEqual(codes, [6000, 6000, 6000, 6000])
    } finally {
      await h.redis.start()
    }
  })
})
