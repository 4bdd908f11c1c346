'use strict'

// The failure guarantees of the README's "Failure behaviour" section, each with its fault injected.

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { before, describe, test } = require('node:test')

const { useHarness, rejection, SKU, APP_SECRET } = require('./support/harness')
const { waitUntil } = require('./support/redis')

const liveTokens = (h, userId) => h.redis.cli('KEYS', `${userId}|${SKU}|*`).split('\n').filter(Boolean)

/** Times a promise's settlement; resolves with { err, ms }. */
async function timed(promise) {
  const start = process.hrtime.bigint()
  const err = await promise.then(
    () => null,
    (e) => e,
  )
  return { err, ms: Number(process.hrtime.bigint() - start) / 1e6 }
}

describe('Redis down and back', () => {
  const h = useHarness()

  test('calls reject with 6000 within 2 s while Redis is down, and the same instance recovers', async () => {
    const auth = h.create()
    const first = h.wechat.login({ openId: 'oOutage' })
    const { response: token } = await auth.authorize(first.code, first.encryptedData, first.iv)

    await h.redis.stop()
    const during = h.wechat.login({ openId: 'oOutage' })
    for (const call of [
      () => auth.isTokenValid(token),
      () => auth.refreshToken('oOutage'),
      () => auth.authorize(during.code, during.encryptedData, during.iv),
      () => auth.isTokenValid(token),
    ]) {
      const { err, ms } = await timed(call())
      assert.equal(err?.code, 6000, String(err))
      assert.ok(ms < 2000, `rejected after ${ms} ms`)
    }

    await h.redis.start()
    // The restarted Redis keeps nothing, so the old token is gone; the instance must work again.
    await waitUntil(
      () =>
        auth.isTokenValid(token).then(
          () => false,
          (err) => err.code === 6007,
        ),
      'the instance to reach Redis again',
    )
    const after = h.wechat.login({ openId: 'oOutage' })
    const { response: fresh } = await auth.authorize(after.code, after.encryptedData, after.iv)
    await auth.isTokenValid(fresh)
  })

  test('a Redis that accepts connections but never answers rejects with 6000 within 2 s', async () => {
    const net = require('node:net')
    const silent = net.createServer(() => {})
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
    try {
      const auth = h.create({ options: { redisUrl: `redis://127.0.0.1:${silent.address().port}` } })
      const { err, ms } = await timed(auth.isTokenValid(`oHung|${SKU}|${'c'.repeat(64)}`))
      assert.equal(err?.code, 6000, String(err))
      assert.ok(ms < 2000, `rejected after ${ms} ms`)
    } finally {
      silent.close()
    }
  })
})

describe('WeChat API slow or broken', () => {
  const h = useHarness()
  let auth
  before(() => {
    auth = h.create({ options: { httpTimeoutMs: 500 } })
  })

  const cases = [
    ['a timeout', () => {}, /timed out after 500 ms/],
    ['a slow body', (req, res) => res.writeHead(200, { 'content-length': '100' }).write('{"openid":'), /timed out/],
    ['a reset connection', (req) => req.socket.destroy(), /request failed|connection|reset|closed/i],
    ['a non-200 reply', (req, res) => res.writeHead(503).end('{}'), /HTTP status 503/],
    [
      'a truncated body',
      (req, res) => {
        res.writeHead(200, { 'content-length': '100' }).write('{"openid":"o1"')
        setTimeout(() => req.socket.destroy(), 20)
      },
      /reading the reply failed|request failed/,
    ],
    ['a non-JSON body', (req, res) => res.writeHead(200).end('<html>'), /not the expected JSON/],
    [
      'an oversized body announced',
      (req, res) => res.writeHead(200, { 'content-length': String(1 << 20) }).end(' '.repeat(1 << 20)),
      /larger than 65536 bytes/,
    ],
    [
      'an oversized chunked body',
      (req, res) => {
        res.writeHead(200)
        const chunk = ' '.repeat(16 * 1024)
        for (let i = 0; i < 64; i++) res.write(chunk)
        res.end('{}')
      },
      /larger than 65536 bytes/,
    ],
    ['an errcode reply', (req, res) => res.writeHead(200).end('{"errcode":40226,"errmsg":"code blocked"}'), /40226: code blocked/],
  ]

  for (const [what, handler, message] of cases) {
    test(`${what} rejects with 6008 and says so`, async () => {
      const { encryptedData, iv } = h.wechat.login({ openId: 'oBroken' })
      const { err, ms } = await timed(auth.authorize(h.wechat.reply(handler), encryptedData, iv))
      assert.equal(err?.code, 6008, String(err))
      assert.match(err.message, message)
      assert.ok(!err.message.includes(APP_SECRET))
      assert.ok(ms < 2000, `rejected after ${ms} ms, with httpTimeoutMs 500`)
    })
  }

  test('a refused connection rejects with 6008 and says so', async () => {
    const refused = h.create({ options: { wechatApiBase: 'http://127.0.0.1:1' } })
    const { encryptedData, iv } = h.wechat.login({ openId: 'oBroken' })
    const err = await rejection(refused.authorize('c', encryptedData, iv))
    assert.equal(err.code, 6008)
    assert.match(err.message, /connection failed.*refused/i)
  })
})

describe('races', () => {
  const h = useHarness()
  let auth
  before(() => {
    auth = h.create()
  })

  test('authorize racing refreshToken leaves one live token, and the index points at it', async () => {
    await h.login({ openId: 'oRacer' }, auth)
    for (let round = 0; round < 5; round++) {
      const calls = []
      for (let i = 0; i < 10; i++) {
        const { code, encryptedData, iv } = h.wechat.login({ openId: 'oRacer' })
        calls.push(auth.authorize(code, encryptedData, iv), auth.refreshToken('oRacer'))
      }
      const results = await Promise.allSettled(calls)
      assert.deepEqual(
        results.filter((r) => r.status === 'rejected'),
        [],
      )
      const live = liveTokens(h, 'oRacer')
      assert.equal(live.length, 1, `round ${round}: ${live.length} live tokens`)
      assert.equal(h.redis.cli('GET', `mpauthx|index|${SKU}|oRacer`), live[0])
      await auth.isTokenValid(live[0])
    }
    assert.equal(h.sql("SELECT count(*) FROM user WHERE openId = 'oRacer'"), '1')
  })
})

describe('no token without a TTL', () => {
  const h = useHarness()

  // A Redis user that may not run one command makes that step fail, as a crash there would.
  const restricted = (name, denied) => {
    assert.equal(h.redis.cli('ACL', 'SETUSER', name, 'on', '>pw', '~*', '+@all', ...denied.map((command) => `-${command}`)), 'OK')
    return h.create({ options: { redisUrl: h.redis.url.replace('redis://', `redis://${name}:pw@`) } })
  }

  for (const denied of [['expire'], ['evalsha', 'eval']]) {
    test(`when ${denied.join(' and ')} is denied, calls reject with 6000 and every token keeps its TTL`, async () => {
      const auth = restricted(`no${denied[0]}`, denied)
      const index = (openId) => `mpauthx|index|${SKU}|${openId}`
      const userKeys = (openId) => [...liveTokens(h, openId), ...h.redis.cli('KEYS', index(openId)).split('\n').filter(Boolean)]
      // A new user: no token and no index is written, so none can be left without a TTL.
      const newcomer = `oNew${denied.length}`
      const { code, encryptedData, iv } = h.wechat.login({ openId: newcomer })
      const err = await rejection(auth.authorize(code, encryptedData, iv))
      assert.equal(err.code, 6000)
      assert.match(err.detail, /not allowed a command the library needs/)
      assert.deepEqual(userKeys(newcomer), [])
      // A user with a live token: a refresh that cannot be made leaves that token as it was.
      const regular = `oLive${denied.length}`
      const { response: token } = await h.login({ openId: regular }, h.create())
      assert.equal((await rejection(auth.refreshToken(regular))).code, 6000)
      const kept = userKeys(regular)
      assert.deepEqual(kept, [token, index(regular)])
      for (const key of kept) {
        const ttl = Number(h.redis.cli('TTL', key))
        assert.ok(ttl > 3500 && ttl <= 3600, `${key} has TTL ${ttl}`)
      }
      await h.create().isTokenValid(token)
      // Once every command is allowed, the newcomer logs in.
      const { response: first } = await h.login({ openId: newcomer }, h.create())
      assert.deepEqual(userKeys(newcomer), [first, index(newcomer)])
    })
  }

  test('after every kind of call, every key of the library has a TTL, the records of users the longest', async () => {
    const auth = h.create()
    for (let i = 0; i < 5; i++) {
      const { code, encryptedData, iv } = h.wechat.login({ openId: `oTtl${i}` })
      await auth.authorize(code, encryptedData, iv)
      await auth.refreshToken(`oTtl${i}`)
    }
    const keys = h.redis.cli('KEYS', '*').split('\n').filter(Boolean)
    // The record of a registered user lives registrationTtl (30 days) after the latest token.
    const registered = keys.filter((key) => key.startsWith('mpauthx|user|'))
    for (let i = 0; i < 5; i++) assert.ok(registered.includes(`mpauthx|user|${SKU}|oTtl${i}`))
    for (const key of registered) assert.ok(Number(h.redis.cli('TTL', key)) > 2591000, `${key} lives 30 days`)
    const expiring = keys.filter((key) => !registered.includes(key))
    assert.ok(expiring.length >= 10)
    for (const key of expiring) assert.ok(Number(h.redis.cli('TTL', key)) > 0, `${key} has no TTL`)
  })
})

describe('bad input', () => {
  const h = useHarness()
  let auth
  before(() => {
    auth = h.create()
  })

  const huge = 'A'.repeat(8 * 1024 * 1024)
  const notStrings = [undefined, null, 0, 42, NaN, true, {}, [], () => {}, Symbol('s'), 10n, Buffer.from('x')]

  test('non-string or empty parameters reject with 6001 from every async method', async () => {
    const good = h.wechat.login({ openId: 'oBadInput' })
    for (const bad of [...notStrings, '']) {
      for (const [call, name] of [
        [() => auth.authorize(bad, good.encryptedData, good.iv), 'code'],
        [() => auth.authorize(good.code, bad, good.iv), 'encryptedData'],
        [() => auth.authorize(good.code, good.encryptedData, bad), 'iv'],
        [() => auth.refreshToken(bad), 'userId'],
        [() => auth.isTokenValid(bad), 'token'],
      ]) {
        const err = await rejection(call())
        assert.equal(err.code, 6001, `${name} = ${String(typeof bad)}`)
        assert.match(err.message, new RegExp(name))
      }
    }
  })

  test('8 MiB strings are refused cleanly', async () => {
    const good = h.wechat.login({ openId: 'oHuge' })
    assert.equal((await rejection(auth.authorize(huge, good.encryptedData, good.iv))).code, 6001)
    for (const [encryptedData, iv] of [
      [huge, good.iv],
      [good.encryptedData, huge],
    ]) {
      const { code } = h.wechat.login({ openId: 'oHuge' })
      assert.equal((await rejection(auth.authorize(code, encryptedData, iv))).code, 6011)
    }
    assert.equal((await rejection(auth.refreshToken(huge))).code, 6001)
    assert.equal((await rejection(auth.isTokenValid(huge))).code, 6007)
    assert.equal((await rejection(auth.isTokenValid(`${huge}|${SKU}|x`))).code, 6007)
    assert.equal(auth.extractOpenId(`${huge}|x`).length, huge.length)
  })

  test('every kind of broken encrypted payload rejects with 6011', async () => {
    const cases = [
      { encryptedData: '%%%not base64%%%' },
      { iv: 'c2hvcnQ=' },
      { iv: Buffer.alloc(32).toString('base64') },
      { encryptedData: Buffer.alloc(33).toString('base64') },
      { iv: Buffer.alloc(16, 9).toString('base64') },
      { user: { openId: 'oBad', plaintext: Buffer.from('not json at all') } },
      { user: { openId: 'oBad', plaintext: Buffer.from('[1,2,3]') } },
      { user: { openId: 'oBad', plaintext: Buffer.from('"just a string"') } },
      { user: { openId: 'oBad', plaintext: Buffer.from('{"openId":"oBad"}') } },
      { user: { openId: 'oBad', plaintext: Buffer.from('{"openId":"oBad","watermark":"wx"}') } },
      { user: { openId: 'oBad', plaintext: Buffer.from('{"openId":"oBad","watermark":{"appid":5}}') } },
      { user: { openId: 'oBad', plaintext: Buffer.from([0xff, 0xfe, 0x00, 0x01]) } },
      { user: { openId: 'oBad', watermarkAppId: '' } },
    ]
    for (const { user = { openId: 'oBad' }, ...override } of cases) {
      const login = h.wechat.login(user)
      const err = await rejection(auth.authorize(login.code, override.encryptedData ?? login.encryptedData, override.iv ?? login.iv))
      assert.equal(err.code, 6011, JSON.stringify(override) + JSON.stringify(user.plaintext?.toString()))
    }
  })

  test('unicode in every field works or fails with its own code', async () => {
    const user = { openId: 'ö用户🙂', unionId: 'ü联合🙂', nickName: '😀'.repeat(100), city: 'Zürich' }
    const reply = await h.login(user, auth)
    assert.equal(auth.extractOpenId(reply.response), 'ü联合🙂')
    assert.equal((await auth.refreshToken('ü联合🙂')).status_code, 1)
    assert.equal((await rejection(auth.refreshToken('用户不存在'))).code, 6010)
    assert.equal((await rejection(auth.isTokenValid('🙂|🙂|🙂'))).code, 6007)
    const { encryptedData, iv } = h.wechat.login({ openId: 'oUnicode' })
    assert.equal((await rejection(auth.authorize('代码🙂', encryptedData, iv))).code, 6008)
    assert.equal((await rejection(auth.authorize(h.wechat.login({ openId: 'oUnicode' }).code, '数据', iv))).code, 6011)
  })
})

describe('SQLite shared with the application', () => {
  const h = useHarness()

  /** The kinds of lock held on `file` (its inode) in /proc/locks: `[kind, pid]`, e.g. `['OFDLCK', -1]`. */
  const locksOn = (file) => {
    const inode = String(fs.statSync(file).ino)
    return fs
      .readFileSync('/proc/locks', 'utf8')
      .split('\n')
      .map((line) => line.match(/^\d+: (\S+)\s+\S+\s+\S+\s+(-?\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+) /))
      .filter((match) => match?.[3] === inode)
      .map(([, kind, pid]) => [kind, Number(pid)])
  }

  // node-sqlite3 bundles its own SQLite: without the addon's OFD locks (src/store/sqlite/locks.rs)
  // the two copies in this process would not exclude each other and this corrupts the file.
  // OFD locks exist on Linux only; elsewhere the addon keeps classic locks and this cannot hold.
  const linuxOnly = { skip: process.platform !== 'linux' && 'OFD locks are Linux-only' }
  test('the addon and a node-sqlite3 handle write the same file at the same time', linuxOnly, async () => {
    const sqlite3 = require('sqlite3')
    const app = new sqlite3.Database(h.dbFile)
    app.configure('busyTimeout', 5000)
    const run = (statement, params) =>
      new Promise((resolve, reject) => app.run(statement, params, (err) => (err ? reject(err) : resolve())))
    await run('CREATE TABLE IF NOT EXISTS orders(id integer primary key, openId text)')
    const auth = h.create({ db: app })
    const second = h.create({ db: h.dbFile, sku: 'second' })
    const appWrites = Array.from({ length: 200 }, (_, i) => run('INSERT INTO orders(openId) VALUES (?)', [`o${i}`]))
    const logins = Array.from({ length: 50 }, (_, i) => {
      const { code, encryptedData, iv } = h.wechat.login({ openId: `oShared${i}` })
      return (i % 2 ? auth : second).authorize(code, encryptedData, iv)
    })
    const results = await Promise.allSettled([...appWrites, ...logins])
    assert.deepEqual(
      results.filter((r) => r.status === 'rejected').map((r) => String(r.reason)),
      [],
    )
    assert.equal(h.sql('SELECT count(*) FROM orders'), '200')
    // The application reads the file in WAL mode, whichever copy switched it.
    const read = await new Promise((resolve, reject) =>
      app.get('SELECT count(*) AS n FROM orders', (err, row) => (err ? reject(err) : resolve(row.n))),
    )
    assert.equal(read, 200)
    assert.equal(h.sql("SELECT count(*) FROM user WHERE openId LIKE 'oShared%'"), '50')
    assert.equal(h.sql('PRAGMA journal_mode'), 'wal')
    assert.equal(h.sql('PRAGMA integrity_check'), 'ok')
    // Both copies hold their WAL read lock on the shared-memory file: node-sqlite3 a classic
    // lock of this process, the addon an OFD lock (no pid), which the classic one conflicts with.
    const shm = locksOn(`${h.dbFile}-shm`)
    assert.ok(
      shm.some(([kind, pid]) => kind === 'POSIX' && pid === process.pid),
      `node-sqlite3's lock: ${JSON.stringify(shm)}`,
    )
    assert.ok(
      shm.some(([kind]) => kind === 'OFDLCK'),
      `the addon's lock hook is installed: ${JSON.stringify(shm)}`,
    )
    await new Promise((resolve) => app.close(resolve))
  })

  test('a better-sqlite3-style handle and a path reach the same users', async () => {
    const auth = h.create({ db: { name: h.dbFile }, sku: 'named' })
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oNamed' })
    await auth.authorize(code, encryptedData, iv)
    assert.equal((await h.create({ db: h.dbFile }).refreshToken('oNamed')).status_code, 1)
  })

  test('a read-only database rejects with 6000 and says why', async () => {
    const auth = h.create({ db: `file:${h.dbFile}?mode=ro` })
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oReadOnly' })
    const err = await rejection(auth.authorize(code, encryptedData, iv))
    assert.equal(err.code, 6000)
    assert.match(err.detail, /SQLite: .*readonly/)
  })
})

describe('panics and secrets', () => {
  const h = useHarness()

  test('a panic in Rust becomes a rejection with 9999, and the instance keeps working', async () => {
    const auth = h.create()
    const err = await rejection(auth[Symbol.for('mpauthx.testing')].panic())
    assert.equal(err.code, 9999)
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oAfterPanic' })
    assert.equal((await auth.authorize(code, encryptedData, iv)).status_code, 1)
  })

  test('no secret or user data appears in any output or error message', async () => {
    const script = path.join(__dirname, 'support', 'secrets-probe.js')
    const reportFile = path.join(h.dir, 'probe-report.json')
    const env = { ...process.env, DEBUG: '*', RUST_LOG: 'trace', RUST_BACKTRACE: '1' }
    const { stdout, stderr } = await new Promise((resolve, reject) =>
      execFile(process.execPath, [script, h.redis.url, h.dbFile, reportFile], { env, timeout: 30000 }, (err, stdout, stderr) =>
        err ? reject(err) : resolve({ stdout, stderr }),
      ),
    )
    const report = JSON.parse(fs.readFileSync(reportFile, 'utf8'))
    assert.ok(report.messages.length >= 8, 'the probe saw its failures')
    const output = stdout + stderr
    assert.match(stderr, /mpauthx authorize wechat\.response \+[\d.]+ms HTTP 200/, 'DEBUG=* turned diagnostics on')
    for (const secret of report.secrets) {
      assert.ok(!output.includes(secret), `output contains a secret: ${secret.slice(0, 12)}…`)
    }
  })
})
