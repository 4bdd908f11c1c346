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
    const instance = (table, options = {}) => h.create({ db: null, options: { userStore: kind.adapter(db.pool, { table }), ...options } })

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
        (await rows(`SELECT ${q('nickName')}, city, gender, province FROM ${q('always_user')}`)).map((row) => ({
          ...row,
          gender: Number(row.gender),
        }))
      assert.deepEqual(await read(), [{ nickName: 'Wen', city: 'Hangzhou', gender: 2, province: 'Zhejiang' }])
      await h.login({ openId: 'oAlways', nickName: 'Wen2', city: 'Ningbo' }, auth)
      // The stand-in sends gender 1 unless told otherwise: a real value, written over the 2.
      assert.deepEqual(await read(), [{ nickName: 'Wen2', city: 'Ningbo', gender: 1, province: 'Zhejiang' }])
    })

    test("the CREATE TABLE of docs/user-stores.md works with the adapter's defaults, emoji nicknames included", async () => {
      const guide = fs.readFileSync(path.join(__dirname, '..', 'docs', 'user-stores.md'), 'utf8')
      const [, sql] = /A table that works with the adapters' defaults[^\n]*\n\n```sql\n([\s\S]*?)```/.exec(guide)
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
      // The server's error code, never its text (PostgreSQL's SQLSTATE, MySQL's code).
      assert.match(err.message, /^user store error: userStore\.ready failed \((42P01|ER_NO_SUCH_TABLE)\)$/)
      assert.match(err.detail, /userStore\.ready/)
      assert.doesNotMatch(`${err.message} ${err.detail}`, /SecretName/)
      assert.ok(!h.wechat.requests.some((url) => url.searchParams.get('js_code') === login.code), 'the code was not sent to WeChat')
      // Once the table exists, the same code logs the user in.
      await createUserTable('no_such_table')
      assert.equal(await auth.ready(), true)
      assert.ok((await auth.authorize(login.code, login.encryptedData, login.iv)).response)
    })

    // A logger's events, and a check that none of them, nor an error, carries `secret`.
    const recorder = () => {
      const events = []
      return {
        events,
        logger: (event) => events.push(event),
        refusals: () => events.filter((event) => event.step === 'user.profile_refused').map((event) => event.detail),
        assertNoTrace(secret, ...errors) {
          for (const text of [...events.map((event) => JSON.stringify(event)), ...errors.flatMap((err) => [err.message, err.detail])]) {
            assert.ok(!String(text).includes(secret), `${JSON.stringify(secret)} reached ${text}`)
          }
        },
      }
    }

    test('addUser: true only when this call inserted the row, false only for a row with that id; a refused profile adds the id alone; a refused user rejects', async () => {
      const t = 'outcome_user'
      await rows(
        `CREATE TABLE ${q(t)} (${q('openId')} ${kind.idType} PRIMARY KEY NOT NULL, ${q('nickName')} varchar(64), city varchar(8), ` +
          `UNIQUE (${q('nickName')}), CHECK (${q('openId')} <> 'oBanned'))`,
      )
      const store = kind.adapter(db.pool, { table: t })
      const read = async () =>
        Object.fromEntries(
          (await rows(`SELECT ${q('openId')}, ${q('nickName')}, city FROM ${q(t)}`)).map((row) => [row.openId, [row.nickName, row.city]]),
        )
      assert.equal(await store.addUser('oA', { nickName: 'Bob', city: 'Hangzhou' }), true)
      assert.equal(await store.addUser('oA', { nickName: 'Other' }), false)
      // Another user's nickName (a unique index) and a value too long: not a silent `false`,
      // the id is added alone.
      assert.equal(await store.addUser('oB', { nickName: 'Bob', city: 'Hangzhou' }), true)
      assert.equal(await store.addUser('oC', { city: 'a city name far too long' }), true)
      assert.deepEqual(await read(), { oA: ['Bob', 'Hangzhou'], oB: [null, null], oC: [null, null] })
      assert.equal(await store.addUser('oB', { nickName: 'Bob' }), false)
      // A user the table refuses whatever the profile: an error, not `false`.
      const err = await rejection(store.addUser('oBanned', { nickName: 'Banned' }))
      assert.match(err.message, /^INSERT failed/)
      assert.ok(err.code, 'the server error code is passed on')
      assert.equal(await store.hasUser('oBanned'), false)
    })

    test('a profile the table refuses (a unique nickName): the login adds the id alone, goes on and reports user.profile_refused; a refused update never blocks a login; no value reaches a message, detail or event', async () => {
      const t = 'unique_nick_user'
      await rows(
        `CREATE TABLE ${q(t)} (${q('openId')} ${kind.idType} PRIMARY KEY NOT NULL, ${q('nickName')} varchar(64) UNIQUE, city text)`,
      )
      const log = recorder()
      const auth = instance(t, { logger: log.logger })
      const always = instance(t, { logger: log.logger, profileWrites: 'always' })
      await h.login({ openId: 'oNick1', nickName: 'Bob Secretvalue', city: 'Hangzhou' }, auth)
      const token = (await h.login({ openId: 'oNick2', nickName: 'Bob Secretvalue', city: 'Suzhou' }, auth)).response
      await auth.isTokenValid(token)
      const read = async () =>
        Object.fromEntries(
          (await rows(`SELECT ${q('openId')}, ${q('nickName')}, city FROM ${q(t)}`)).map((row) => [row.openId, [row.nickName, row.city]]),
        )
      assert.deepEqual(await read(), { oNick1: ['Bob Secretvalue', 'Hangzhou'], oNick2: [null, null] })
      assert.equal(log.refusals().length, 1)
      assert.match(log.refusals()[0], /INSERT refused: (23505|ER_DUP_ENTRY)/)
      // A returning user's update to a taken nickName: refused, the row kept, the login goes on.
      await h.login({ openId: 'oNick3', nickName: 'Cat', city: 'Ningbo' }, always)
      assert.ok((await h.login({ openId: 'oNick3', nickName: 'Bob Secretvalue', city: 'Wuxi' }, always)).response)
      assert.deepEqual((await read()).oNick3, ['Cat', 'Ningbo'])
      assert.match(log.refusals().at(-1), /UPDATE refused: (23505|ER_DUP_ENTRY)/)
      log.assertNoTrace('Secretvalue')
    })

    test('a server error that quotes a value: 6000 with the statement and the error code, the value in no message, detail or event', async () => {
      const t = 'quoting_user'
      await rows(`CREATE TABLE ${q(t)} (${q('openId')} ${kind.idType} PRIMARY KEY NOT NULL, ${q('nickName')} text)`)
      // A trigger that refuses every new user, quoting the id in its error.
      if (kind.name === 'PostgreSQL') {
        await rows(
          `CREATE FUNCTION refuse_user() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'no user %', NEW."openId"; END $$ LANGUAGE plpgsql`,
        )
        await rows(`CREATE TRIGGER refuse BEFORE INSERT ON ${q(t)} FOR EACH ROW EXECUTE FUNCTION refuse_user()`)
      } else {
        await rows(
          `CREATE TRIGGER refuse BEFORE INSERT ON ${q(t)} FOR EACH ROW BEGIN DECLARE why varchar(200); ` +
            `SET why = CONCAT('no user ', NEW.openId); SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = why; END`,
        )
      }
      const log = recorder()
      const auth = instance(t, { logger: log.logger })
      const err = await rejection(h.login({ openId: 'oSecretid42', nickName: 'Quoted' }, auth))
      assert.equal(err.code, 6000)
      assert.match(err.message, /^user store error: userStore\.addUser failed \((P0001|ER_SIGNAL_EXCEPTION)\)$/)
      assert.match(err.detail, /userStore\.addUser: (P0001: INSERT failed|ER_SIGNAL_EXCEPTION: INSERT failed \(SQLSTATE 45000\))$/)
      log.assertNoTrace('oSecretid42', err)
      assert.deepEqual(h.tokensOf('oSecretid42'), [], 'no token issued')
    })

    if (kind.name === 'MariaDB') {
      // Connections of a new pool that first run `sql` (the application's own session settings).
      const poolWith = (sql) => {
        const pool = kind.pool(db.server.connection)
        pool.on('connection', (connection) => connection.query(sql))
        return pool
      }

      test('prepared statements: with NO_BACKSLASH_ESCAPES a nickName stays one literal value', async () => {
        const pool = poolWith("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
        try {
          await rows(`CREATE TABLE ${q('escapes_user')} (${q('openId')} varchar(128) PRIMARY KEY, ${q('nickName')} text)`)
          await rows('CREATE TABLE secrets (s text)')
          await rows("INSERT INTO secrets VALUES ('the-secret')")
          const auth = h.create({ db: null, options: { userStore: kind.adapter(pool, { table: 'escapes_user' }) } })
          // Three values (the issue's), and two, which fits this table's rows: with client-side
          // escaping the second added a row holding the secret.
          const nickNames = ["'),(0x65,(SELECT s FROM secrets),0x66)-- ", "'),(0x65,(SELECT s FROM secrets))-- "]
          const logins = []
          for (const [i, nickName] of nickNames.entries()) {
            logins.push(
              await h.login({ openId: `oEsc${i + 1}`, nickName }, auth).then(
                () => 'logged in',
                (err) => err.detail,
              ),
            )
          }
          const found = await rows(`SELECT ${q('openId')}, ${q('nickName')} FROM ${q('escapes_user')} ORDER BY ${q('openId')}`)
          assert.deepEqual(found, [
            { openId: 'oEsc1', nickName: nickNames[0] },
            { openId: 'oEsc2', nickName: nickNames[1] },
          ])
          assert.deepEqual(logins, ['logged in', 'logged in'])
          // The pool's connections still run the application's sql_mode.
          const [[{ mode }]] = await pool.query('SELECT @@SESSION.sql_mode AS mode')
          assert.match(mode, /NO_BACKSLASH_ESCAPES/)
        } finally {
          await pool.end()
        }
      })

      test("a value the server would truncate or convert (a warning, with the application's non-strict sql_mode) counts as refused; sql_mode is left alone", async () => {
        const pool = poolWith("SET SESSION sql_mode = ''")
        try {
          const t = 'lenient_user'
          await rows(
            `CREATE TABLE ${q(t)} (${q('openId')} varchar(16) PRIMARY KEY, ${q('nickName')} varchar(64) CHARACTER SET utf8mb3, city varchar(8)) ` +
              'DEFAULT CHARSET = utf8mb4',
          )
          const store = kind.adapter(pool, { table: t })
          const read = async () =>
            Object.fromEntries(
              (await rows(`SELECT ${q('openId')}, ${q('nickName')}, city FROM ${q(t)}`)).map((row) => [
                row.openId,
                [row.nickName, row.city],
              ]),
            )
          assert.equal(await store.addUser('oEmoji', { nickName: '小明🐱' }), true)
          assert.equal(await store.addUser('oLong', { city: 'a city name far too long' }), true)
          assert.equal(await store.addUser('oFine', { nickName: 'Ming', city: 'Hangzhou' }), true)
          assert.deepEqual(await read(), { oEmoji: [null, null], oLong: [null, null], oFine: ['Ming', 'Hangzhou'] })
          // Updates the server would convert are rolled back.
          await store.fillProfile('oLong', { nickName: '小红🐶', city: 'a city name far too long' })
          await store.updateProfile('oFine', { city: 'a city name far too long' })
          assert.deepEqual(await read(), { oEmoji: [null, null], oLong: [null, null], oFine: ['Ming', 'Hangzhou'] })
          // An id the column would truncate: an error, and no row.
          const err = await rejection(store.addUser('oAnIdLongerThanSixteen', {}))
          assert.match(err.message, /^INSERT failed/)
          assert.deepEqual(Object.keys(await read()).sort(), ['oEmoji', 'oFine', 'oLong'])
          for (let i = 0; i < 4; i++) {
            const [[{ mode }]] = await pool.query('SELECT @@SESSION.sql_mode AS mode')
            assert.equal(mode, '')
          }
        } finally {
          await pool.end()
        }
      })

      test('a legacy utf8mb3 column: every login with an emoji nickName works, the profile refused', async () => {
        const t = 'legacy_user'
        await rows(
          `CREATE TABLE ${q(t)} (${q('openId')} varchar(128) PRIMARY KEY, ${q('nickName')} varchar(255), city varchar(255)) DEFAULT CHARSET = utf8mb3`,
        )
        const log = recorder()
        const auth = instance(t, { logger: log.logger })
        const always = instance(t, { logger: log.logger, profileWrites: 'always' })
        const token = (await h.login({ openId: 'oLegacy', nickName: '小明🐱', city: 'Hangzhou' }, auth)).response
        for (const each of [auth, always, auth, always]) {
          assert.equal((await h.login({ openId: 'oLegacy', nickName: '小明🐱', city: 'Hangzhou' }, each)).response, token)
        }
        assert.deepEqual(await rows(`SELECT ${q('nickName')}, city FROM ${q(t)}`), [{ nickName: null, city: null }])
        assert.equal(log.refusals().length, 5)
        log.assertNoTrace('小明')
      })
    }

    test('a table without the id column fails ready()', async () => {
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
    // After an addUser that answers false, hasUser confirms the user is there.
    assert.deepEqual(
      store.calls.map(([call]) => call),
      ['addUser', 'addUser', 'hasUser', 'updateProfile', 'addUser', 'hasUser', 'updateProfile'],
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
      ['hasUser', 'oFill'],
      ['fillProfile', 'oFill', { language: 'zh_CN', city: 'Suzhou' }],
    ])
    assert.equal(store.users.get('oFill').nickName, 'A')
    // A store without fillProfile is left alone.
    const plain = memoryStore()
    const other = h.create({ db: null, options: { userStore: plain } })
    await h.login({ openId: 'oPlain', nickName: 'P' }, other)
    await h.login({ openId: 'oPlain', nickName: 'Q' }, other)
    assert.deepEqual(
      plain.calls.map(([call]) => call),
      ['addUser', 'addUser', 'hasUser'],
    )
    assert.equal(plain.users.get('oPlain').nickName, 'P')
  })

  test("profileWrites 'never': addUser gets no profile and nothing else is called", async () => {
    const store = memoryStore()
    const auth = h.create({ db: null, options: { userStore: store, profileWrites: 'never' } })
    await h.login({ openId: 'oNever', nickName: 'N' }, auth)
    await h.login({ openId: 'oNever', nickName: 'M' }, auth)
    assert.deepEqual(store.calls, [
      ['addUser', 'oNever', {}],
      ['addUser', 'oNever', {}],
      ['hasUser', 'oNever'],
    ])
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
    assert.deepEqual(
      fresh.calls.map(([call]) => call),
      ['ready', 'addUser', 'addUser', 'hasUser'],
    )
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
      [
        () => {
          throw new Error('pool exhausted')
        },
        /userStore\.addUser: pool exhausted/,
      ],
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

  test('addUser answers false but hasUser finds no user: the login fails 6000 and no token is issued', async () => {
    // A store whose insert-if-absent swallows any refusal (e.g. ON CONFLICT DO NOTHING
    // without a conflict target, INSERT IGNORE) and answers false.
    const store = memoryStore({ addUser: async (userId, profile) => (store.calls.push(['addUser', userId, profile]), false) })
    const auth = h.create({ db: null, options: { userStore: store } })
    const err = await rejection(h.login({ openId: 'oSwallowed', nickName: 'Lost' }, auth))
    assert.equal(err.code, 6000)
    assert.equal(err.message, 'user store error: userStore.addUser failed')
    assert.match(err.detail, /hasUser finds no such user/)
    assert.deepEqual(h.tokensOf('oSwallowed'), [], 'no token issued')
    assert.deepEqual(
      store.calls.map(([call]) => call),
      ['addUser', 'hasUser'],
    )
    // Also with a live token from before: the login does not hand it back.
    store.users.set('oSwallowed', {})
    const token = (await h.login({ openId: 'oSwallowed' }, auth)).response
    store.users.delete('oSwallowed')
    assert.equal((await rejection(h.login({ openId: 'oSwallowed' }, auth))).code, 6000)
    await auth.isTokenValid(token)
  })

  test("userStoreTimeoutMs bounds a login's user-store calls in all, not each call", async () => {
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
    const store = memoryStore()
    const { addUser } = store
    let delay = 0
    store.addUser = async (...args) => (await sleep(delay), addUser(...args))
    store.fillProfile = async (userId, profile) => (await sleep(delay), store.calls.push(['fillProfile', userId, profile]))
    const auth = h.create({ db: null, options: { userStore: store, userStoreTimeoutMs: 400 } })
    await h.login({ openId: 'oSlow', nickName: 'S' }, auth)
    // Each call takes 250 ms: within 400 ms alone, not together.
    delay = 250
    const started = Date.now()
    const err = await rejection(h.login({ openId: 'oSlow', nickName: 'S', city: 'Xiamen' }, auth))
    assert.equal(err.code, 6000)
    assert.equal(err.message, 'user store error: userStore.fillProfile did not answer in time')
    assert.match(err.detail, /userStore\.fillProfile: no answer within 400 ms/)
    assert.ok(Date.now() - started < 1000, `the login waited ${Date.now() - started} ms`)
  })

  test("a custom store's error: its code or name in the message, its own words only in the detail", async () => {
    const failing = (make) => memoryStore({ addUser: async () => Promise.reject(make()) })
    class QueryFailedError extends Error {
      name = 'QueryFailedError'
    }
    for (const [make, message, detail] of [
      [
        () => Object.assign(new Error('socket hang up near PrivateNick'), { code: 'ECONNRESET' }),
        '(ECONNRESET)',
        /userStore\.addUser: ECONNRESET: socket hang up near PrivateNick/,
      ],
      [
        () => Object.assign(new Error('duplicate PrivateNick'), { code: 1062 }),
        '(1062)',
        /userStore\.addUser: 1062: duplicate PrivateNick/,
      ],
      [
        () => new QueryFailedError('relation PrivateNick'),
        '(QueryFailedError)',
        /userStore\.addUser: QueryFailedError: relation PrivateNick/,
      ],
      // A code that is not a short word, and words that look like one: neither reaches the message.
      [
        () => Object.assign(new Error('PrivateNick: taken'), { code: 'PrivateNick taken' }),
        '',
        /userStore\.addUser: \(no code\) PrivateNick: taken/,
      ],
      [() => 'PrivateNick: thrown text', '', /userStore\.addUser: \(no code\) PrivateNick: thrown text/],
    ]) {
      const auth = h.create({ db: null, options: { userStore: failing(make) } })
      const err = await rejection(h.login({ openId: 'oCoded', nickName: 'PrivateNick' }, auth))
      assert.equal(err.code, 6000)
      assert.equal(err.message, `user store error: userStore.addUser failed${message ? ` ${message}` : ''}`)
      assert.match(err.detail, detail)
    }
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
