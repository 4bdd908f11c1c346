'use strict'

// The whole API on a real Redis Cluster (3 masters, 3 replicas), including a failover.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { after, before, describe, test } = require('node:test')

const mpauthx = require('..')
const { startRedisCluster } = require('./support/redis-cluster')
const { startWeChat } = require('./support/wechat')
const { rejection, sql, APP_ID, APP_SECRET, SKU } = require('./support/harness')

/** A cluster, the WeChat stand-in and a SQLite file; `create()` makes instances on them. */
function useCluster({ password } = {}) {
  const env = { instances: [] }
  before(async () => {
    env.cluster = await startRedisCluster({ password })
    env.wechat = await startWeChat({ appId: APP_ID, appSecret: APP_SECRET })
    env.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-cluster-'))
    env.dbFile = path.join(env.dir, 'users.db')
  })
  after(async () => {
    await Promise.all(env.instances.map((instance) => instance.close()))
    await env.wechat.stop()
    await env.cluster.stop()
    fs.rmSync(env.dir, { recursive: true, force: true })
  })
  env.create = (options = {}) => {
    const instance = mpauthx(APP_ID, APP_SECRET, SKU, env.dbFile, password ?? null, 3600, {
      redisClusterNodes: env.cluster.urls.slice(0, 2),
      wechatApiBase: env.wechat.base,
      ...options,
    })
    env.instances.push(instance)
    return instance
  }
  env.login = (user, instance) => {
    const { code, encryptedData, iv } = env.wechat.login(user)
    return instance.authorize(code, encryptedData, iv).then((reply) => reply.response)
  }
  /** Live tokens of a user in the whole cluster, read from every master. */
  env.tokensOf = (userId) =>
    env.cluster.nodes
      .filter((node) => !node.killed && /role:master/.test(node.cli('INFO', 'replication')))
      .flatMap((node) => node.cli('KEYS', `${userId}|${SKU}|*`).split('\n').filter(Boolean))
  return env
}

describe('Redis Cluster', () => {
  const env = useCluster()

  test('every method behaves as on a single Redis', async () => {
    const auth = env.create()
    const token = await env.login({ openId: 'oCluster' }, auth)
    assert.match(token, new RegExp(`^oCluster\\|${SKU}\\|[0-9a-f]{64}$`))
    await auth.isTokenValid(token)
    assert.equal(await env.login({ openId: 'oCluster' }, auth), token, 'a live token is reused')
    const { response: fresh } = await auth.refreshToken('oCluster')
    assert.notEqual(fresh, token)
    assert.equal((await rejection(auth.isTokenValid(token))).code, 6007)
    await auth.isTokenValid(fresh)
    assert.equal((await rejection(auth.refreshToken('oNobody'))).code, 6010)
    assert.equal(auth.extractOpenId(fresh), 'oCluster')
    assert.equal(auth.extractSku(fresh), SKU)
    assert.deepEqual(env.tokensOf('oCluster'), [fresh])
  })

  test('tokens spread over every master are checked together', async () => {
    const auth = env.create()
    const tokens = await Promise.all(Array.from({ length: 30 }, (_, i) => env.login({ openId: `oSpread${i}` }, auth)))
    const masters = new Set(tokens.map((token) => env.cluster.masterOf(token).port))
    assert.equal(masters.size, 3, 'the tokens live on all three masters')
    const calls = [...tokens, `oSpread0|${SKU}|${'0'.repeat(64)}`, '']
    const codes = await Promise.all(calls.map((token) => auth.isTokenValid(token).then(() => 1, (err) => err.code)))
    assert.deepEqual(codes, [...tokens.map(() => 1), 6007, 6001])
  })

  test('20 concurrent logins of one new user give one token and one row', async () => {
    const auth = env.create()
    const other = env.create()
    const tokens = await Promise.all(
      Array.from({ length: 20 }, (_, i) => env.login({ openId: 'oClusterRace' }, i % 2 ? auth : other)),
    )
    assert.equal(new Set(tokens).size, 1)
    assert.deepEqual(env.tokensOf('oClusterRace'), [tokens[0]])
    assert.equal(sql(env.dbFile, "SELECT count(*) FROM user WHERE openId = 'oClusterRace'"), '1')
  })

  test('after the master holding a user session dies, its replica serves the user within 10 s', async () => {
    const auth = env.create()
    const token = await env.login({ openId: 'oFailover' }, auth)
    const master = env.cluster.masterOf(`mpauthx|index|${SKU}|oFailover`)
    const replica = env.cluster.replicaOf(master)
    // Redis replicates asynchronously: kill the master once its replica holds every write.
    const offset = (node, field) => Number(node.cli('INFO', 'replication').match(new RegExp(`${field}:(\\d+)`))[1])
    const target = offset(master, 'master_repl_offset')
    const deadline = Date.now() + 10_000
    while (offset(replica, 'slave_repl_offset') < target) {
      assert.ok(Date.now() < deadline, 'the replica caught up')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await env.cluster.kill(master)

    const killedAt = Date.now()
    let served
    while (!served) {
      assert.ok(Date.now() - killedAt < 10_000, 'the instance serves the user again within 10 s')
      served = await env.login({ openId: 'oFailover' }, auth).catch((err) => {
        assert.equal(err.code, 6000, `only store errors while the replica takes over, got ${err.code}: ${err.message}`)
        return new Promise((resolve) => setTimeout(resolve, 200))
      })
    }
    assert.equal(served, token, 'the replica kept the session: the same live token')
    await auth.isTokenValid(token)
    const { response: fresh } = await auth.refreshToken('oFailover')
    await auth.isTokenValid(fresh)
    assert.equal(env.cluster.masterOf(`mpauthx|index|${SKU}|oFailover`).port, replica.port)
  })
})

describe('Redis Cluster with a password', () => {
  const env = useCluster({ password: 'cluster-pass-81c2' })

  test('redisPass applies to every node', async () => {
    const auth = env.create()
    const tokens = await Promise.all(Array.from({ length: 6 }, (_, i) => env.login({ openId: `oPass${i}` }, auth)))
    await Promise.all(tokens.map((token) => auth.isTokenValid(token)))
    const wrong = mpauthx(APP_ID, APP_SECRET, SKU, env.dbFile, 'wrong', 3600, {
      redisClusterNodes: env.cluster.urls,
      wechatApiBase: env.wechat.base,
    })
    env.instances.push(wrong)
    assert.equal((await rejection(wrong.isTokenValid(tokens[0]))).code, 6000)
  })
})
