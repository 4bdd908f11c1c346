'use strict'

// Several Node processes on one SQLite file and one Redis, and several servers (instances
// with their own SQLite files) sharing one Redis.

const assert = require('node:assert/strict')
const path = require('node:path')
const { describe, test } = require('node:test')

const { useHarness, runWorker, rejection, sql, SKU } = require('./support/harness')

/** Runs a backend process that logs in `logins` concurrently; resolves with its outcomes. */
const loginProcess = (h, logins) => runWorker('login', { redisUrl: h.redis.url, wechatApiBase: h.wechat.base, dbFile: h.dbFile, logins })

describe('several processes on one SQLite file and one Redis', () => {
  const h = useHarness()

  test('4 processes logging the same users in at once: one row and one live token per user', async () => {
    const users = Array.from({ length: 12 }, (_, i) => `oProc${i}`)
    // Each process logs every user in three times, all at once.
    const plans = Array.from({ length: 4 }, () =>
      users.flatMap((openId) => Array.from({ length: 3 }, () => ({ openId, ...h.wechat.login({ openId }) }))),
    )
    const results = await Promise.all(
      plans.map((logins) =>
        loginProcess(
          h,
          logins.map(({ code, encryptedData, iv }) => ({ code, encryptedData, iv })),
        ),
      ),
    )
    const tokensByUser = new Map(users.map((user) => [user, new Set()]))
    results.forEach((outcomes, p) =>
      outcomes.forEach((outcome, i) => {
        assert.ok(outcome.token, `process ${p} login ${i} failed: ${outcome.code} ${outcome.message}`)
        tokensByUser.get(plans[p][i].openId).add(outcome.token)
      }),
    )
    for (const [user, tokens] of tokensByUser) {
      assert.equal(tokens.size, 1, `${user} got ${tokens.size} tokens`)
      assert.equal(sql(h.dbFile, `SELECT count(*) FROM user WHERE openId = '${user}'`), '1')
      const live = h.redis.cli('KEYS', `${user}|${SKU}|*`).split('\n').filter(Boolean)
      assert.deepEqual(live, [...tokens])
    }
  })
})

describe('several servers sharing one Redis', () => {
  const h = useHarness()

  test('a server that never saw a user refreshes its token; unknown users stay 6010', async () => {
    const serverA = h.create()
    const otherDb = path.join(h.dir, 'server-b.db')
    const serverB = h.create({ db: otherDb })
    assert.equal((await rejection(serverB.refreshToken('oNeverSeen'))).code, 6010)
    const token = (await h.login({ openId: 'oRoaming' }, serverA)).response
    await serverB.isTokenValid(token)
    // Server B's own SQLite file has never seen the user…
    assert.equal(sql(otherDb, "SELECT count(*) FROM user WHERE openId = 'oRoaming'"), '0')
    const { response: fresh } = await serverB.refreshToken('oRoaming')
    // …and the refresh is the user's one live token everywhere.
    assert.equal((await rejection(serverA.isTokenValid(token))).code, 6007)
    await serverA.isTokenValid(fresh)
    await serverB.isTokenValid(fresh)
  })

  test('a user registered only in SQLite (before the upgrade) is still known to its server', async () => {
    const server = h.create()
    h.sql("INSERT INTO user(openId) VALUES ('oLegacyRow')")
    const { response } = await server.refreshToken('oLegacyRow')
    await server.isTokenValid(response)
    const elsewhere = h.create({ db: path.join(h.dir, 'server-c.db') })
    assert.equal((await rejection(elsewhere.refreshToken('oLegacyRow'))).code, 6010)
  })
})
