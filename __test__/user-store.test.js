'use strict'

// Users in the application's own database: `options.userStore` with the adapters shipped for
// PostgreSQL (`pg`) and MySQL/MariaDB (`mysql2`), against private servers these tests start
// (and stop), and the contract itself with a store written in the test.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { after, before, describe, test } = require('node:test')

const mpauthx = require('..')
const { useHarness, rejection } = require('./support/harness')
const { startPostgres, startMariadb, postgresMissing, mariadbMissing } = require('./support/sql-servers')

/**
 * One database kind: how to start it, make a pool, run SQL and read rows back. The table of
 * each test is created by the test, in the dialect of the server.
 */
const kinds = [
  {
    name: 'PostgreSQL',
    missing: postgresMissing,
    start: startPostgres,
    adapter: mpauthx.userStores.postgres,
    pool(connection) {
      const { Pool } = require('pg')
      return new Pool({ ...connection, max: 8 })
    },
    query: async (pool, text) => (await pool.query(text)).rows,
    idType: 'text',
    quote: (name) => `"${name}"`,
  },
  {
    name: 'MariaDB',
    missing: mariadbMissing,
    start: startMariadb,
    adapter: mpauthx.userStores.mysql,
    pool(connection) {
      const mysql = require('mysql2/promise')
      return mysql.createPool({ ...connection, connectionLimit: 8 })
    },
    query: async (pool, text) => (await pool.query(text))[0],
    idType: 'varchar(128)',
    quote: (name) => `\`${name}\``,
  },
]

for (const kind of kinds) {
  describe(`userStores: ${kind.name}`, () => {
    const h = useHarness()
    const db = {}
    before(async () => {
      // CI installs the server; a machine without it fails here with the command to run.
      const missing = kind.missing()
      if (missing) throw new Error(missing)
      db.server = await kind.start()
      db.pool = kind.pool(db.server.connection)
    })
    after(async () => {
      await db.pool?.end()
      await db.server?.stop()
    })
    const q = (name) => kind.quote(name)
    const rows = (text) => kind.query(db.pool, text)
    // A table as 1.3.2's README describes it, under `name`.
    const createUserTable = (name) =>
      rows(
        `CREATE TABLE ${q(name)} (${q('openId')} ${kind.idType} PRIMARY KEY NOT NULL, city text, country text, ` +
          `gender integer, language text, ${q('nickName')} text, province text)`,
      )
    const instance = (table, options = {}) =>
      h.create({ db: null, options: { userStore: kind.adapter(db.pool, { table }), ...options } })

    test('the whole flow: login registers the user with the profile columns, refresh and check work, no SQLite file', async () => {
      await createUserTable('flow_user')
      const auth = instance('flow_user')
      const token = (await h.login({ openId: 'oFlow', nickName: 'Ming', city: 'Hangzhou', gender: 2 }, auth)).response
      await auth.isTokenValid(token)
      assert.deepEqual(
        (await rows(`SELECT ${q('openId')}, ${q('nickName')}, city, gender, country FROM ${q('flow_user')}`)).map((row) => ({
          ...row,
          gender: Number(row.gender),
        })),
        [{ openId: 'oFlow', nickName: 'Ming', city: 'Hangzhou', gender: 2, country: null }],
      )
      // A returning user with a new nickname: the row keeps what it holds (profileWrites
      // 'insert', the default) and only its empty columns are filled; never duplicated.
      await h.login({ openId: 'oFlow', nickName: 'Ming2', country: 'CN' }, auth)
      assert.deepEqual(await rows(`SELECT ${q('nickName')}, country FROM ${q('flow_user')}`), [{ nickName: 'Ming', country: 'CN' }])
      const refreshed = (await auth.refreshToken('oFlow')).response
      assert.notEqual(refreshed, token)
      await auth.isTokenValid(refreshed)
      await assert.rejects(auth.isTokenValid(token), { code: 6007 })
    })

    test("profileWrites 'always' writes real values over the row, never WeChat's placeholders", async () => {
      await createUserTable('always_user')
      const auth = instance('always_user', { profileWrites: 'always' })
      await h.login({ openId: 'oAlways', nickName: 'Wen', city: 'Hangzhou', gender: 2 }, auth)
      await h.login({ openId: 'oAlways', nickName: '微信用户', city: '', gender: 0, province: 'Zhejiang' }, auth)
      const read = async () =>
        (await rows(`SELECT ${q('nickName')}, city, gender, province FROM ${q('always_user')}`)).map((row) => ({ ...row, gender: Number(row.gender) }))
      assert.deepEqual(await read(), [{ nickName: 'Wen', city: 'Hangzhou', gender: 2, province: 'Zhejiang' }])
      await h.login({ openId: 'oAlways', nickName: 'Wen2', city: 'Ningbo' }, auth)
      // The stand-in sends gender 1 unless told otherwise: a real value, written over the 2.
      assert.deepEqual(await read(), [{ nickName: 'Wen2', city: 'Ningbo', gender: 1, province: 'Zhejiang' }])
    })

    test("the README's CREATE TABLE works with the adapter's defaults, emoji nicknames included", async () => {
      const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
      const [, sql] = /A table that works with the adapters' defaults[^\n]*\n\n```sql\n([\s\S]*?)```/.exec(readme)
      const [postgresTable, mysqlTable] = sql.split(/^-- MySQL.*$/m)
      await rows(kind.name === 'PostgreSQL' ? postgresTable : mysqlTable)
      const auth = h.create({ db: null, options: { userStore: kind.adapter(db.pool) } })
      assert.equal(await auth.ready(), true)
      const avatarUrl = 'https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132'
      await h.login({ openId: 'oReadme', nickName: '小明🐱', city: 'Hangzhou', avatarUrl }, auth)
      const [row] = await rows(`SELECT ${q('nickName')}, city, gender, ${q('avatarUrl')} FROM ${q('user')}`)
      assert.deepEqual({ ...row, gender: Number(row.gender) }, { nickName: '小明🐱', city: 'Hangzhou', gender: 1, avatarUrl })
    })

    test('20 concurrent logins of one new user over two instances: one row, one token', async () => {
      await createUserTable('race_user')
      const [a, b] = [instance('race_user'), instance('race_user')]
      const tokens = await Promise.all(
        Array.from({ length: 20 }, (_, i) => h.login({ openId: 'oRace' }, i % 2 ? a : b).then((reply) => reply.response)),
      )
      assert.equal(new Set(tokens).size, 1, 'one token')
      assert.deepEqual(await rows(`SELECT ${q('openId')} FROM ${q('race_user')}`), [{ openId: 'oRace' }])
    })

    test('refreshToken of a user the store does not have rejects 6010', async () => {
      await createUserTable('absent_user')
      const auth = instance('absent_user')
      assert.equal((await rejection(auth.refreshToken('oNobody'))).code, 6010)
    })

    test('a table with only the id column, under a name that needs quoting', async () => {
      const table = 'app members'
      await rows(`CREATE TABLE ${q(table)} (uid ${kind.idType} PRIMARY KEY)`)
      const auth = h.create({ db: null, options: { userStore: kind.adapter(db.pool, { table, idColumn: 'uid' }) } })
      const token = (await h.login({ openId: 'oOnlyId', nickName: 'Hidden' }, auth)).response
      await auth.isTokenValid(token)
      assert.deepEqual(await rows(`SELECT uid FROM ${q(table)}`), [{ uid: 'oOnlyId' }])
      // Returning with a profile the table has no column for: nothing to update, no error.
      await h.login({ openId: 'oOnlyId', nickName: 'Hidden2' }, auth)
      assert.ok((await auth.refreshToken('oOnlyId')).response)
    })

    test('profileColumns limits what is written', async () => {
      await createUserTable('limited_user')
      const auth = h.create({
        db: null,
        options: { userStore: kind.adapter(db.pool, { table: 'limited_user', profileColumns: ['nickName'] }) },
      })
      await h.login({ openId: 'oLimited', nickName: 'Lin', city: 'Xi an' }, auth)
      assert.deepEqual(await rows(`SELECT ${q('nickName')}, city FROM ${q('limited_user')}`), [{ nickName: 'Lin', city: null }])
    })

    test('a store whose table is missing: ready() and the first login reject 6000 naming the check, and the code is not spent', async () => {
      const auth = instance('no_such_table')
      const ready = await rejection(auth.ready())
      assert.equal(ready.code, 6000)
      assert.match(ready.detail, /userStore\.ready/)
      const login = h.wechat.login({ openId: 'oBroken', nickName: 'SecretName' })
      const err = await rejection(auth.authorize(login.code, login.encryptedData, login.iv))
      assert.equal(err.code, 6000)
      assert.equal(err.message, 'user store error: userStore.ready failed')
      assert.match(err.detail, /userStore\.ready/)
      assert.doesNotMatch(`${err.message} ${err.detail}`, /SecretName/)
      assert.ok(!h.wechat.requests.some((url) => url.searchParams.get('js_code') === login.code), 'the code was not sent to WeChat')
      // Once the table exists, the same code logs the user in.
      await createUserTable('no_such_table')
      assert.equal(await auth.ready(), true)
      assert.ok((await auth.authorize(login.code, login.encryptedData, login.iv)).response)
    })

    test("a table without the id column fails ready()", async () => {
      await rows(`CREATE TABLE ${q('wrong_id')} (uid ${kind.idType} PRIMARY KEY)`)
      const err = await rejection(instance('wrong_id').ready())
      assert.equal(err.code, 6000)
      assert.match(err.detail, /userStore\.ready/)
    })
  })
}

describe('options.userStore: the contract', () => {
  const h = useHarness()
  /** A store in memory that records its calls. */
  function memoryStore(overrides = {}) {
    const users = new Map()
    const calls = []
    return {
      users,
      calls,
      async hasUser(userId) {
        calls.push(['hasUser', userId])
        return users.has(userId)
      },
      async addUser(userId, profile) {
        calls.push(['addUser', userId, profile])
        if (users.has(userId)) return false
        users.set(userId, { ...profile })
        return true
      },
      async updateProfile(userId, profile) {
        calls.push(['updateProfile', userId, profile])
        Object.assign(users.get(userId), profile)
      },
      ...overrides,
    }
  }

  test("addUser gets the profile; with profileWrites 'always' a returning user gets updateProfile without placeholders; refresh asks hasUser", async () => {
    const store = memoryStore()
    const auth = h.create({ db: null, options: { userStore: store, profileWrites: 'always' } })
    await h.login({ openId: 'oMem', nickName: 'A', gender: 1 }, auth)
    assert.deepEqual(store.users.get('oMem'), { nickName: 'A', gender: 1, language: 'zh_CN' })
    await h.login({ openId: 'oMem', nickName: 'B' }, auth)
    assert.equal(store.users.get('oMem').nickName, 'B')
    await h.login({ openId: 'oMem', nickName: '微信用户', gender: 0, city: '', language: 'en' }, auth)
    assert.deepEqual(store.calls.at(-1), ['updateProfile', 'oMem', { language: 'en' }])
    assert.deepEqual(
      store.calls.map(([call]) => call),
      ['addUser', 'addUser', 'updateProfile', 'addUser', 'updateProfile'],
    )
    // Registered users are also recorded in Redis, so a refresh on any server finds them.
    const elsewhere = h.create({ db: null, options: { userStore: memoryStore() } })
    assert.ok((await elsewhere.refreshToken('oMem')).response)
    assert.equal((await rejection(auth.refreshToken('oUnknown'))).code, 6010)
    assert.deepEqual(store.calls.at(-1), ['hasUser', 'oUnknown'])
  })

  test("by default a returning user's store gets fillProfile (real values only), never updateProfile", async () => {
    const store = memoryStore()
    store.fillProfile = async (userId, profile) => store.calls.push(['fillProfile', userId, profile])
    const auth = h.create({ db: null, options: { userStore: store } })
    await h.login({ openId: 'oFill', nickName: 'A' }, auth)
    await h.login({ openId: 'oFill', nickName: '微信用户', city: 'Suzhou', gender: 0 }, auth)
    assert.deepEqual(store.calls.slice(1), [
      ['addUser', 'oFill', { nickName: '微信用户', gender: 0, language: 'zh_CN', city: 'Suzhou' }],
      ['fillProfile', 'oFill', { language: 'zh_CN', city: 'Suzhou' }],
    ])
    assert.equal(store.users.get('oFill').nickName, 'A')
    // A store without fillProfile is left alone.
    const plain = memoryStore()
    const other = h.create({ db: null, options: { userStore: plain } })
    await h.login({ openId: 'oPlain', nickName: 'P' }, other)
    await h.login({ openId: 'oPlain', nickName: 'Q' }, other)
    assert.deepEqual(plain.calls.map(([call]) => call), ['addUser', 'addUser'])
    assert.equal(plain.users.get('oPlain').nickName, 'P')
  })

  test("profileWrites 'never': addUser gets no profile and nothing else is called", async () => {
    const store = memoryStore()
    const auth = h.create({ db: null, options: { userStore: store, profileWrites: 'never' } })
    await h.login({ openId: 'oNever', nickName: 'N' }, auth)
    await h.login({ openId: 'oNever', nickName: 'M' }, auth)
    assert.deepEqual(store.calls, [['addUser', 'oNever', {}], ['addUser', 'oNever', {}]])
  })

  test('a store that provides ready() is asked by auth.ready() and before the first login', async () => {
    let broken = true
    const store = memoryStore({
      async ready() {
        store.calls.push(['ready'])
        if (broken) throw new Error('no connection to the users database')
      },
    })
    const auth = h.create({ db: null, options: { userStore: store } })
    const err = await rejection(auth.ready())
    assert.equal(err.code, 6000)
    assert.equal(err.status, 503)
    assert.match(err.detail, /userStore\.ready: no connection to the users database/)
    assert.doesNotMatch(err.message, /no connection/)
    broken = false
    assert.equal(await auth.ready(), true)
    await h.login({ openId: 'oReady' }, auth)
    await h.login({ openId: 'oReady' }, auth)
    // ready() twice by the app, and not before the logins once it passed.
    assert.deepEqual(store.calls.filter(([call]) => call === 'ready').length, 2)
    // A new instance checks before its first login only.
    const fresh = memoryStore({ ready: async () => fresh.calls.push(['ready']) })
    const other = h.create({ db: null, options: { userStore: fresh } })
    await h.login({ openId: 'oReady2' }, other)
    await h.login({ openId: 'oReady2' }, other)
    assert.deepEqual(fresh.calls.map(([call]) => call), ['ready', 'addUser', 'addUser'])
  })

  test('login(code) without a profile adds the user with an empty profile', async () => {
    const store = memoryStore()
    const auth = h.create({ db: null, options: { userStore: store } })
    const code = h.wechat.login({ openId: 'oCodeOnly' }).code
    assert.ok((await auth.login(code)).response)
    assert.deepEqual(store.calls, [['addUser', 'oCodeOnly', {}]])
  })

  test('a store that throws, rejects or answers no boolean: 6000 naming the call', async () => {
    for (const [addUser, why] of [
      [() => {
        throw new Error('pool exhausted')
      }, /userStore\.addUser: pool exhausted/],
      [async () => Promise.reject(new Error('deadlock')), /userStore\.addUser: deadlock/],
      [async () => 1, /userStore\.addUser: resolved with number, not a boolean/],
    ]) {
      const auth = h.create({ db: null, options: { userStore: memoryStore({ addUser }) } })
      const err = await rejection(h.login({ openId: 'oFails', nickName: 'PrivateNick' }, auth))
      assert.equal(err.code, 6000)
      assert.equal(err.message, 'user store error: userStore.addUser failed')
      assert.match(err.detail, why)
      assert.doesNotMatch(`${err.message} ${err.detail}`, /PrivateNick/)
    }
  })

  test('a store that hangs: 6000 after userStoreTimeoutMs, and the instance goes on', async () => {
    let hang = true
    const store = memoryStore()
    const addUser = store.addUser
    store.addUser = (...args) => (hang ? new Promise(() => {}) : addUser(...args))
    const auth = h.create({ db: null, options: { userStore: store, userStoreTimeoutMs: 300 } })
    const started = Date.now()
    const err = await rejection(h.login({ openId: 'oHangs' }, auth))
    assert.equal(err.code, 6000)
    assert.equal(err.message, 'user store error: userStore.addUser did not answer in time')
    assert.match(err.detail, /userStore\.addUser: no answer within 300 ms/)
    assert.ok(Date.now() - started < 5000, 'the login did not wait for the store')
    hang = false
    assert.ok((await h.login({ openId: 'oHangs' }, auth)).response)
  })

  test('misuse is refused at once', () => {
    const make = (db, options) => () => mpauthx('wx0123456789abcdef', 'secret', 'sku', db, null, 60, options)
    assert.throws(make(null, {}), TypeError)
    assert.throws(make(null, { userStore: { hasUser() {} } }), /userStore\.addUser must be a function/)
    assert.throws(make(null, { userStore: memoryStore(), tokenStore: 'sqlite' }), /tokenStore: 'sqlite'/)
    assert.throws(make(null, { userStore: memoryStore(), userStoreTimeoutMs: 0 }), /userStoreTimeoutMs/)
    assert.throws(() => mpauthx.userStores.postgres({}), /pool with a query\(\) method/)
    assert.throws(() => mpauthx.userStores.mysql({ query() {} }, { tabel: 'x' }), /unknown key 'tabel'/)
  })
})
