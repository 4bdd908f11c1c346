'use strict'

const assert = require('node:assert/strict')
const { before, describe, test } = require('node:test')

const { startHarness, useHarness, rejection, APP_ID, APP_SECRET, SKU } = require('./support/harness')

const TOKEN = /^([^|]+)\|([^|]*)\|([0-9a-f]{64})$/

describe('authorize', () => {
  const h = useHarness()
  let auth
  before(() => {
    auth = h.create()
  })

  const login = (user, instance = auth) => h.login(user, instance)

  test('a new user gets a token, a user row, and a hash with ctime and TTL in Redis', async () => {
    const before = Date.now()
    const reply = await login({ openId: 'oNewUser' })
    assert.equal(reply.status_code, 1)
    assert.equal(reply.status_message, 'OK')
    const [, userId, sku] = reply.response.match(TOKEN)
    assert.equal(userId, 'oNewUser')
    assert.equal(sku, SKU)
    assert.equal(h.sql("SELECT count(*) FROM user WHERE openId = 'oNewUser'"), '1')
    const ctime = Number(h.redis.cli('HGET', reply.response, 'ctime'))
    assert.ok(ctime >= before && ctime <= Date.now(), `ctime ${ctime}`)
    const ttl = Number(h.redis.cli('TTL', reply.response))
    assert.ok(ttl > 3590 && ttl <= 3600, `TTL ${ttl}`)
    await auth.isTokenValid(reply.response)
  })

  test('jscode2session is called with every value URL-encoded', async () => {
    const { encryptedData, iv } = h.wechat.login({ openId: 'oEncoded' })
    const seen = h.wechat.requests.length
    const err = await rejection(auth.authorize('a b&c=d/é', encryptedData, iv))
    assert.equal(err.code, 6008)
    const url = h.wechat.requests[seen]
    assert.equal(url.searchParams.get('js_code'), 'a b&c=d/é')
    assert.equal(url.searchParams.get('appid'), APP_ID)
    assert.equal(url.searchParams.get('secret'), APP_SECRET)
    assert.equal(url.searchParams.get('grant_type'), 'authorization_code')
  })

  test('a returning user gets the same live token', async () => {
    const first = await login({ openId: 'oReturning' })
    const second = await login({ openId: 'oReturning' })
    assert.equal(second.response, first.response)
    assert.equal(h.sql("SELECT count(*) FROM user WHERE openId = 'oReturning'"), '1')
  })

  test('the unionId is the user id when WeChat gives one', async () => {
    const reply = await login({ openId: 'oWithUnion', unionId: 'uUnion1' })
    assert.equal(auth.extractOpenId(reply.response), 'uUnion1')
    assert.equal(h.sql("SELECT count(*) FROM user WHERE openId = 'uUnion1'"), '1')
    assert.equal(h.sql("SELECT count(*) FROM user WHERE openId = 'oWithUnion'"), '0')
  })

  test('skus are separate: one user holds one token per sku', async () => {
    const other = h.create({ sku: 'othersku' })
    const a = await login({ openId: 'oTwoSkus' })
    const b = await login({ openId: 'oTwoSkus' }, other)
    assert.notEqual(a.response, b.response)
    assert.equal(other.extractSku(b.response), 'othersku')
    assert.equal((await login({ openId: 'oTwoSkus' })).response, a.response)
    assert.equal((await login({ openId: 'oTwoSkus' }, other)).response, b.response)
  })

  test('instances with different app ids keep their own credentials', async () => {
    const mpauthx = require('..')
    const other = mpauthx('wxOtherApp', 'other-secret', SKU, h.dbFile, null, 60, {
      redisUrl: h.redis.url,
      wechatApiBase: h.wechat.base,
    })
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oTwoApps' })
    const seen = h.wechat.requests.length
    const err = await rejection(other.authorize(code, encryptedData, iv))
    assert.equal(err.code, 6008)
    assert.equal(h.wechat.requests[seen].searchParams.get('appid'), 'wxOtherApp')
    await other.close()
    const reply = await auth.authorize(h.wechat.login({ openId: 'oTwoApps' }).code, encryptedData, iv).catch((e) => e)
    assert.equal(reply.code, 6011, 'the first login data belongs to the other session key')
    const fresh = h.wechat.login({ openId: 'oTwoApps' })
    assert.equal(auth.extractOpenId((await auth.authorize(fresh.code, fresh.encryptedData, fresh.iv)).response), 'oTwoApps')
  })

  test('the official WeChat test vector logs its unionId in', async () => {
    const vector = await startHarness({ appId: 'wx4f4bc4dec97d474b' })
    try {
      const code = vector.wechat.replyJson({
        openid: 'oGZUI0egBJY1zhBYw2KhdUfwVJJE',
        session_key: 'tiihtNczf5v6AKRyjwEUhQ==',
      })
      const encryptedData =
        'CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew=='
      const reply = await vector.create().authorize(code, encryptedData, 'r7BXXKkLb8qrSNn05n0qiA==')
      assert.match(reply.response, /^ocMvos6NjeKLIBqg5Mr9QjxrP1FA\|testsku\|[0-9a-f]{64}$/)
    } finally {
      await vector.stop()
    }
  })

  test('missing or non-string parameters reject with 6001 naming the parameter', async () => {
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oParams' })
    const cases = [
      [[undefined, encryptedData, iv], 'code'],
      [[null, encryptedData, iv], 'code'],
      [['', encryptedData, iv], 'code'],
      [[42, encryptedData, iv], 'code'],
      [[code, undefined, iv], 'encryptedData'],
      [[code, {}, iv], 'encryptedData'],
      [[code, encryptedData, ''], 'iv'],
      [[code, encryptedData, Buffer.from('x')], 'iv'],
    ]
    for (const [args, name] of cases) {
      const err = await rejection(auth.authorize(...args))
      assert.ok(err instanceof Error)
      assert.equal(err.code, 6001, name)
      assert.match(err.message, new RegExp(name))
    }
  })

  test('jscode2session failures reject with 6008 and say which', async () => {
    const { encryptedData, iv } = h.wechat.login({ openId: 'oWeChatFails' })
    const cases = [
      ['unknown-code', /40029/],
      [h.wechat.replyJson({ errcode: -1, errmsg: 'system error' }), /-1.*system error/],
      [h.wechat.replyJson({ errcode: 45011, errmsg: 'api minute-quota reach limit' }), /45011/],
      [h.wechat.reply((req, res) => res.writeHead(502).end('bad gateway')), /502/],
      [h.wechat.reply((req, res) => res.writeHead(200).end('<html>busy</html>')), /JSON/],
      [h.wechat.replyJson({ openid: 'oX' }), /session_key/],
    ]
    for (const [code, message] of cases) {
      const err = await rejection(auth.authorize(code, encryptedData, iv))
      assert.equal(err.code, 6008, String(message))
      assert.match(err.message, message)
      assert.ok(!err.message.includes(APP_SECRET), 'the app secret must not leak')
    }
  })

  test('a used code rejects with 6008 (40163)', async () => {
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oCodeTwice' })
    await auth.authorize(code, encryptedData, iv)
    const err = await rejection(auth.authorize(code, encryptedData, iv))
    assert.equal(err.code, 6008)
    assert.match(err.message, /40163/)
  })

  test('an unreachable or silent WeChat rejects with 6008 within httpTimeoutMs', async () => {
    const { encryptedData, iv } = h.wechat.login({ openId: 'oSlow' })
    const refused = h.create({ options: { wechatApiBase: 'http://127.0.0.1:1' } })
    const err = await rejection(refused.authorize('c', encryptedData, iv))
    assert.equal(err.code, 6008)
    assert.match(err.message, /connection/)

    const hanging = h.wechat.reply(() => {})
    const quick = h.create({ options: { httpTimeoutMs: 300 } })
    const timedOut = await rejection(quick.authorize(hanging, encryptedData, iv))
    assert.equal(timedOut.code, 6008)
    assert.match(timedOut.message, /timed out after 300 ms/)
  })

  test('undecryptable user data rejects with 6011', async () => {
    const good = h.wechat.login({ openId: 'oDecrypt' })
    const cases = [
      ['not base64 !!', good.iv],
      [good.encryptedData, 'c2hvcnQ='],
      [Buffer.alloc(17).toString('base64'), good.iv],
      [good.encryptedData, Buffer.alloc(16, 1).toString('base64')],
    ]
    for (const [encryptedData, iv] of cases) {
      const { code } = h.wechat.login({ openId: 'oDecrypt' })
      const err = await rejection(auth.authorize(code, encryptedData, iv))
      assert.equal(err.code, 6011, `${encryptedData.slice(0, 10)} / ${iv}`)
    }
    for (const user of [
      { openId: 'oDecrypt', watermarkAppId: 'wxSomeoneElse' },
      { openId: 'oDecrypt', plaintext: Buffer.from('not json') },
      { openId: 'oDecrypt', plaintext: Buffer.from('"a string"') },
    ]) {
      const { code, encryptedData, iv } = h.wechat.login(user)
      const err = await rejection(auth.authorize(code, encryptedData, iv))
      assert.equal(err.code, 6011)
    }
  })

  test('an openid that differs from the decrypted openId rejects with 6009', async () => {
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oVictim', replyOpenId: 'oAttacker' })
    const err = await rejection(auth.authorize(code, encryptedData, iv))
    assert.equal(err.code, 6009)
    assert.equal(h.sql("SELECT count(*) FROM user WHERE openId IN ('oVictim', 'oAttacker')"), '0')
  })

  test('base64 whose + signs became spaces still decrypts', async () => {
    for (let i = 0; i < 20; i++) {
      const { code, encryptedData, iv } = h.wechat.login({ openId: 'oPlusSigns' })
      if (!encryptedData.includes('+') && !iv.includes('+')) continue
      const reply = await auth.authorize(code, encryptedData.replaceAll('+', ' '), iv.replaceAll('+', ' '))
      assert.equal(auth.extractOpenId(reply.response), 'oPlusSigns')
      return
    }
    assert.fail('no + sign in 20 random payloads')
  })

  test('SQL and glob characters in user ids match nobody else', async () => {
    const alice = await login({ openId: 'oAlice' })
    for (const openId of ['*', 'oAl?ce', 'oA[l]ice', '%', 'oAlic_', "x'); DROP TABLE user; --"]) {
      const reply = await login({ openId })
      assert.notEqual(reply.response, alice.response, openId)
      assert.equal(auth.extractOpenId(reply.response), openId)
    }
    assert.equal(h.sql("SELECT count(*) FROM user WHERE openId = 'oAlice'"), '1')
    assert.equal((await login({ openId: 'oAlice' })).response, alice.response)
  })

  test('a user id containing | is refused rather than producing an unparsable token', async () => {
    const err = await rejection(login({ openId: 'o|evil' }))
    assert.equal(err.code, 6001)
  })

  test('a database file without a user table gets one; a table with only openId works', async () => {
    const path = require('node:path')
    const { sql } = require('./support/harness')
    const fresh = path.join(h.dir, 'fresh.db')
    await login({ openId: 'oFresh' }, h.create({ db: { filename: fresh } }))
    assert.equal(sql(fresh, "SELECT count(*) FROM user WHERE openId = 'oFresh'"), '1')

    const minimal = path.join(h.dir, 'minimal.db')
    sql(minimal, 'CREATE TABLE user(openId text)')
    const instance = h.create({ db: { name: minimal }, sku: 'minimal' })
    await login({ openId: 'oMinimal' }, instance)
    await instance.refreshToken('oMinimal')
    assert.equal(sql(minimal, 'SELECT openId FROM user'), 'oMinimal')
  })

  test('unicode user ids and profiles work', async () => {
    const reply = await login({ openId: '用户😀', nickName: '微信用户', city: '广州' })
    assert.equal(auth.extractOpenId(reply.response), '用户😀')
    await auth.isTokenValid(reply.response)
  })
})
