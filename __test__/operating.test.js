'use strict'

// Operating it (docs/operating.md): the `mpauthx:*` diagnostics channels, `stats()` and
// `health()`, as a subscriber, a metrics exporter and a readiness probe see them.

const assert = require('node:assert/strict')
const diagnosticsChannel = require('node:diagnostics_channel')
const { describe, test } = require('node:test')

const { useHarness, rejection, APP_SECRET, SKU } = require('./support/harness')
const { waitUntil } = require('./support/redis')

const TRACING_EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error']

/**
 * Subscribes to the TracingChannels of `methods` and the plain channels while `work` runs;
 * resolves with what was published, in order: `{ channel, event, message }`.
 */
async function observed(methods, work) {
  const seen = []
  const unsubscribe = []
  for (const method of methods) {
    const channel = diagnosticsChannel.tracingChannel(`mpauthx:${method}`)
    const handlers = Object.fromEntries(
      TRACING_EVENTS.map((event) => [event, (message) => seen.push({ channel: `mpauthx:${method}`, event, message: { ...message } })]),
    )
    channel.subscribe(handlers)
    unsubscribe.push(() => channel.unsubscribe(handlers))
  }
  for (const name of ['wechat', 'store', 'cache']) {
    const handler = (message) => seen.push({ channel: `mpauthx:${name}`, event: 'publish', message })
    diagnosticsChannel.subscribe(`mpauthx:${name}`, handler)
    unsubscribe.push(() => diagnosticsChannel.unsubscribe(`mpauthx:${name}`, handler))
  }
  try {
    await work()
  } finally {
    for (const stop of unsubscribe) stop()
  }
  return seen
}

const tracingOf = (seen, method) => seen.filter((s) => s.channel === `mpauthx:${method}`).map((s) => s.event)
const published = (seen, name) => seen.filter((s) => s.channel === `mpauthx:${name}`).map((s) => s.message)

/** What a user's login leaves that must never reach an event or a number. */
function assertNothingSecret(what, secrets) {
  const text = JSON.stringify(what, (key, value) =>
    value instanceof Error ? { message: value.message, detail: value.detail, code: value.code } : value,
  )
  for (const secret of secrets.filter(Boolean)) {
    assert.ok(!text.includes(secret), `found ${String(secret).slice(0, 12)}… in what was published`)
  }
}

describe('diagnostics channels', () => {
  const h = useHarness()

  test('a login: its TracingChannel events in order, with its WeChat request and store round trips', async () => {
    const auth = h.create()
    const login = h.wechat.login({ openId: 'oOperated', unionId: 'uOperated' })
    let token
    const seen = await observed(['authorize'], async () => {
      ;({ response: token } = await auth.authorize(login.code, login.encryptedData, login.iv))
    })
    assert.deepEqual(tracingOf(seen, 'authorize'), ['start', 'end', 'asyncStart', 'asyncEnd'])
    const context = seen.find((s) => s.event === 'asyncEnd').message
    assert.deepEqual(context, { method: 'authorize', sku: SKU, code: 1 })

    const [wechat, ...more] = published(seen, 'wechat')
    assert.equal(more.length, 0)
    assert.equal(wechat.endpoint, '/sns/jscode2session')
    assert.equal(wechat.outcome, 'ok')
    assert.equal(wechat.httpStatus, 200)
    assert.equal(wechat.errcode, null)
    assert.ok(wechat.start <= wechat.end && wechat.durationMs >= 0 && Math.abs(wechat.start - Date.now()) < 10_000, JSON.stringify(wechat))
    assert.equal(wechat.context.method, 'authorize', 'correlated by the call context')

    const stores = published(seen, 'store').filter((event) => event.operation !== undefined)
    assert.ok(
      stores.some((event) => event.backend === 'redis') && stores.some((event) => event.backend === 'sqlite'),
      JSON.stringify(stores.map((e) => [e.backend, e.operation])),
    )
    for (const event of stores) {
      assert.equal(event.context.method, 'authorize')
      assert.equal(event.outcome, 'ok')
      assert.match(event.operation, /^[A-Za-z]+$/, 'a command or a kind, never a key')
    }
    const sessionKey = login.sessionKey.toString('base64')
    assertNothingSecret(seen, [APP_SECRET, token, 'oOperated', 'uOperated', login.code, login.encryptedData, login.iv, sessionKey])
    assertNothingSecret([auth.stats(), auth.health()], [APP_SECRET, token, 'oOperated', 'uOperated', login.code, sessionKey])
    // User data: the decrypted profile's values.
    assertNothingSecret(seen, ['Band', 'zh_CN'])
  })

  test('a check from memory publishes a cache hit and no round trip; authenticate answers in the same tick', async () => {
    const auth = h.create()
    const { response: token } = await h.login({ openId: 'oMemory' }, auth)
    // The first check reads Redis and remembers the token; the next are answered from memory.
    await auth.isTokenValid(token)
    await waitUntil(async () => (await auth.verifyToken(token), auth.stats().validationCache.hits > 0), 'a check from memory')
    let synchronous
    const seen = await observed(['isTokenValid', 'authenticate'], async () => {
      await auth.isTokenValid(token)
      const request = { headers: { authorization: `Bearer ${token}` } }
      let nextCalled = false
      auth.middleware()(request, {}, () => (nextCalled = true))
      synchronous = nextCalled
    })
    assert.equal(synchronous, true, 'the middleware calls next() before returning')
    assert.deepEqual(tracingOf(seen, 'isTokenValid'), ['start', 'end', 'asyncStart', 'asyncEnd'])
    assert.deepEqual(tracingOf(seen, 'authenticate'), ['start', 'end'], 'a synchronous answer, as traceSync publishes it')
    assert.deepEqual(
      published(seen, 'cache').map((event) => [event.context.method, event.outcome]),
      [
        ['isTokenValid', 'hit'],
        ['authenticate', 'hit'],
      ],
    )
    assert.deepEqual(published(seen, 'store'), [], 'no round trip')
    const context = seen.find((s) => s.channel === 'mpauthx:authenticate' && s.event === 'end').message
    assert.deepEqual(context, { method: 'authenticate', sku: SKU, code: 1 })
    assertNothingSecret(seen, [token, 'oMemory'])
  })

  test('a check from Redis publishes a miss and its round trip; a refused check its error', async () => {
    const auth = h.create()
    const { response: token } = await h.login({ openId: 'oFromRedis' }, auth)
    const seen = await observed(['verifyToken', 'isTokenValid'], async () => {
      await auth.verifyToken(token)
      await rejection(auth.isTokenValid(`oNobody|${SKU}|${'0'.repeat(64)}`))
    })
    assert.deepEqual(tracingOf(seen, 'verifyToken'), ['start', 'end', 'asyncStart', 'asyncEnd'])
    assert.deepEqual(tracingOf(seen, 'isTokenValid'), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
    const failed = seen.find((s) => s.channel === 'mpauthx:isTokenValid' && s.event === 'error').message
    assert.equal(failed.code, 6007)
    assert.equal(failed.error.code, 6007)
    assert.deepEqual(
      published(seen, 'cache').map((event) => [event.context.method, event.outcome]),
      [
        ['verifyToken', 'miss'],
        ['isTokenValid', 'miss'],
      ],
    )
    const methods = published(seen, 'store').map((event) => [event.context.method, event.backend])
    assert.ok(
      methods.some(([method, backend]) => method === 'verifyToken' && backend === 'redis'),
      JSON.stringify(methods),
    )
    assert.ok(
      methods.some(([method, backend]) => method === 'isTokenValid' && backend === 'redis'),
      JSON.stringify(methods),
    )
    assertNothingSecret(seen, [token, 'oFromRedis', 'oNobody'])
  })

  test('a WeChat failure: the error event, the errcode, and the numbers', async () => {
    const auth = h.create()
    const code = h.wechat.replyJson({ errcode: 40029, errmsg: 'invalid code' })
    const seen = await observed(['login'], async () => {
      const err = await rejection(auth.login(code))
      assert.equal(err.code, 6008)
    })
    assert.deepEqual(tracingOf(seen, 'login'), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
    const [wechat] = published(seen, 'wechat').filter((event) => event.endpoint)
    assert.equal(wechat.outcome, 'errcode')
    assert.equal(wechat.errcode, 40029)
    assert.equal(wechat.httpStatus, 200)
    const stats = auth.stats()
    assert.deepEqual(stats.calls.login, { calls: 1, failures: { 6008: 1 } })
    assert.equal(stats.wechat.requests.errcode, 1)
    assert.equal(stats.wechat.latencyMs.count, 1)
    assert.equal(auth.health().connections.wechat.state, 'up', 'WeChat answered')
    assertNothingSecret(seen, [APP_SECRET, code])
  })

  test('WeChat out of reach: down in health(), the change published once, the failure in stats()', async () => {
    const { freePort } = require('./support/redis')
    const auth = h.create({ options: { wechatApiBase: `http://127.0.0.1:${await freePort()}` } })
    const seen = await observed(['login'], async () => {
      for (let i = 0; i < 2; i++) assert.equal((await rejection(auth.login(`code-${i}`))).code, 6008)
    })
    const requests = published(seen, 'wechat').filter((event) => event.endpoint)
    assert.deepEqual(
      requests.map((event) => [event.outcome, event.httpStatus]),
      [
        ['network', null],
        ['network', null],
      ],
    )
    assert.deepEqual(
      published(seen, 'wechat')
        .filter((event) => event.state)
        .map((event) => [event.state, event.error]),
      [['down', 'network']],
      'a state change is published once, not per request',
    )
    const { wechat } = auth.health().connections
    assert.equal(wechat.state, 'down')
    assert.equal(wechat.lastError, 'network')
    assert.ok(wechat.since <= Date.now())
    const stats = auth.stats()
    assert.equal(stats.wechat.requests.network, 2)
    assert.equal(stats.connections.lastFailure.connection, 'wechat')
    assert.equal(stats.connections.lastFailure.kind, 'network')
  })
})

describe('diagnostics channels: batches, the integrations, ready()', () => {
  const h = useHarness()

  test('a batch of checks: each call its round trip, a change of state once, with the first call', async () => {
    const auth = h.create({ options: { validationCacheSize: 0 } })
    const { response: token } = await h.login({ openId: 'oBatch' }, auth)
    await auth.isTokenValid(token)
    const seen = await observed(['isTokenValid'], async () => {
      await h.redis.stop()
      try {
        const checks = await Promise.allSettled([token, token, token].map((t) => auth.isTokenValid(t)))
        assert.deepEqual(
          checks.map((check) => check.reason?.code),
          [6000, 6000, 6000],
        )
      } finally {
        await h.redis.start()
      }
    })
    const contexts = seen.filter((s) => s.event === 'start').map((s) => s.message)
    assert.equal(contexts.length, 3)
    assert.equal(tracingOf(seen, 'isTokenValid').filter((event) => event === 'asyncEnd').length, 3)
    const changes = published(seen, 'store').filter((event) => event.state)
    assert.deepEqual(
      changes.map((event) => [event.backend, event.state]),
      [['redis', 'down']],
      'published once for the batch',
    )
    const roundTrips = published(seen, 'store').filter((event) => event.operation)
    assert.ok(roundTrips.length >= 3, 'each call publishes the round trips it shared')
    assert.equal(new Set(roundTrips.map((event) => event.context)).size, 3)
    assert.equal(auth.stats().calls.isTokenValid.failures[6000], 3)
  })

  test("the integrations' check through Redis: one authenticate call, its round trip, its error", async () => {
    const auth = h.create({ options: { validationCacheSize: 0 } })
    const { response: token } = await h.login({ openId: 'oIntegrated' }, auth)
    const unknown = `oIntegrated|${SKU}|${'f'.repeat(64)}`
    const seen = await observed(['authenticate', 'verifyToken'], async () => {
      assert.equal((await auth.authenticate({ authorization: `Bearer ${token}` })).openId, 'oIntegrated')
      assert.equal((await rejection(auth.authenticate({ 'x-access-token': unknown }))).code, 6007)
      assert.equal((await rejection(auth.authenticate({}))).code, 6007, 'no token at all')
    })
    assert.deepEqual(tracingOf(seen, 'verifyToken'), [], 'not a nested verifyToken')
    const succeeded = ['start', 'end', 'asyncStart', 'asyncEnd']
    const failed = ['start', 'end', 'error', 'asyncStart', 'asyncEnd']
    assert.deepEqual(tracingOf(seen, 'authenticate'), [succeeded, failed, failed].flat())
    const stores = published(seen, 'store').filter((event) => event.operation)
    assert.ok(stores.length >= 2 && stores.every((event) => event.context.method === 'authenticate'))
    assert.deepEqual(auth.stats().calls.authenticate, { calls: 3, failures: { 6007: 2 } })
    assertNothingSecret(seen, [token, unknown, 'oIntegrated'])
  })

  test('a check that throws in its synchronous part publishes error and end, as traceSync does', async () => {
    const auth = h.create()
    const seen = await observed(['authenticate'], async () => {
      // A headers object whose token is no string: reading it throws.
      await assert.rejects(auth.authenticate({ 'x-access-token': 42 }), TypeError)
    })
    assert.deepEqual(tracingOf(seen, 'authenticate'), ['start', 'error', 'end'])
  })

  test('ready() is traced and counted', async () => {
    const auth = h.create()
    const seen = await observed(['ready'], () => auth.ready())
    assert.deepEqual(tracingOf(seen, 'ready'), ['start', 'end', 'asyncStart', 'asyncEnd'])
    assert.ok(published(seen, 'store').some((event) => event.operation === 'PING' && event.context.method === 'ready'))
    assert.deepEqual(auth.stats().calls.ready, { calls: 1, failures: {} })
  })
})

describe('stats() and health()', () => {
  const h = useHarness()

  test('count a login and checks: calls, WeChat, store round trips, cache hits and misses', async () => {
    const auth = h.create()
    const before = auth.stats()
    assert.equal(before.appId, require('./support/harness').APP_ID)
    assert.equal(before.sku, SKU)
    assert.equal(before.calls.authorize.calls, 0)
    assert.deepEqual(auth.health().connections.redis, { state: 'unknown', since: null, lastError: null })

    const { response: token } = await h.login({ openId: 'oCounted' }, auth)
    await auth.isTokenValid(token)
    await waitUntil(async () => (await auth.isTokenValid(token), auth.stats().validationCache.hits > 0), 'a check from memory')
    await rejection(auth.isTokenValid('made|up|token'))

    const stats = auth.stats()
    assert.equal(stats.calls.authorize.calls, 1)
    assert.deepEqual(stats.calls.authorize.failures, {})
    assert.ok(stats.calls.isTokenValid.calls >= 3)
    assert.equal(stats.calls.isTokenValid.failures[6007], 1)
    assert.equal(stats.wechat.requests.ok, 1)
    assert.equal(stats.wechat.latencyMs.count, 1)
    assert.equal(stats.wechat.latencyMs.le.length, stats.wechat.latencyMs.counts.length)
    assert.deepEqual(stats.wechat.latencyMs.le, [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000])
    assert.equal(stats.wechat.latencyMs.counts.at(-1), 1, 'cumulative: the last bucket has every request under 10 s')
    assert.ok(stats.store.redis.roundTrips > 0 && stats.store.sqlite.roundTrips > 0, JSON.stringify(stats.store))
    assert.equal(stats.store.userStore.roundTrips, 0)
    assert.equal(stats.validationCache.on, true)
    assert.ok(stats.validationCache.entries >= 1)
    assert.ok(stats.validationCache.hits >= 1 && stats.validationCache.misses >= 1, JSON.stringify(stats.validationCache))
    // Numbers are counters: a second read never goes down.
    const again = auth.stats()
    assert.ok(again.store.redis.roundTrips >= stats.store.redis.roundTrips)

    const health = auth.health()
    assert.equal(health.connections.redis.state, 'up')
    assert.equal(health.connections.sqlite.state, 'up')
    assert.equal(health.connections.wechat.state, 'up')
    assert.equal(health.connections.userStore, undefined, 'only what the instance uses')
    assert.deepEqual(health.validationCache, { on: true })
    assertNothingSecret([stats, health], [APP_SECRET, token, 'oCounted'])
  })

  test('an invalidation is counted, and the check after it publishes `invalidated`', async () => {
    const auth = h.create()
    const { response: token } = await h.login({ openId: 'oInvalidated' }, auth)
    await waitUntil(async () => (await auth.isTokenValid(token), auth.stats().validationCache.hits > 0), 'a check from memory')
    // Another server (here: redis-cli) changes the token: Redis tells the tracking connection.
    h.redis.cli('DEL', token)
    await waitUntil(() => auth.stats().validationCache.invalidations > 0, 'the invalidation')
    const seen = await observed(['isTokenValid'], () => rejection(auth.isTokenValid(token)))
    assert.deepEqual(
      published(seen, 'cache').map((event) => event.outcome),
      ['invalidated'],
    )
  })

  test('a Redis outage and recovery: down, the change published, a reconnect counted, up again', async () => {
    const auth = h.create({ options: { validationCacheSize: 0 } })
    const { response: token } = await h.login({ openId: 'oOutage' }, auth)
    assert.equal(auth.health().connections.redis.state, 'up')
    let seen = await observed(['isTokenValid'], async () => {
      await h.redis.stop()
      try {
        assert.equal((await rejection(auth.isTokenValid(token))).code, 6000)
      } finally {
        await h.redis.start()
      }
    })
    const down = published(seen, 'store').filter((event) => event.state)
    assert.deepEqual(
      down.map((event) => [event.backend, event.state]),
      [['redis', 'down']],
    )
    assert.ok(down[0].error, 'says why')
    let stats = auth.stats()
    assert.equal(stats.calls.isTokenValid.failures[6000], 1)
    assert.equal(stats.connections.lastFailure.connection, 'redis')
    assert.ok(stats.store.redis.failures > 0)
    const outage = auth.health().connections.redis
    assert.equal(outage.state, 'down')
    assert.ok(['disconnected', 'unreachable', 'timeout'].includes(outage.lastError), outage.lastError)

    // The restarted Redis kept nothing: the check answers 6007 once Redis answers at all.
    seen = await observed(['isTokenValid'], () =>
      waitUntil(
        () =>
          auth.isTokenValid(token).then(
            () => true,
            (err) => err.code !== 6000,
          ),
        'a check after Redis is back',
      ),
    )
    assert.deepEqual(
      published(seen, 'store')
        .filter((event) => event.state)
        .map((event) => [event.backend, event.state]),
      [['redis', 'up']],
    )
    stats = auth.stats()
    assert.equal(stats.connections.reconnects, 1)
    assert.equal(auth.health().connections.redis.state, 'up')
    assert.equal(auth.health().connections.redis.lastError, null, 'an answer clears the error')
    assert.ok(auth.health().connections.redis.since >= outage.since)
  })

  test('a user store: round trips and its last outcome', async () => {
    let fail = false
    const userStore = {
      hasUser: async () => true,
      addUser: async () => {
        if (fail) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' })
        return true
      },
    }
    const auth = h.create({ db: null, options: { userStore } })
    await h.login({ openId: 'oStored' }, auth)
    let stats = auth.stats()
    assert.ok(stats.store.userStore.roundTrips >= 1)
    assert.equal(auth.health().connections.userStore.state, 'up')
    fail = true
    assert.equal((await rejection(h.login({ openId: 'oStored2' }, auth))).code, 6000)
    assert.deepEqual(auth.health().connections.userStore.state, 'down')
    assert.equal(auth.health().connections.userStore.lastError, 'failed')
    stats = auth.stats()
    assert.equal(stats.store.userStore.failures, 1)
  })

  test('counted while nobody subscribes; a subscriber of a plain channel alone gets the events, with the call context', async () => {
    const auth = h.create()
    const { response: token } = await h.login({ openId: 'oQuiet' }, auth)
    // With nobody subscribed the check still counts.
    await auth.verifyToken(token)
    assert.equal(auth.stats().calls.verifyToken.calls, 1)
    const seen = await observed([], () => auth.refreshToken('oQuiet'))
    assert.ok(published(seen, 'store').length > 0, 'a subscriber of a plain channel alone gets the events')
    assert.ok(published(seen, 'store').every((event) => event.context.method === 'refreshToken'))
  })
})
