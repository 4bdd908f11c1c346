'use strict'

// What an adversarial review of the released behaviour found (issue 14), each reproduced
// against private servers.

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { describe, test } = require('node:test')

const { useCluster, useHarness, rejection, sql, APP_ID, APP_SECRET } = require('./support/harness')
const { waitUntil } = require('./support/redis')

describe('payloads that cannot be valid never spend the WeChat code', () => {
  const h = useHarness()

  test('authorize refuses them with 6011 before asking WeChat, and the code still works', async () => {
    const auth = h.create()
    const valid = h.wechat.login({ openId: 'oPayload' })
    const block = Buffer.alloc(16).toString('base64')
    const cases = {
      '8 MiB of encryptedData': ['A'.repeat(8 << 20), valid.iv],
      'a 3-byte iv': [valid.encryptedData, Buffer.alloc(3).toString('base64')],
      'encryptedData that is not base64': ['not base64 at all!', valid.iv],
      'an iv that is not base64': [valid.encryptedData, '%%%%'],
      'data that is not whole AES blocks': [Buffer.alloc(20).toString('base64'), valid.iv],
      'empty data': [Buffer.alloc(0).toString('base64') || '=', block],
    }
    for (const [what, [encryptedData, iv]] of Object.entries(cases)) {
      const asked = h.wechat.requests.length
      const err = await rejection(auth.authorize(valid.code, encryptedData, iv))
      assert.equal(err.code, 6011, what)
      assert.equal(h.wechat.requests.length, asked, `${what}: WeChat was not asked`)
    }
    const { status_code } = await auth.authorize(valid.code, valid.encryptedData, valid.iv)
    assert.equal(status_code, 1, 'the code was never spent')
  })

  test('decryptData refuses them with 6011 before reading the session from the store', async () => {
    const auth = h.create()
    const login = h.wechat.login({ openId: 'oPayloadData' })
    const { response: token } = await auth.authorize(login.code, login.encryptedData, login.iv)
    // With the store never asked, an unknown token cannot be the answer: the payload is.
    const unknown = `${token.slice(0, -1)}${token.endsWith('0') ? '1' : '0'}`
    assert.equal((await rejection(auth.decryptData(unknown, 'not base64 at all!', login.iv))).code, 6011)
    assert.equal((await rejection(auth.decryptData(token, login.encryptedData, '%%%%'))).code, 6011)
    assert.equal((await rejection(auth.decryptData(unknown, login.encryptedData, login.iv))).code, 6007)
  })
})

describe('in-memory SQLite', () => {
  const h = useHarness()

  test('every in-memory spelling is refused at creation with one message that says what to pass', () => {
    for (const db of [':memory:', 'file::memory:?cache=shared', 'file:name?mode=memory']) {
      assert.throws(
        () => h.create({ db }),
        {
          name: 'RangeError',
          message: /^db must be a SQLite file such as '\.\/users\.db': an in-memory database/,
        },
        db,
      )
    }
  })
})

describe('a missing native binary', () => {
  test("says first which package is missing for this platform and how to install it, keeping napi-rs's chain", () => {
    const root = path.join(__dirname, '..')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-nobinary-'))
    try {
      for (const file of fs.readdirSync(root).filter((name) => name.endsWith('.js'))) {
        fs.copyFileSync(path.join(root, file), path.join(dir, file))
      }
      const run = spawnSync(
        process.execPath,
        [
          '-e',
          "try { require('./index.js') } catch (err) { console.log(JSON.stringify({ message: err.message, cause: String(err.cause?.message) })) }",
        ],
        { cwd: dir, encoding: 'utf8' },
      )
      const { message, cause } = JSON.parse(run.stdout)
      const glibc = process.report.getReport().header.glibcVersionRuntime
      const name = process.platform === 'linux' ? `mpauthx-linux-${process.arch}-${glibc ? 'gnu' : 'musl'}` : 'mpauthx-'
      assert.match(message, new RegExp(`^mpauthx has no native binary for this platform: the package ${name}`))
      assert.match(message, /npm install --include=optional/)
      assert.match(cause, /Cannot find native binding/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('replacing a token deletes only tokens', () => {
  const h = useCluster()

  for (const deployment of ['a single Redis', 'a Redis Cluster']) {
    test(`on ${deployment}, an index naming an application key never makes refresh or login delete it`, async () => {
      const single = deployment === 'a single Redis'
      const auth = h.create({ options: single ? { redisUrl: h.redis.url, redisClusterNodes: undefined } : {} })
      const cli = single ? h.redis.cli : (...args) => h.cluster.masterOf(String(args[1])).cli(...args)
      const openId = `oStray${deployment.length}`
      const { response: token } = await h.login({ openId }, auth)
      const index = `mpauthx|index|testsku|${openId}`
      for (const [stray, call] of [
        ['billing|balance|42', () => auth.refreshToken(openId)],
        ['billing|balance|43', () => h.login({ openId }, auth)],
      ]) {
        cli('SET', stray, '100')
        cli('SET', index, stray)
        const { response: fresh } = await call()
        assert.notEqual(fresh, token)
        assert.equal(cli('GET', stray), '100', `${stray} is still there`)
        await auth.isTokenValid(fresh)
      }
    })
  }
})

describe('HTTP answers carry no internal detail', () => {
  const h = useHarness()

  test('401 and 503 bodies have a fixed message per code; server code still sees the detail', async () => {
    const http = require('node:http')
    const auth = h.create({ options: { validationCacheSize: 0 } })
    const { response: token } = await h.login({ openId: 'oPublic' }, auth)
    const middleware = auth.middleware()
    const server = http.createServer((req, res) => middleware(req, res, () => res.end('ok')))
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    const get = async (authorization) => {
      const reply = await fetch(`http://127.0.0.1:${server.address().port}/`, { headers: { authorization } })
      return { status: reply.status, text: await reply.text() }
    }
    try {
      const denied = await get(`Bearer ${token}x`)
      assert.equal(denied.status, 401)
      assert.deepEqual(JSON.parse(denied.text), { status_code: 6007, status_message: 'token is missing, invalid or expired' })
      await h.redis.stop()
      const down = await get(`Bearer ${token}`)
      assert.equal(down.status, 503)
      assert.deepEqual(JSON.parse(down.text), {
        status_code: 6000,
        status_message: 'authentication is temporarily unavailable, try again',
      })
      assert.doesNotMatch(down.text, /Redis|127\.0\.0\.1|store|users\.db/)
      const err = await rejection(auth.isTokenValid(token))
      assert.match(err.detail, /Redis at 127\.0\.0\.1:\d+/, 'server code sees where')
    } finally {
      server.close()
      await h.redis.start()
    }
  })

  test('a bad wechatApiBase is refused without echoing it (it may carry credentials)', () => {
    for (const wechatApiBase of ['ftp://user:s3cret@example.com', 'http://user:s3cret@exa mple.com']) {
      assert.throws(
        () => h.create({ options: { wechatApiBase } }),
        (err) => {
          assert.equal(err.name, 'RangeError')
          assert.doesNotMatch(err.message, /s3cret/)
          return true
        },
      )
    }
  })
})

describe('a SQLite file that cannot be used is found before WeChat', () => {
  const h = useHarness()

  test('a missing directory or a file that is not a database rejects 6000, says why, and spends no code', async () => {
    const notADatabase = path.join(h.dir, 'not-a-database.db')
    fs.writeFileSync(notADatabase, 'this is not SQLite, just text long enough to be read as a header '.repeat(20))
    for (const [db, why] of [
      [path.join(h.dir, 'no-such-dir', 'users.db'), /^store error: SQLite: cannot open .*no-such-dir\/users\.db/],
      [notADatabase, /SQLite: .*not a database/],
    ]) {
      const auth = h.create({ db })
      const login = h.wechat.login({ openId: 'oBadFile' })
      const asked = h.wechat.requests.length
      const err = await rejection(auth.authorize(login.code, login.encryptedData, login.iv))
      assert.equal(err.code, 6000, db)
      // The message names no file; the detail says which and why.
      assert.equal(err.message, 'store error: the SQLite database is unavailable')
      assert.match(err.detail, why)
      assert.equal(err.status, 503)
      assert.equal(err.expose, false)
      assert.equal((await rejection(auth.ready())).detail, err.detail)
      assert.equal((await rejection(auth.login(login.code))).code, 6000, db)
      assert.equal((await rejection(auth.refreshToken('oNeverSeen'))).code, 6000, db)
      assert.equal(h.wechat.requests.length, asked, `${db}: WeChat was not asked`)
      // The code is still good for an instance on a usable file.
      const { status_code } = await h.create().authorize(login.code, login.encryptedData, login.iv)
      assert.equal(status_code, 1)
    }
  })
})

describe('close() lets calls in flight finish', () => {
  const h = useHarness()

  test('a login in flight completes, calls after close() reject 6000, and close() resolves after the login', async () => {
    const auth = h.create()
    const { response: token } = await h.login({ openId: 'oClosing' }, auth)
    const login = h.wechat.login({ openId: 'oClosingSlow' })
    const slow = h.wechat.reply((req, res) =>
      setTimeout(() => res.end(JSON.stringify({ openid: 'oClosingSlow', session_key: login.sessionKey.toString('base64') })), 300),
    )
    const order = []
    const inFlight = auth.authorize(slow, login.encryptedData, login.iv).then((reply) => {
      order.push('login')
      return reply
    })
    // Let the login reach WeChat before closing.
    const asked = h.wechat.requests.length
    await waitUntil(() => h.wechat.requests.length > asked, 'the login to reach WeChat')
    const closing = auth.close().then(() => order.push('closed'))
    const refused = await rejection(auth.isTokenValid(token))
    assert.equal(refused.code, 6000)
    assert.match(refused.message, /closed/)
    const { status_code, response } = await inFlight
    assert.equal(status_code, 1)
    assert.match(response, /^oClosingSlow\|/)
    await closing
    assert.deepEqual(order, ['login', 'closed'])
    assert.equal((await rejection(auth.login(h.wechat.login({ openId: 'oAfter' }).code))).code, 6000)
  })
})

describe('a profile value the user table refuses', () => {
  const h = useHarness()

  const tables = {
    'a CHECK': 'CREATE TABLE user(openId text primary key not null, nickName text CHECK(length(nickName) <= 20), city text)',
    'a STRICT column of another type': 'CREATE TABLE user(openId TEXT PRIMARY KEY NOT NULL, nickName TEXT, city INTEGER) STRICT',
    'an aborting trigger': `CREATE TABLE user(openId text primary key not null, nickName text, city text);
      CREATE TRIGGER no_profiles BEFORE UPDATE ON user BEGIN SELECT RAISE(ABORT, 'profiles are frozen'); END`,
  }
  for (const [what, schema] of Object.entries(tables)) {
    test(`refused by ${what}: the user is registered without it and logs in, the refusal reported`, async () => {
      const db = path.join(h.dir, `${what.replace(/\W+/g, '-')}.db`)
      sql(db, schema)
      const events = []
      const auth = h.create({ db, options: { logger: (event) => events.push(event) } })
      const login = h.wechat.login({ openId: 'oRefused', nickName: 'a nickname far longer than twenty', city: 'Shenzhen' })
      const { status_code, response: token } = await auth.authorize(login.code, login.encryptedData, login.iv)
      assert.equal(status_code, 1)
      await auth.isTokenValid(token)
      assert.equal(sql(db, "SELECT count(*) FROM user WHERE openId = 'oRefused'"), '1')
      assert.ok(
        events.some((event) => event.step === 'user.profile_refused'),
        'reported through diagnostics',
      )
      // And again: the user is not blocked.
      const again = h.wechat.login({
        openId: 'oRefused',
        nickName: 'a nickname far longer than twenty',
        city: 'Shenzhen',
        sessionKey: login.sessionKey,
      })
      assert.equal((await auth.authorize(again.code, again.encryptedData, again.iv)).response, token)
    })
  }

  test('a row the table refuses outright fails the login and leaves no row behind', async () => {
    const db = path.join(h.dir, 'no-inserts.db')
    sql(
      db,
      `CREATE TABLE user(openId text primary key not null, nickName text);
      CREATE TRIGGER no_new_users BEFORE INSERT ON user BEGIN SELECT RAISE(ABORT, 'registrations closed'); END`,
    )
    const auth = h.create({ db })
    const login = h.wechat.login({ openId: 'oNoRow' })
    assert.equal((await rejection(auth.authorize(login.code, login.encryptedData, login.iv))).code, 6000)
    assert.equal(sql(db, 'SELECT count(*) FROM user'), '0')
  })
})

describe('the shared access-token lock is a lease no clock step stretches', () => {
  const h = useHarness()
  const lockKey = `mpauthx|access_token|${APP_ID}|lock`
  const currentKey = `mpauthx|access_token|${APP_ID}|current`
  /** Who holds the lock now, '' when nobody does. */
  const lockOwner = (tokenStore) =>
    tokenStore === 'redis'
      ? h.redis.cli('GET', lockKey)
      : h.sql(`SELECT lock_owner FROM mpauthx_access_token WHERE lock_until_us > ${Date.now() * 1000}`)
  const issuedSince = (count) => h.wechat.accessTokens.issued.slice(count)

  /** Empties the cached access token and any lock, after the first call created the table. */
  async function emptyCache(auth, tokenStore) {
    await auth.getAccessToken()
    if (tokenStore === 'redis') h.redis.cli('DEL', currentKey, lockKey)
    else h.sql('DELETE FROM mpauthx_access_token')
  }

  /** Leaves a lock held by another process for `leaseMs`, lasting until `untilMs` from now. */
  function holdLock(tokenStore, { untilMs, leaseMs = untilMs, owner = 'another process' }) {
    if (tokenStore === 'redis') return void h.redis.cli('SET', lockKey, owner, 'PX', String(untilMs))
    const now = Date.now() * 1000
    h.sql(
      `INSERT INTO mpauthx_access_token(app_id, lock_until_us, lock_lease_us, lock_owner)
       VALUES ('${APP_ID}', ${now + untilMs * 1000}, ${leaseMs * 1000}, '${owner}')
       ON CONFLICT(app_id) DO UPDATE SET lock_until_us = excluded.lock_until_us,
       lock_lease_us = excluded.lock_lease_us, lock_owner = excluded.lock_owner`,
    )
  }

  for (const tokenStore of ['redis', 'sqlite']) {
    test(`${tokenStore} store: a waiter with a shorter httpTimeoutMs than a stalled holder gets a token within its own deadline`, async () => {
      const holder = h.create({ options: { tokenStore, httpTimeoutMs: 60_000 } })
      const waiter = h.create({ options: { tokenStore, httpTimeoutMs: 300 } })
      await emptyCache(holder, tokenStore)
      const release = h.wechat.accessTokens.holdNext()
      const issued = h.wechat.accessTokens.issued.length
      const holding = holder.getAccessToken()
      try {
        await waitUntil(() => lockOwner(tokenStore), 'the holder to take the lock')
        // Today's waiter waited for a lock that lasts the holder's 61 s and rejected 6000.
        const { response } = await waiter.getAccessToken()
        assert.ok(response.accessToken)
        assert.ok(response.expiresIn > 6000, String(response.expiresIn))
        assert.deepEqual(
          issuedSince(issued).map((entry) => entry.forceRefresh),
          [false],
        )
        assert.ok(lockOwner(tokenStore), "the holder's lock is left alone")
      } finally {
        release()
      }
      assert.ok((await holding).response.accessToken, 'the holder finishes too')
      assert.equal(lockOwner(tokenStore), '', 'and releases its lock')
    })

    test(`${tokenStore} store: a waiter never forces a refresh, or takes the lock, while another process's lease runs`, async () => {
      const auth = h.create({ options: { tokenStore, httpTimeoutMs: 300 } })
      await auth.getAccessToken()
      // A process with a longer httpTimeoutMs is forcing a refresh: its 20 s lease runs.
      holdLock(tokenStore, { untilMs: 20_000, leaseMs: 21_000 })
      h.wechat.accessTokens.valid.clear() // WeChat refuses the cached token (40001)
      const issued = h.wechat.accessTokens.issued.length
      const { response } = await auth.getPhoneNumber(h.wechat.phoneCode({ phoneNumber: '13800138000' }))
      assert.equal(response.purePhoneNumber, '13800138000')
      // A second forced refresh would invalidate the token the holder is about to store.
      assert.deepEqual(
        issuedSince(issued).map((entry) => entry.forceRefresh),
        [false],
      )
      assert.equal(lockOwner(tokenStore), 'another process')
    })
  }

  test("SQLite store: a lock written by a process whose clock is an hour ahead, or claiming an hour's lease, is taken over", async () => {
    const auth = h.create({ options: { tokenStore: 'sqlite', httpTimeoutMs: 30_000 } })
    for (const lock of [
      { untilMs: 3600_000, leaseMs: 31_000, owner: 'a process an hour ahead' },
      { untilMs: 3600_000, leaseMs: 3600_000, owner: 'a process claiming an hour' },
    ]) {
      await emptyCache(auth, 'sqlite')
      holdLock('sqlite', lock)
      const issued = h.wechat.accessTokens.issued.length
      const { response } = await auth.getAccessToken()
      assert.ok(response.accessToken, lock.owner)
      assert.equal(issuedSince(issued).length, 1, `${lock.owner}: fetched once, under the lock`)
      // Taken over and released by this caller; a waiter would have left the lock in place.
      assert.equal(h.sql(`SELECT lock_owner <> '${lock.owner}' AND lock_until_us = 0 FROM mpauthx_access_token`), '1', lock.owner)
    }
  })

  test('SQLite store: an access-token table written by an earlier version gains the stored lease', async () => {
    const db = path.join(h.dir, 'earlier.db')
    sql(
      db,
      `CREATE TABLE user(openId text primary key not null);
      CREATE TABLE mpauthx_access_token(app_id TEXT PRIMARY KEY NOT NULL, access_token TEXT,
        expires_at_us INTEGER NOT NULL DEFAULT 0, lock_until_us INTEGER NOT NULL DEFAULT 0, lock_owner TEXT);
      INSERT INTO mpauthx_access_token(app_id, lock_until_us, lock_owner) VALUES ('${APP_ID}', 0, NULL)`,
    )
    const [first, second] = [0, 1].map(() => h.create({ db, options: { tokenStore: 'sqlite' } }))
    const replies = await Promise.all([first.getAccessToken(), second.getAccessToken()])
    assert.equal(replies[0].response.accessToken, replies[1].response.accessToken)
    assert.equal(sql(db, "SELECT count(*) FROM pragma_table_info('mpauthx_access_token') WHERE name = 'lock_lease_us'"), '1')
  })
})

describe("nothing from WeChat's reply reaches a message verbatim", () => {
  const h = useHarness()

  test('an errmsg that echoes the request URL loses the secret and the code; a body that is not JSON is not quoted', async () => {
    const events = []
    const auth = h.create({ options: { logger: (event) => events.push(event) } })
    const echo = h.wechat.reply((req, res) =>
      res.end(JSON.stringify({ errcode: 40013, errmsg: `invalid appid, url: ${req.url} ${APP_SECRET}` })),
    )
    const err = await rejection(auth.login(echo))
    assert.equal(err.code, 6008)
    const quoted = h.wechat.reply((req, res) => res.end('{"openid": "oQuoted", "session_key": 987654321987}'))
    const garbled = await rejection(auth.login(quoted))
    assert.equal(garbled.code, 6008)
    assert.match(garbled.detail, /not the expected JSON \(at line 1 column \d+\)/)
    const seen = [err.message, err.detail, garbled.message, garbled.detail, JSON.stringify(events)].join('\n')
    for (const secret of [APP_SECRET, echo, '987654321987']) assert.ok(!seen.includes(secret), `${secret} was repeated`)
    assert.match(err.message, /errcode 40013: invalid appid, url: .*secret=\*\*\*.*js_code=\*\*\*/)
  })
})
