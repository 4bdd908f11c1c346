'use strict'

// The whole API on a real Redis Cluster (3 masters, 3 replicas), including a failover; the
// session rules themselves run on a cluster in sessions.test.js.

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')

const { useCluster, rejection, SKU } = require('./support/harness')
const { waitUntil } = require('./support/redis')

describe('Redis Cluster', () => {
  const h = useCluster()
  const login = (user, instance) => h.login(user, instance).then((reply) => reply.response)

  test('every method behaves as on a single Redis', async () => {
    const auth = h.create()
    const token = await login({ openId: 'oCluster' }, auth)
    assert.match(token, new RegExp(`^oCluster\\|${SKU}\\|[0-9a-f]{64}$`))
    await auth.isTokenValid(token)
    assert.equal(await login({ openId: 'oCluster' }, auth), token, 'a live token is reused')
    const { response: fresh } = await auth.refreshToken('oCluster')
    assert.notEqual(fresh, token)
    assert.equal((await rejection(auth.isTokenValid(token))).code, 6007)
    await auth.isTokenValid(fresh)
    assert.equal((await rejection(auth.refreshToken('oNobody'))).code, 6010)
    assert.equal(auth.extractOpenId(fresh), 'oCluster')
    assert.equal(auth.extractSku(fresh), SKU)
    assert.deepEqual(h.tokensOf('oCluster'), [fresh])
  })

  test('tokens spread over every master are checked together', async () => {
    const auth = h.create()
    const tokens = await Promise.all(Array.from({ length: 30 }, (_, i) => login({ openId: `oSpread${i}` }, auth)))
    const masters = new Set(tokens.map((token) => h.cluster.masterOf(token).port))
    assert.equal(masters.size, 3, 'the tokens live on all three masters')
    const calls = [...tokens, `oSpread0|${SKU}|${'0'.repeat(64)}`, '']
    const codes = await Promise.all(
      calls.map((token) =>
        auth.isTokenValid(token).then(
          () => 1,
          (err) => err.code,
        ),
      ),
    )
    assert.deepEqual(codes, [...tokens.map(() => 1), 6007, 6001])
  })

  test('after the master holding a user session dies, its replica serves the user within 10 s', async () => {
    const auth = h.create()
    const token = await login({ openId: 'oFailover' }, auth)
    const master = h.cluster.masterOf(`mpauthx|index|${SKU}|oFailover`)
    const replica = h.cluster.replicaOf(master)
    // Redis replicates asynchronously: kill the master once its replica holds every write.
    const offset = (node, field) => Number(node.cli('INFO', 'replication').match(new RegExp(`${field}:(\\d+)`))[1])
    const target = offset(master, 'master_repl_offset')
    await waitUntil(() => offset(replica, 'slave_repl_offset') >= target, 'the replica to catch up', 10_000)
    await h.cluster.kill(master)

    let served
    await waitUntil(
      async () => {
        served = await login({ openId: 'oFailover' }, auth).catch((err) => {
          assert.equal(err.code, 6000, `only store errors while the replica takes over, got ${err.code}: ${err.message}`)
        })
        return served
      },
      'the instance to serve the user again within 10 s',
      10_000,
    )
    assert.equal(served, token, 'the replica kept the session: the same live token')
    await auth.isTokenValid(token)
    const { response: fresh } = await auth.refreshToken('oFailover')
    await auth.isTokenValid(fresh)
    assert.equal(h.cluster.masterOf(`mpauthx|index|${SKU}|oFailover`).port, replica.port)
  })
})

describe('Redis Cluster with a password', () => {
  const h = useCluster({ password: 'cluster-pass-81c2' })

  test('redisPass applies to every node', async () => {
    const auth = h.create()
    const tokens = await Promise.all(Array.from({ length: 6 }, (_, i) => h.login({ openId: `oPass${i}` }, auth)))
    await Promise.all(tokens.map(({ response: token }) => auth.isTokenValid(token)))
    const wrong = h.create({ redisPass: 'wrong', options: { redisClusterNodes: h.cluster.urls } })
    assert.equal((await rejection(wrong.isTokenValid(tokens[0].response))).code, 6000)
  })
})
