'use strict'

// Redis Sentinel (options.redisSentinel): a master, a replica and three sentinels started
// here; the master killed with SIGKILL, the instance following the sentinels by itself.

const assert = require('node:assert/strict')
const { after, before, describe, test } = require('node:test')

const { startHarness, rejection } = require('./support/harness')
const { waitUntil } = require('./support/redis')
const { startRedisSentinel } = require('./support/redis-sentinel')

describe('Redis Sentinel', () => {
  const env = {}
  before(async () => {
    env.harness = await startHarness()
    env.sentinel = await startRedisSentinel()
  })
  after(async () => {
    await env.harness.stop()
    await env.sentinel.stop()
  })

  const create = (options = {}) =>
    env.harness.create({
      options: { redisUrl: undefined, redisSentinel: { nodes: env.sentinel.urls, masterName: env.sentinel.masterName }, ...options },
    })

  test('a whole login flow on the master the sentinels name', async () => {
    const auth = create()
    const { response: token } = await env.harness.login({ openId: 'oSentinel' }, auth)
    await auth.isTokenValid(token)
    assert.equal(env.sentinel.master.cli('EXISTS', token), '1', 'the token is on the master')
  })

  test('when the master dies, the same instance serves again within 10 s of the switch, with every session', async () => {
    const { harness, sentinel } = env
    const auth = create()
    const tokens = []
    for (let i = 0; i < 10; i++) tokens.push((await harness.login({ openId: `oFailover${i}` }, auth)).response)
    await Promise.all(tokens.map((token) => auth.isTokenValid(token)))
    // Every session is on the replica before the master goes.
    assert.equal(sentinel.master.cli('WAIT', '1', '5000'), '1')
    const oldMaster = sentinel.masterPort()
    await sentinel.master.stop()
    await waitUntil(() => sentinel.masterPort() === sentinel.replica.port, 'the sentinels to promote the replica', 30000)
    assert.notEqual(sentinel.masterPort(), oldMaster)
    await waitUntil(
      async () => (await Promise.allSettled(tokens.map((token) => auth.isTokenValid(token)))).every((o) => o.status === 'fulfilled'),
      'every session to validate on the new master',
      10000,
    )
    // The new master takes writes: a login, a refresh and a revoke.
    const { response: fresh } = await harness.login({ openId: 'oAfterFailover' }, auth)
    await auth.isTokenValid(fresh)
    const { response: refreshed } = await auth.refreshToken(tokens[0].split('|')[0])
    assert.equal((await rejection(auth.isTokenValid(tokens[0]))).code, 6007)
    assert.equal((await auth.revokeToken(refreshed)).response, true)
    assert.equal(sentinel.replica.cli('EXISTS', fresh), '1', 'written to the promoted replica')
  })

  test('errors name the master and the sentinels and say what went wrong', async () => {
    const { harness, sentinel } = env
    const { freePort } = require('./support/redis')
    const dead = await freePort()
    const failure = async (redisSentinel) => {
      const auth = harness.create({ options: { redisUrl: undefined, redisSentinel, validationCacheSize: 0 } })
      const err = await rejection(auth.isTokenValid(`1|testsku|${'a'.repeat(64)}`))
      assert.equal(err.code, 6000)
      assert.equal(err.message, 'store error: Redis is unavailable')
      return err.detail
    }
    assert.match(
      await failure({ nodes: sentinel.urls, masterName: 'nosuchmaster' }),
      /Redis master "nosuchmaster" of the sentinels at 127\.0\.0\.1:\d+, .*: no master is known to the sentinels/,
    )
    assert.match(
      await failure({ nodes: [`redis://127.0.0.1:${dead}`], masterName: 'mymaster' }),
      new RegExp(`of the sentinels at 127\\.0\\.0\\.1:${dead}: connection refused`),
    )
  })

  test('redisSentinel with redisUrl, no nodes or no master name is refused at creation', () => {
    const { harness, sentinel } = env
    const make = (options) => () => harness.create({ options })
    assert.throws(make({ redisSentinel: { nodes: sentinel.urls, masterName: 'mymaster' } }), { name: 'RangeError', message: /one of/ })
    assert.throws(make({ redisUrl: undefined, redisSentinel: { nodes: [], masterName: 'mymaster' } }), { name: 'RangeError' })
    assert.throws(make({ redisUrl: undefined, redisSentinel: { nodes: sentinel.urls } }), { name: 'TypeError', message: /masterName/ })
  })
})
