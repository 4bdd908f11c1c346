'use strict'

// The validation cache answers most token checks from memory; these tests prove that it
// never answers differently from the store: on a single Redis, on a Redis Cluster (through a
// failover and a slot move) and, without a cache, on the SQLite store. Every deadline below
// is a guarantee of the README, polled for, never slept on.

const assert = require('node:assert/strict')
const diagnosticsChannel = require('node:diagnostics_channel')
const { execFileSync } = require('node:child_process')
const v8 = require('node:v8')
const vm = require('node:vm')
const { after, before, describe, test } = require('node:test')

const { startHarness, rejection, sql, SKU } = require('./support/harness')
const { startTcpProxy } = require('./support/tcp-proxy')
const { waitUntil } = require('./support/redis')
const { answeredFromMemory, startWorker, warmToken, watchToken } = require('./support/checks')

/** How soon every instance rejects a token another one revoked or replaced (README). */
const PROPAGATION_MS = 50
/** How long answers from memory outlive the last heartbeat (src/validation_cache.rs). */
const LEASE_MS = 500

/** The harness (started with `harnessOptions`) as a deployment: its Redis, or its cluster when it has one. */
async function deploymentOf(harnessOptions) {
  const h = await startHarness(harnessOptions)
  return {
    create: (options = {}, ttl = 3600) => h.create({ ttl, options }),
    login: (user, instance) => h.login(user, instance).then((reply) => reply.response),
    nodeOf: (key) => (h.cluster ? h.cluster.masterOf(key) : h.redis),
    workerSettings: { dbFile: h.dbFile, options: { ...h.storeOptions, wechatApiBase: h.wechat.base } },
    cluster: h.cluster,
    h,
    stop: () => h.stop(),
  }
}

/** A single Redis, the WeChat stand-in and a SQLite file. */
const singleRedis = (harnessOptions) => deploymentOf(harnessOptions)
/** A 3+3 Redis Cluster, the WeChat stand-in and a SQLite file. */
const redisCluster = () => deploymentOf({ cluster: true })

/**
 * A deployment made by `start` before the enclosing suite's tests, with a backend in another
 * process on it when `worker` is set (`.worker`), both stopped after them.
 */
function useDeployment(start, { worker = false } = {}) {
  const env = {}
  before(async () => {
    env.deployment = await start()
    if (worker) env.worker = await startWorker(env.deployment.workerSettings)
  })
  after(async () => {
    await env.worker?.stop()
    await env.deployment.stop()
  })
  return env
}

/** An instance whose latest diagnostics are collected in `instance.events`. */
function observed(deployment, options = {}, ttl) {
  const events = []
  const logger = (event) => events.length < 1000 && events.push(event)
  const instance = deployment.create({ ...options, logger }, ttl)
  instance.events = events
  return instance
}

/**
 * `change` makes `token` dead through instance `writer` (or any Redis client); an instance
 * in this process and one in another process, both answering the token from memory, must
 * reject it within PROPAGATION_MS of `change` resolving, and `writer` at once.
 */
async function assertChangeSeenEverywhere({ writer, reader, worker, token, change }) {
  await warmToken(reader, reader.events, token)
  await worker.warm(token)
  const watchers = [watchToken(reader, token), worker.watch(token)]
  await change()
  const resolvedAt = Date.now()
  assert.equal((await rejection(writer.isTokenValid(token))).code, 6007, 'the writer itself rejects at once')
  for (const [where, seen] of [
    ['this process', await watchers[0]],
    ['another process', await watchers[1]],
  ]) {
    assert.equal(seen.code, 6007, `${where}: rejected as not live`)
    assert.ok(
      seen.rejectedAt - resolvedAt <= PROPAGATION_MS,
      `${where}: rejected ${seen.rejectedAt - resolvedAt} ms after the change resolved`,
    )
  }
}

for (const [name, start] of [
  ['a single Redis', singleRedis],
  ['a Redis Cluster', redisCluster],
]) {
  describe(`validation cache on ${name}`, () => {
    const env = useDeployment(start, { worker: true })

    test('checks are answered from memory, and verifyToken from memory says what the store says', async () => {
      const { deployment } = env
      const auth = observed(deployment)
      const token = await deployment.login({ openId: 'oMemory' }, auth)
      const fromStore = (await auth.verifyToken(token)).response
      await warmToken(auth, auth.events, token)
      auth.events.length = 0
      const fromMemory = (await auth.verifyToken(token)).response
      assert.ok(answeredFromMemory(auth.events), 'verifyToken was answered from memory')
      assert.deepEqual({ ...fromMemory, expiresIn: undefined }, { ...fromStore, expiresIn: undefined })
      assert.ok(Math.abs(fromMemory.expiresIn - fromStore.expiresIn) <= 1, 'the same seconds left, give or take one')
    })

    test('a token sharing the last characters of a remembered one is checked in full', async () => {
      const { deployment } = env
      const auth = observed(deployment)
      const token = await deployment.login({ openId: 'oSlot' }, auth)
      await warmToken(auth, auth.events, token)
      // Remembered tokens are looked up by their last characters; these differ elsewhere.
      const hex = token.slice(-64)
      const forged = [
        `${token.slice(0, -64)}${hex[0] === 'a' ? 'b' : 'a'}${hex.slice(1)}`,
        `x${token}`,
        token.slice(1),
        `${token.split('|')[0]}|other|${hex}`,
      ]
      for (const candidate of forged) {
        auth.events.length = 0
        await assert.rejects(auth.isTokenValid(candidate), { code: 6007 }, candidate)
        assert.equal(answeredFromMemory(auth.events), false, candidate)
        // The same through the header, which the integrations compare whole.
        auth.events.length = 0
        await assert.rejects(auth.authenticate({ authorization: `Bearer ${candidate}` }, { anySku: true }), { code: 6007 })
        assert.equal(answeredFromMemory(auth.events), false, `Bearer ${candidate}`)
      }
      auth.events.length = 0
      await auth.isTokenValid(token)
      assert.ok(answeredFromMemory(auth.events), 'the real token is still answered from memory')
      auth.events.length = 0
      const authenticated = await auth.authenticate({ authorization: `Bearer ${token}` })
      assert.equal(authenticated.token, token)
      assert.ok(answeredFromMemory(auth.events), 'and its header too')
      // Revoked: the header remembered with the token is not answered for either.
      await auth.revokeToken(token)
      await assert.rejects(auth.authenticate({ authorization: `Bearer ${token}` }), { code: 6007 })
    })

    test('a token beyond Latin-1 (a sku in Chinese) is answered from memory through its header too', async () => {
      const { deployment } = env
      const events = []
      const shop = deployment.h.create({ sku: '商城', options: { logger: (event) => events.push(event) } })
      shop.events = events
      const token = await deployment.login({ openId: 'oUnicode' }, shop)
      assert.ok(token.includes('|商城|'))
      await warmToken(shop, shop.events, token)
      shop.events.length = 0
      assert.equal((await shop.authenticate({ authorization: `Bearer ${token}` })).token, token)
      assert.ok(answeredFromMemory(shop.events))
      await shop.revokeToken(token)
      await assert.rejects(shop.authenticate({ authorization: `Bearer ${token}` }), { code: 6007 })
    })

    test(`a token revoked, refreshed away or deleted is rejected everywhere within ${PROPAGATION_MS} ms`, async () => {
      const { deployment, worker } = env
      const writer = deployment.create()
      const reader = observed(deployment)
      let token = await deployment.login({ openId: 'oRevoked' }, writer)
      await assertChangeSeenEverywhere({ writer, reader, worker, token, change: () => writer.revokeToken(token) })

      token = await deployment.login({ openId: 'oRefreshed' }, writer)
      await assertChangeSeenEverywhere({ writer, reader, worker, token, change: () => writer.refreshToken('oRefreshed') })

      token = await deployment.login({ openId: 'oDeleted' }, writer)
      const change = async () => deployment.nodeOf(token).cli('DEL', token)
      await assertChangeSeenEverywhere({ writer, reader, worker, token, change })
    })

    test('a token never validates after its TTL, however often it was checked', async () => {
      const { deployment } = env
      const auth = observed(deployment, {}, 2)
      const token = await deployment.login({ openId: 'oExpiring' }, auth)
      const expiresAt = Number(deployment.nodeOf(token).cli('PEXPIRETIME', token))
      await warmToken(auth, auth.events, token)
      const seen = await watchToken(auth, token)
      assert.equal(seen.code, 6007)
      assert.ok(seen.validated > 100, `checked ${seen.validated} times from memory before it expired`)
      assert.ok(seen.lastValidatedAt <= expiresAt, `validated ${seen.lastValidatedAt - expiresAt} ms past its expiry`)
    })

    test('after close(), nothing is answered from memory', async () => {
      const { deployment } = env
      const auth = observed(deployment)
      const token = await deployment.login({ openId: 'oClosing' }, auth)
      await warmToken(auth, auth.events, token)
      await auth.close()
      assert.equal((await rejection(auth.isTokenValid(token))).code, 6000)
      assert.equal((await rejection(auth.verifyToken(token))).code, 6000)
    })

    test('validationCacheSize: 0 answers nothing from memory', async () => {
      const { deployment } = env
      const auth = observed(deployment, { validationCacheSize: 0 })
      const token = await deployment.login({ openId: 'oNoCache' }, auth)
      for (let i = 0; i < 50; i++) await auth.isTokenValid(token)
      await auth.verifyToken(token)
      assert.equal(answeredFromMemory(auth.events), false)
      deployment.nodeOf(token).cli('DEL', token)
      assert.equal((await rejection(auth.isTokenValid(token))).code, 6007)
    })
  })
}

describe("the validation cache's memory, laid out once", () => {
  const env = useDeployment(singleRedis)

  test('validation-cache.js reads the lease and the counters where src/validation_cache.rs keeps them', async () => {
    const { VALIDITY_LEASE_OFFSET: lease, VALIDITY_COUNTERS_OFFSET: counters, VALIDITY_SHARDS: shards } = require('../binding.js')
    const { deployment } = env
    const auth = deployment.create()
    const memory = auth[Symbol.for('mpauthx.testing')].validity()
    // An aligned f64 and 1 + shards aligned u32s, apart, inside the buffer.
    assert.equal(lease % 8, 0)
    assert.equal(counters % 4, 0)
    assert.ok(lease + 8 <= counters || counters + 4 * (1 + shards) <= lease, 'the lease and the counters do not overlap')
    assert.ok(memory.byteLength >= Math.max(lease + 8, counters + 4 * (1 + shards)), `${memory.byteLength} bytes hold them`)
    // The lease is a time on performance.now()'s clock, at most LEASE_MS ahead once a heartbeat is back
    // (the first check opens the tracked connection that heartbeats).
    const token = await deployment.login({ openId: 'oLayout' }, auth)
    await auth.isTokenValid(token)
    const leaseUntil = () => new Float64Array(memory, lease, 1)[0]
    await waitUntil(() => leaseUntil() > performance.now(), 'a heartbeat')
    assert.ok(leaseUntil() <= performance.now() + LEASE_MS, `the lease ends ${leaseUntil() - performance.now()} ms from now`)
    // Revoking a remembered token bumps a counter.
    const sum = () => new Uint32Array(memory, counters, 1 + shards).reduce((total, counter) => total + counter, 0)
    const before = sum()
    await auth.revokeToken(token)
    await waitUntil(() => sum() > before, 'a counter bumped by the revoke')
  })
})

describe('validation cache when the connection is lost', () => {
  const env = useDeployment(singleRedis)

  test('Redis killed: nothing from memory; restarted empty: the old token is unknown, new ones are cached', async () => {
    const { deployment } = env
    const { h } = deployment
    const auth = observed(deployment)
    const token = await deployment.login({ openId: 'oKilled' }, auth)
    await warmToken(auth, auth.events, token)
    await h.redis.stop()
    try {
      const stoppedAt = Date.now()
      // Until the client reads the close of the killed server's connection (milliseconds; at
      // most the lease, as for a silent cut) a check may still be answered from memory, with
      // what Redis said before it died; after that, the store is asked and is down.
      const seen = await watchToken(auth, token)
      assert.equal(seen.code, 6000, 'the store is down: 6000, not an answer from memory')
      assert.ok(seen.rejectedAt - stoppedAt <= LEASE_MS + 100, `answered from memory ${seen.rejectedAt - stoppedAt} ms after the kill`)
      const began = Date.now()
      const err = await rejection(auth.isTokenValid(token))
      assert.equal(err.code, 6000)
      assert.ok(Date.now() - began < 2000, 'within 2 s')
    } finally {
      await h.redis.start()
    }

    await waitUntil(
      () =>
        auth.isTokenValid(token).then(
          () => assert.fail('a token of the lost Redis validated'),
          (err) => err.code === 6007,
        ),
      'recovery',
      10_000,
    )
    const fresh = await deployment.login({ openId: 'oKilled' }, auth)
    assert.notEqual(fresh, token)
    await warmToken(auth, auth.events, fresh)
  })

  test(`a silent network cut: nothing from memory once the ${LEASE_MS} ms lease is over, and nothing stale after it heals`, async () => {
    const { deployment } = env
    const { h } = deployment
    const proxy = await startTcpProxy(h.redis.port)
    try {
      const auth = observed(deployment, { redisUrl: `redis://127.0.0.1:${proxy.port}` })
      const token = await deployment.login({ openId: 'oCut' }, auth)
      await warmToken(auth, auth.events, token)
      proxy.freeze()
      const cutAt = Date.now()
      h.redis.cli('DEL', token)
      // Checks may be answered from memory until the lease ends; none may validate after it.
      const seen = await watchToken(auth, token)
      assert.equal(seen.code, 6000, 'the store cannot be reached: 6000')
      assert.ok(seen.rejectedAt - cutAt <= LEASE_MS + 100, `answered from memory ${seen.rejectedAt - cutAt} ms into the cut`)
      proxy.thaw()
      await waitUntil(
        () =>
          auth.isTokenValid(token).then(
            () => assert.fail('the deleted token validated'),
            (err) => err.code === 6007,
          ),
        'the network to heal',
        10_000,
      )
    } finally {
      await proxy.stop()
    }
  })
})

describe('validation cache through a failover and a slot move', () => {
  const env = useDeployment(redisCluster, { worker: true })

  test('after a failover, the new master keeps every instance exact', async () => {
    const { deployment, worker } = env
    const { cluster } = deployment
    const writer = deployment.create()
    const reader = observed(deployment)
    const token = await deployment.login({ openId: 'oFailover' }, writer)
    await warmToken(reader, reader.events, token)
    await worker.warm(token)
    const master = cluster.masterOf(token)
    const replica = cluster.replicaOf(master)
    // Redis replicates asynchronously: kill the master once its replica holds every write.
    const offset = (node, field) => Number(node.cli('INFO', 'replication').match(new RegExp(`${field}:(\\d+)`))[1])
    const target = offset(master, 'master_repl_offset')
    await waitUntil(() => offset(replica, 'slave_repl_offset') >= target, 'the replica to catch up')
    await cluster.kill(master)
    await waitUntil(() => cluster.masterOf(token)?.port === replica.port, 'the replica to take over', 15_000)
    await waitUntil(
      () =>
        reader.isTokenValid(token).then(
          () => true,
          () => false,
        ),
      'the reader to serve again',
      10_000,
    )
    await assertChangeSeenEverywhere({ writer, reader, worker, token, change: () => writer.revokeToken(token) })
  })

  test('after a slot moves to another master, invalidations come from the new one', async () => {
    const { deployment, worker } = env
    const { cluster } = deployment
    const writer = deployment.create()
    const reader = observed(deployment)
    const token = await deployment.login({ openId: 'oMoved' }, writer)
    await warmToken(reader, reader.events, token)
    await worker.warm(token)
    const from = cluster.masterOf(token)
    const to = cluster.nodes.find((node) => !node.killed && node !== from && cluster.isMaster(node))
    cluster.moveSlotOf(token, from, to)
    assert.equal(cluster.masterOf(token).port, to.port)
    await waitUntil(
      () =>
        reader.isTokenValid(token).then(
          () => true,
          () => false,
        ),
      'the moved token to validate',
      10_000,
    )
    await warmToken(reader, reader.events, token)
    await worker.warm(token)
    await assertChangeSeenEverywhere({ writer, reader, worker, token, change: () => writer.revokeToken(token) })
  })
})

describe('a Redis that cannot track', () => {
  const checkedWithoutMemory = async (deployment, auth) => {
    const token = await deployment.login({ openId: 'oUntracked' }, auth)
    for (let i = 0; i < 20; i++) await auth.isTokenValid(token)
    assert.equal((await auth.verifyToken(token)).response.openId, 'oUntracked')
    assert.equal(answeredFromMemory(auth.events), false)
    deployment.nodeOf(token).cli('DEL', token)
    assert.equal((await rejection(auth.isTokenValid(token))).code, 6007)
    assert.equal((await rejection(auth.verifyToken(token))).code, 6007)
  }

  test('a server without RESP3 (HELLO unknown, as before Redis 6): every check goes to the store', async () => {
    const deployment = await singleRedis({ redisArgs: ['--rename-command', 'HELLO', 'HELLO_RENAMED_BY_TEST'] })
    try {
      await checkedWithoutMemory(deployment, observed(deployment))
    } finally {
      await deployment.stop()
    }
  })

  test('a user not allowed CLIENT: every check goes to the store, and diagnostics say the cache is off', async () => {
    const deployment = await singleRedis()
    try {
      const { redis } = deployment.h
      redis.cli('ACL', 'SETUSER', 'app', 'on', '>app-pass', '~*', '+@all', '-client')
      const auth = observed(deployment, { redisUrl: `redis://app:app-pass@127.0.0.1:${redis.port}` })
      // The `mpauthx:cache` channel says so too, once, and stats() and health() stay so.
      const changes = []
      const onCache = (event) => event.state && changes.push([event.context.method, event.state])
      diagnosticsChannel.subscribe('mpauthx:cache', onCache)
      try {
        await checkedWithoutMemory(deployment, auth)
      } finally {
        diagnosticsChannel.unsubscribe('mpauthx:cache', onCache)
      }
      const off = auth.events.filter((event) => event.step === 'cache.off')
      assert.equal(off.length, 1, 'one diagnostics line when the cache turns off')
      assert.match(off[0].detail, /^validation cache off: Redis refused .* 3 times in a row; every check goes to Redis$/)
      assert.equal(changes.length, 1, JSON.stringify(changes))
      assert.equal(changes[0][1], 'off')
      assert.equal(auth.stats().validationCache.on, false)
      assert.deepEqual(auth.health().validationCache, { on: false })
    } finally {
      await deployment.stop()
    }
  })
})

describe('the SQLite store answers nothing from memory', () => {
  let h
  let worker
  before(async () => {
    h = await startHarness()
    worker = await startWorker({ dbFile: h.dbFile, options: { tokenStore: 'sqlite', wechatApiBase: h.wechat.base } })
  })
  after(async () => {
    await worker.stop()
    await h.stop()
  })

  test('a token revoked by another process is rejected at the next check', async () => {
    const events = []
    const auth = h.create({ options: { tokenStore: 'sqlite', logger: (event) => events.push(event) } })
    const token = (await h.login({ openId: 'oSqlite' }, auth)).response
    for (let i = 0; i < 20; i++) await auth.isTokenValid(token)
    assert.equal(answeredFromMemory(events), false)
    const watched = worker.watch(token)
    sql(h.dbFile, `DELETE FROM mpauthx_session WHERE token = '${token}'`)
    const deletedAt = Date.now()
    const seen = await watched
    assert.equal(seen.code, 6007)
    assert.ok(seen.rejectedAt - deletedAt <= PROPAGATION_MS)
    assert.equal((await rejection(auth.isTokenValid(token))).code, 6007)
  })
})

/**
 * Checks a million distinct live tokens, made beforehand by `makeTokens(count, tokenOf)`,
 * on `auth`; fails unless RSS stays flat after the first 200,000.
 */
async function assertMemoryFlat(auth, makeTokens) {
  const count = 1_000_000
  const tokenOf = (i) => `oMany${i}|${SKU}|${i.toString(16).padStart(64, '0')}`
  await makeTokens(count, tokenOf)
  const checkRange = async (from, to) => {
    for (let start = from; start < to; start += 1024) {
      const batch = []
      for (let i = start; i < Math.min(start + 1024, to); i++) batch.push(auth.isTokenValid(tokenOf(i)))
      await Promise.all(batch)
    }
  }
  // Garbage the checks leave behind is collected first, so that only what is kept counts.
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc')
  await checkRange(0, 200_000)
  gc()
  const warm = process.memoryUsage().rss
  await checkRange(200_000, count)
  gc()
  const grown = (process.memoryUsage().rss - warm) / 2 ** 20
  assert.ok(grown < 40, `RSS grew by ${grown.toFixed(1)} MiB over 800,000 more distinct tokens`)
}

describe('memory stays bounded', () => {
  let h
  before(async () => {
    h = await startHarness()
  })
  after(() => h.stop())

  test('a million checks of distinct live tokens leave RSS flat', async () => {
    await assertMemoryFlat(h.create(), async (count) => {
      const hset = `redis.call('HSET', string.format('oMany%d|${SKU}|%064x', i, i), 'ctime', '1')`
      h.redis.cli('EVAL', `for i = 0, ${count - 1} do ${hset} end`, '0')
    })
  })

  test('validationCacheSize must be a whole number from 0', () => {
    for (const bad of [-1, 1.5, Infinity]) {
      assert.throws(() => h.create({ options: { validationCacheSize: bad } }), RangeError)
    }
    assert.throws(() => h.create({ options: { validationCacheSize: '10' } }), TypeError)
  })
})

describe('validation cache on a Redis Cluster: memory and a lost shard', () => {
  const env = useDeployment(redisCluster)

  test('a million checks of distinct live tokens leave RSS flat', async () => {
    const { deployment } = env
    const { cluster } = deployment
    await assertMemoryFlat(deployment.create(), async (count, tokenOf) => {
      // Written to each master with redis-cli's mass insertion, keys sorted by slot owner.
      const protocol = new Map()
      const owner = cluster.slotOwners()
      for (let i = 0; i < count; i++) {
        const token = tokenOf(i)
        const node = owner[keySlot(token)]
        if (!protocol.has(node)) protocol.set(node, [])
        protocol.get(node).push(`*4\r\n$4\r\nHSET\r\n$${token.length}\r\n${token}\r\n$5\r\nctime\r\n$1\r\n1\r\n`)
      }
      for (const [node, commands] of protocol) {
        execFileSync('redis-cli', ['-p', String(node.port), '--pipe'], { input: commands.join(''), stdio: ['pipe', 'ignore', 'inherit'] })
      }
    })
  })

  test('a shard lost: nothing from memory; back empty: its tokens are unknown', async () => {
    const { deployment } = env
    const { cluster } = deployment
    const auth = observed(deployment)
    const token = await deployment.login({ openId: 'oShardLost' }, auth)
    await warmToken(auth, auth.events, token)
    const master = cluster.masterOf(token)
    const replica = cluster.replicaOf(master)
    await cluster.kill(replica)
    await cluster.kill(master)
    const began = Date.now()
    assert.equal((await rejection(auth.isTokenValid(token))).code, 6000, 'the shard is down: 6000, not an answer from memory')
    assert.ok(Date.now() - began < 2000, 'within 2 s')
    await cluster.revive(master)
    await cluster.revive(replica)
    await waitUntil(
      () =>
        auth.isTokenValid(token).then(
          () => assert.fail('a token of the lost shard validated'),
          (err) => err.code === 6007,
        ),
      'the shard to come back',
      20_000,
    )
  })
})

/** The hash slot of a key without hash tags: CRC16 (XMODEM) mod 16384, as Redis computes it. */
function keySlot(key) {
  let crc = 0
  for (const byte of Buffer.from(key)) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % 16384
}
