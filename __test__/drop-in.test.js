'use strict'

// What an unmodified 1.x app relies on: a returning user's row is the app's, 1.3.2's words
// where 1.3.2 said something, a TTL from the environment, HTTP statuses frameworks read, and
// the Redis keys a login leaves behind.

const assert = require('node:assert/strict')
const path = require('node:path')
const { describe, test } = require('node:test')

const mpauthx = require('..')
const { useHarness, rejection, sql, APP_ID, APP_SECRET, SKU } = require('./support/harness')
const { freePort } = require('./support/redis')

const PLACEHOLDER_AVATAR =
  'https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132'

describe("profileWrites: a returning login never overwrites the app's user data by default", () => {
  const h = useHarness()
  // A table with the avatar column too, as apps that show avatars have.
  const table = (name) => {
    const file = path.join(h.dir, name)
    sql(file, 'CREATE TABLE user(openId text primary key not null, nickName text, gender integer, city text, avatarUrl text)')
    return file
  }
  const row = (file, openId) => sql(file, `SELECT nickName, gender, city, avatarUrl FROM user WHERE openId = '${openId}'`)

  test("'insert' (default): written at registration, later only into empty columns; the app's edits stay", async () => {
    const db = table('insert.db')
    const auth = h.create({ db })
    await h.login({ openId: 'oKeep', nickName: 'Wei', gender: 1 }, auth)
    assert.equal(row(db, 'oKeep'), 'Wei|1||')
    // The app lets the user pick a name (its /updateUserInfo), and clears nothing else.
    sql(db, "UPDATE user SET nickName = 'Chosen Name' WHERE openId = 'oKeep'")
    await h.login({ openId: 'oKeep', nickName: 'Wei Again', gender: 2, city: 'Chengdu', avatarUrl: 'https://a/1.png' }, auth)
    assert.equal(row(db, 'oKeep'), 'Chosen Name|1|Chengdu|https://a/1.png')
    // Placeholders never fill a returning user's empty column either.
    sql(db, "UPDATE user SET city = NULL WHERE openId = 'oKeep'")
    await h.login({ openId: 'oKeep', nickName: '微信用户', gender: 0, city: '' }, auth)
    assert.equal(row(db, 'oKeep'), 'Chosen Name|1||https://a/1.png')
    // A user of 1.3.2 (a row with the id only) gets the real values into its empty columns.
    sql(db, "INSERT INTO user(openId) VALUES ('oFromOld')")
    await h.login({ openId: 'oFromOld', nickName: 'Old Timer', gender: 2 }, auth)
    assert.equal(row(db, 'oFromOld'), 'Old Timer|2||')
  })

  test("'never': the row gets the id only, as 1.3.2 wrote it", async () => {
    const db = table('never.db')
    const auth = h.create({ db, options: { profileWrites: 'never' } })
    await h.login({ openId: 'oNever', nickName: 'Nobody', city: 'Wuhan' }, auth)
    assert.equal(row(db, 'oNever'), '|||')
    sql(db, "UPDATE user SET nickName = 'Set By App' WHERE openId = 'oNever'")
    await h.login({ openId: 'oNever', nickName: 'Other', city: 'Wuhan' }, auth)
    assert.equal(row(db, 'oNever'), 'Set By App|||')
  })

  test("'always': real values replace the row's, WeChat's placeholders never do", async () => {
    const db = table('always.db')
    const auth = h.create({ db, options: { profileWrites: 'always' } })
    await h.login({ openId: 'oAlways', nickName: 'First', gender: 1, city: 'Xiamen', avatarUrl: 'https://a/me.png' }, auth)
    await h.login({ openId: 'oAlways', nickName: 'Second', gender: 2, city: 'Fuzhou' }, auth)
    assert.equal(row(db, 'oAlways'), 'Second|2|Fuzhou|https://a/me.png')
    await h.login({ openId: 'oAlways', nickName: '微信用户', gender: 0, city: '', avatarUrl: PLACEHOLDER_AVATAR }, auth)
    assert.equal(row(db, 'oAlways'), 'Second|2|Fuzhou|https://a/me.png')
    // A new user's row is created with what WeChat sent, placeholders included.
    await h.login({ openId: 'oAnon', nickName: '微信用户', gender: 0, avatarUrl: PLACEHOLDER_AVATAR }, auth)
    assert.equal(row(db, 'oAnon'), `微信用户|0||${PLACEHOLDER_AVATAR}`)
  })

  test('a bad value throws at creation, as a bad tokenStore does', () => {
    for (const profileWrites of ['sometimes', 'INSERT', '']) {
      assert.throws(() => h.create({ options: { profileWrites } }), { name: 'RangeError', message: /options\.profileWrites/ })
    }
    assert.throws(() => h.create({ options: { profileWrites: true } }), { name: 'TypeError', message: /options\.profileWrites/ })
  })
})

describe("1.3.2's words in err.message, the whole account in err.detail", () => {
  const h = useHarness()

  test('each situation 1.3.2 had says what 1.3.2 said', async () => {
    const auth = h.create()
    const mismatch = h.wechat.login({ openId: 'oReal', replyOpenId: 'oOther' })
    const garbled = h.wechat.login({ openId: 'oGarbled', plaintext: Buffer.from('not json at all') })
    const cases = [
      [() => auth.authorize(undefined, 'data', 'iv'), 'Missing code parameter', /code must be a non-empty string/],
      [() => auth.authorize('code', undefined, 'iv'), 'Missing encryptedData parameter', /encryptedData/],
      [() => auth.authorize('code', 'data', null), 'Missing iv parameter', /iv/],
      [() => auth.refreshToken(undefined), 'Missing userId parameter', /userId/],
      [() => auth.refreshToken('oNeverRegistered'), 'Cannot find such user in DB', /user does not exist/],
      [() => auth.authorize(mismatch.code, mismatch.encryptedData, mismatch.iv), 'OpenID or UnionID not match', /openid/],
      [() => auth.authorize(garbled.code, garbled.encryptedData, garbled.iv), 'Decrypt userInfo error', /decrypt/],
    ]
    for (const [call, message, detail] of cases) {
      const err = await rejection(call())
      assert.ok(err instanceof mpauthx.MpauthxError)
      assert.equal(err.message, message)
      assert.match(err.detail, detail)
    }
  })

  test('a store failure names no host, port or file in its message; the detail and diagnostics say where', async () => {
    const port = await freePort()
    const events = []
    const auth = h.create({ options: { redisUrl: `redis://127.0.0.1:${port}`, logger: (event) => events.push(event) } })
    for (const call of [() => auth.refreshToken('oAnyone'), () => auth.ready(), () => h.login({ openId: 'oDown' }, auth)]) {
      const err = await rejection(call())
      assert.equal(err.code, 6000)
      assert.equal(err.message, 'store error: Redis is unavailable')
      assert.match(err.detail, new RegExp(`127\\.0\\.0\\.1:${port}: connection refused`))
    }
    assert.ok(events.some((event) => event.step === 'done' && event.detail.includes(`127.0.0.1:${port}`)))
  })

  test('statuses for frameworks: status and expose as http-errors has them', async () => {
    const auth = h.create()
    const expect = async (call, code, status) => {
      const err = await rejection(call)
      assert.equal(err.code, code)
      assert.equal(err.status, status)
      assert.equal(err.expose, status < 500)
    }
    await expect(auth.login(undefined), 6001, 400)
    await expect(auth.isTokenValid(`oX|${SKU}|${'0'.repeat(64)}`), 6007, 401)
    await expect(auth.refreshToken('oUnknownUser'), 6010, 404)
    await expect(auth.login('never-issued'), 6008, 502)
    const mismatch = h.wechat.login({ openId: 'oA', replyOpenId: 'oB' })
    await expect(auth.authorize(mismatch.code, mismatch.encryptedData, mismatch.iv), 6009, 400)
    const down = h.create({ options: { redisUrl: `redis://127.0.0.1:${await freePort()}` } })
    await expect(down.refreshToken('oAnyone'), 6000, 503)
    await expect(auth[Symbol.for('mpauthx.testing')].panic(), 9999, 500)
    const { MpauthxError } = mpauthx
    assert.equal(new MpauthxError(6011, 'x').status, 400)
  })
})

describe('tokenTTL from the environment', () => {
  const h = useHarness()

  test('a string of digits is a TTL in seconds, as 1.3.2 took it; any other string throws naming it', async () => {
    const auth = h.create({ ttl: '120' })
    const { response: token } = await h.login({ openId: 'oEnvTtl' }, auth)
    const ttl = Number(h.redis.cli('TTL', token))
    assert.ok(ttl > 100 && ttl <= 120, `TTL ${ttl}`)
    assert.doesNotThrow(() => h.create({ ttl: ' 3600\n' }))
    for (const ttl of ['abc', '12s', '', '1.5']) {
      assert.throws(() => mpauthx(APP_ID, APP_SECRET, SKU, h.dbFile, null, ttl), { name: 'TypeError', message: /tokenTTL/ })
    }
    assert.throws(() => mpauthx(APP_ID, APP_SECRET, SKU, h.dbFile, null, '0'), { name: 'RangeError', message: /tokenTTL/ })
  })
})

describe('registrationTtl: the record of a registered user expires, never before its token', () => {
  const h = useHarness()
  const record = (userId, sku = SKU) => `mpauthx|user|${sku}|${userId}`
  const ttlOf = (key) => Number(h.redis.cli('TTL', key))

  test('30 days by default; never shorter than tokenTTL', async () => {
    await h.login({ openId: 'oRecord' }, h.create())
    const ttl = ttlOf(record('oRecord'))
    assert.ok(ttl > 2592000 - 60 && ttl <= 2592000, `TTL ${ttl}`)
    await h.login({ openId: 'oShortRecord' }, h.create({ sku: 'short', ttl: 5000, options: { registrationTtl: 100 } }))
    const short = ttlOf(record('oShortRecord', 'short'))
    assert.ok(short > 4900 && short <= 5000, `TTL ${short}`)
  })

  test('renewed when refreshToken issues a token, so a server without the row still refreshes', async () => {
    const auth = h.create({ options: { registrationTtl: 1000 } })
    await h.login({ openId: 'oRenewed' }, auth)
    h.redis.cli('EXPIRE', record('oRenewed'), '50')
    // Another server, whose SQLite file never saw the user.
    const elsewhere = h.create({ db: path.join(h.dir, 'elsewhere.db'), options: { registrationTtl: 1000 } })
    assert.ok((await elsewhere.refreshToken('oRenewed')).response)
    assert.ok(ttlOf(record('oRenewed')) > 900)
  })

  test('renewed when slidingTtl extends the token, in the same script', async () => {
    const auth = h.create({ sku: 'slide', ttl: 40, options: { slidingTtl: true, registrationTtl: 1000, validationCacheSize: 0 } })
    const { response: token } = await h.login({ openId: 'oSlides' }, auth)
    h.redis.cli('EXPIRE', token, '10')
    h.redis.cli('EXPIRE', record('oSlides', 'slide'), '15')
    await auth.isTokenValid(token)
    assert.ok(ttlOf(token) > 30, 'the token slid')
    assert.ok(ttlOf(record('oSlides', 'slide')) > 900, 'and its record with it')
  })
})

describe('ready(): the configuration checked without calling WeChat', () => {
  const h = useHarness()

  test('resolves true when Redis answers and the SQLite file opens; WeChat is not asked', async () => {
    const asked = h.wechat.requests.length
    assert.equal(await h.create().ready(), true)
    assert.equal(await h.create({ options: { tokenStore: 'sqlite' } }).ready(), true)
    assert.equal(h.wechat.requests.length, asked)
  })

  test('a Redis that does not answer rejects 6000 naming it, and the first login spends no code', async () => {
    const port = await freePort()
    const auth = h.create({ options: { redisUrl: `redis://127.0.0.1:${port}` } })
    const err = await rejection(auth.ready())
    assert.equal(err.code, 6000)
    assert.match(err.detail, new RegExp(`127\\.0\\.0\\.1:${port}`))
    const login = h.wechat.login({ openId: 'oNoRedis' })
    assert.equal((await rejection(auth.authorize(login.code, login.encryptedData, login.iv))).code, 6000)
    assert.ok(!h.wechat.requests.some((url) => url.searchParams.get('js_code') === login.code))
  })
})
