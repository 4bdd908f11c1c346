'use strict'

// What mpauthx 1.3.2 did not have: logout, token claims, code-only login, profile storage.

const assert = require('node:assert/strict')
const path = require('node:path')
const { describe, test } = require('node:test')

const { useHarness, rejection, sql, SKU } = require('./support/harness')

describe('revokeToken', () => {
  const h = useHarness()

  test("never deletes the application's own keys, and checks its argument", async () => {
    const auth = h.create()
    h.redis.cli('SET', 'app|string|key', 'x')
    h.redis.cli('HSET', 'app|hash|key', 'name', 'x')
    for (const key of ['app|string|key', 'app|hash|key', 'not-a-token']) {
      assert.equal((await auth.revokeToken(key)).response, false, key)
    }
    assert.equal(h.redis.cli('EXISTS', 'app|string|key'), '1')
    assert.equal(h.redis.cli('EXISTS', 'app|hash|key'), '1')
    for (const bad of ['', undefined, 42]) assert.equal((await rejection(auth.revokeToken(bad))).code, 6001)
  })
})

describe('verifyToken', () => {
  const h = useHarness()

  test('rejects with 6007 for a dead or foreign token, 6001 without one, 6000 when closed', async () => {
    const auth = h.create()
    const { response: token } = await h.login({ openId: 'oClaimsGone' }, auth)
    await auth.revokeToken(token)
    h.redis.cli('SET', 'app|string|key', 'x')
    for (const dead of [token, 'app|string|key', `oClaimsGone|${SKU}|${'0'.repeat(64)}`, 'x']) {
      assert.equal((await rejection(auth.verifyToken(dead))).code, 6007, dead)
    }
    assert.equal((await rejection(auth.verifyToken(''))).code, 6001)
    await auth.close()
    assert.equal((await rejection(auth.verifyToken(token))).code, 6000)
  })
})

describe('login(code)', () => {
  const h = useHarness()

  test('logs a user in with the code alone, under the same session rules as authorize', async () => {
    const auth = h.create()
    const first = h.wechat.login({ openId: 'oCodeOnly' })
    const { status_code, response: token } = await auth.login(first.code)
    assert.equal(status_code, 1)
    assert.match(token, new RegExp(`^oCodeOnly\\|${SKU}\\|[0-9a-f]{64}$`))
    assert.equal(sql(h.dbFile, "SELECT count(*) FROM user WHERE openId = 'oCodeOnly'"), '1')
    assert.equal((await auth.login(h.wechat.login({ openId: 'oCodeOnly' }).code)).response, token)
    assert.equal((await h.login({ openId: 'oCodeOnly' }, auth)).response, token, 'authorize reuses it too')
  })

  test('the user id is the unionid when WeChat gives one', async () => {
    const auth = h.create()
    const { code } = h.wechat.login({ openId: 'oWithUnion', unionId: 'uUnion1' })
    const { response: token } = await auth.login(code)
    assert.equal(auth.extractOpenId(token), 'uUnion1')
  })

  test('rejects with 6001 without a code and 6008 when WeChat refuses it', async () => {
    const auth = h.create()
    for (const bad of [undefined, '', 7, 'x'.repeat(513)]) assert.equal((await rejection(auth.login(bad))).code, 6001)
    const err = await rejection(auth.login('never-issued'))
    assert.equal(err.code, 6008)
    assert.match(err.message, /40029/)
  })
})

describe('profile storage', () => {
  const h = useHarness()

  const row = (file, openId) => sql(file, `SELECT nickName, gender, language, city, province, country FROM user WHERE openId = '${openId}'`)

  test("authorize writes the profile on the first login and, with profileWrites 'always', updates it on later ones", async () => {
    const auth = h.create({ options: { profileWrites: 'always' } })
    const profile = { nickName: 'Ann', gender: 2, language: 'en', city: 'Hangzhou', province: 'Zhejiang', country: 'CN' }
    const { response: token } = await h.login({ openId: 'oProfile', ...profile }, auth)
    assert.equal(row(h.dbFile, 'oProfile'), 'Ann|2|en|Hangzhou|Zhejiang|CN')
    // A later login with a changed profile, while the token is still live.
    const again = await h.login({ openId: 'oProfile', ...profile, nickName: 'Anna', city: 'Shanghai' }, auth)
    assert.equal(again.response, token)
    assert.equal(row(h.dbFile, 'oProfile'), 'Anna|2|en|Shanghai|Zhejiang|CN')
    // A code-only login has no profile and leaves it as it was.
    await auth.login(h.wechat.login({ openId: 'oProfile' }).code)
    assert.equal(row(h.dbFile, 'oProfile'), 'Anna|2|en|Shanghai|Zhejiang|CN')
  })

  test('fills only the columns the table has, avatarUrl included when present', async () => {
    const withAvatar = path.join(h.dir, 'avatar.db')
    sql(withAvatar, 'CREATE TABLE user(openId text primary key not null, NICKNAME text, avatarUrl text)')
    const avatarUrl = 'https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132'
    await h.login({ openId: 'oAvatar', nickName: 'Bo', avatarUrl }, h.create({ db: withAvatar }))
    assert.equal(sql(withAvatar, "SELECT NICKNAME, avatarUrl FROM user WHERE openId = 'oAvatar'"), `Bo|${avatarUrl}`)

    const bare = path.join(h.dir, 'bare.db')
    sql(bare, 'CREATE TABLE user(openId text)')
    await h.login({ openId: 'oBare', nickName: 'Cy' }, h.create({ db: bare }))
    assert.equal(sql(bare, "SELECT count(*) FROM user WHERE openId = 'oBare'"), '1')
  })

  test('a file without a user table gets the table of the README, profile included', async () => {
    const fresh = path.join(h.dir, 'fresh.db')
    await h.login({ openId: 'oFresh', nickName: 'Di', city: 'Xian' }, h.create({ db: fresh }))
    assert.equal(sql(fresh, "SELECT nickName, city FROM user WHERE openId = 'oFresh'"), 'Di|Xian')
  })
})
