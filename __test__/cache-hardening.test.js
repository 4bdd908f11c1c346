'use strict'

// What anonymous traffic and a stalling Redis can do to the validation cache: made-up tokens
// must cost Redis nothing (no tracking entries, no memory), and short stalls must not switch
// the fast path off for good.

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { describe, test } = require('node:test')

const { useHarness, rejection, SKU } = require('./support/harness')
const { startWorker, warmToken } = require('./support/checks')
const { startTcpProxy } = require('./support/tcp-proxy')

/** libfaketime for multi-threaded programs, which `.ci/run` installs (Debian's faketime). */
const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1'

/** A field of `INFO` as a number. */
const info = (redis, section, field) => Number(new RegExp(`^${field}:(\\d+)`, 'm').exec(redis.cli('INFO', section))[1])

/** An instance whose diagnostics events are collected in `instance.events`. */
function observed(h, options = {}) {
  const events = []
  const instance = h.create({ options: { ...options, logger: (event) => events.length < 10000 && events.push(event) } })
  instance.events = events
  return instance
}

describe('made-up tokens cost Redis nothing', () => {
  const h = useHarness()

  test('50,000 checks of random well-formed tokens leave no tracking entries and no memory; live tokens are still answered from memory', async () => {
    const auth = observed(h)
    const live = (await h.login({ openId: 'oLiveAmongForged' }, auth)).response
    await warmToken(auth, auth.events, live)
    const memoryBefore = info(h.redis, 'memory', 'used_memory')
    const trackedBefore = info(h.redis, 'stats', 'tracking_total_keys')
    for (let round = 0; round < 50; round++) {
      const forged = Array.from(
        { length: 1000 },
        () => `o${crypto.randomBytes(14).toString('hex')}|${SKU}|${crypto.randomBytes(32).toString('hex')}`,
      )
      const outcomes = await Promise.allSettled(forged.map((token) => auth.isTokenValid(token)))
      assert.ok(outcomes.every((outcome) => outcome.status === 'rejected' && outcome.reason.code === 6007))
    }
    const grown = info(h.redis, 'memory', 'used_memory') - memoryBefore
    const tracked = info(h.redis, 'stats', 'tracking_total_keys') - trackedBefore
    assert.ok(grown < 2 * 1024 * 1024, `Redis grew by ${grown} bytes`)
    assert.ok(tracked < 1000, `${tracked} more keys tracked`)
    auth.events.length = 0
    await warmToken(auth, auth.events, live)
  })

  test('a token longer than 260 bytes is rejected 6007 without a Redis call; ids and skus too long for one are refused 6001', async () => {
    const auth = h.create()
    // The commands a check reads tokens with (the heartbeat's PINGs go on meanwhile).
    const stats = () =>
      h.redis
        .cli('INFO', 'commandstats')
        .split('\n')
        .filter((line) => /^cmdstat_(eval|evalsha|hexists|hget|hmget|pttl):/.test(line))
        .map((line) => line.replace(/,usec.*$/, ''))
        .join('\n')
    const before = stats()
    const long = `o${'x'.repeat(200)}|${SKU}|${'a'.repeat(64)}`
    assert.ok(long.length > 260)
    for (const call of [() => auth.isTokenValid(long), () => auth.verifyToken(long)]) {
      assert.equal((await rejection(call())).code, 6007)
    }
    assert.equal(stats(), before, 'Redis was not asked')
    const longId = `o${'i'.repeat(128)}`
    const { code } = h.wechat.login({ openId: longId })
    assert.equal((await rejection(auth.login(code))).code, 6001)
    assert.equal((await rejection(auth.refreshToken(longId))).code, 6001)
    const longSku = h.create({ sku: 's'.repeat(65) })
    const err = await rejection(longSku.login(h.wechat.login({ openId: 'oShortId' }).code))
    assert.equal(err.code, 6001)
    assert.match(err.detail, /sku is longer than 64 bytes/)
    // The longest accepted: a 128-byte id and a 64-byte sku.
    const longest = h.create({ sku: 's'.repeat(64) })
    const token = (await longest.login(h.wechat.login({ openId: `o${'i'.repeat(127)}` }).code)).response
    await longest.isTokenValid(token)
  })
})

describe('short stalls do not switch the cache off', () => {
  const h = useHarness()

  test('three CLIENT PAUSE stalls, each met by a check of an unseen token; a remembered token is answered from memory again within seconds', async () => {
    const auth = observed(h)
    const remembered = (await h.login({ openId: 'oRemembered' }, auth)).response
    await warmToken(auth, auth.events, remembered)
    for (let stall = 0; stall < 3; stall++) {
      const unseen = (await h.login({ openId: `oUnseen${stall}` }, h.create())).response
      h.redis.cli('CLIENT', 'PAUSE', '800')
      // The check may be answered or fail while Redis stalls; what matters is what comes after.
      await auth.isTokenValid(unseen).catch(() => {})
    }
    auth.events.length = 0
    await warmToken(auth, auth.events, remembered, 5000)
    assert.ok(!auth.events.some((event) => event.step === 'cache.off'))
  })
})

describe('a wall clock stepped back never stretches answers from memory', () => {
  const h = useHarness()

  test('with the clock 60 s back and Redis cut off, a revoked token is answered from memory for at most the lease', async () => {
    assert.ok(fs.existsSync(LIBFAKETIME), `${LIBFAKETIME} is missing: apt-get install faketime`)
    const proxy = await startTcpProxy(h.redis.port)
    // The worker's wall clock follows this file; its monotonic clock is left alone.
    const clock = path.join(h.dir, 'faketime')
    fs.writeFileSync(clock, '+0\n')
    const env = {
      ...process.env,
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME_TIMESTAMP_FILE: clock,
      FAKETIME_NO_CACHE: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    }
    const worker = await startWorker(
      { dbFile: h.dbFile, options: { redisUrl: `redis://127.0.0.1:${proxy.port}`, wechatApiBase: h.wechat.base } },
      env,
    )
    try {
      const writer = h.create()
      const token = (await h.login({ openId: 'oClockStep' }, writer)).response
      await worker.warm(token)
      fs.writeFileSync(clock, '-60\n')
      await worker.warm(token)
      proxy.freeze()
      await writer.revokeToken(token)
      // watch() checks back to back until a check rejects (6000: Redis cannot be reached);
      // timed here, on this process's clock (the worker's wall clock is the one stepped).
      const cutAt = Date.now()
      const { code } = await worker.watch(token)
      const answeredFor = Date.now() - cutAt
      assert.equal(code, 6000)
      assert.ok(answeredFor < 4000, `answered for ${answeredFor} ms after Redis was cut off`)
    } finally {
      proxy.thaw()
      await worker.stop()
      await proxy.stop()
    }
  })
})
