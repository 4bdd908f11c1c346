'use strict'

// The SQL user stores of `mpauthx.userStores`, adapters over the application's own pool:
// `postgres(pool, options)` for a `pg` Pool and `mysql(pool, options)` for a `mysql2/promise`
// pool. Each is plain JavaScript on the pool it is given (its connection settings, TLS,
// pooling and `sql_mode` stay the application's), and neither `pg` nor `mysql2` is a
// dependency of mpauthx. The contract any other store follows is `UserStore` in index.d.ts:
// `hasUser`, `addUser` (insert when absent, in one statement, so that concurrent logins of a
// new user add one row) and, optionally, `updateProfile` (write over), `fillProfile` (write
// where empty) and `ready` (check the table without a login).
//
// Every value is a bound parameter the server receives apart from the SQL text: `pg` sends
// them with the extended protocol, and the MySQL adapter uses `execute()` (server-side
// prepared statements), never `query()` with values, whose client-side escaping goes wrong
// under `NO_BACKSLASH_ESCAPES` in the mysql2 versions apps run.
//
// What the adapters answer: `addUser` resolves `true` only when this call inserted the row and
// `false` only when a row with that id was there already; any other refusal rejects. When the
// table refuses the profile values (a constraint, a type, a value too long, an emoji in a
// utf8mb3 column, any value MySQL would truncate or convert, which it says with a warning),
// the user is added with the id alone, as the SQLite store does, and mpauthx reports
// `user.profile_refused`; a profile update the table refuses is left undone in the same way
// and never blocks a login. Errors name the statement and the server's error code (MySQL's
// code and SQLSTATE, PostgreSQL's SQLSTATE), never the server's text, which can quote a value
// (MySQL's "Duplicate entry 'Bob' for key …"); that text is kept as the error's `cause`.

const { readOptions, sqlUserStoreOptions } = require('./options.js')

/** The profile fields a login may carry, as the SQLite store names them (src/crypto.rs). */
const PROFILE_FIELDS = ['nickName', 'gender', 'language', 'city', 'province', 'country', 'avatarUrl']

/**
 * Where a shipped adapter's `addUser`, `updateProfile` and `fillProfile` keep the variant that
 * also says whether the table refused the profile: `method[OUTCOMES](userId, profile)`
 * resolves with `{ added, refused }` (`addUser`) or `{ refused }`, `refused` naming the
 * statement and code. `userStoreCall` (user-store-call.js) uses it when the store's method is the
 * adapter's own; the public methods keep the `UserStore` contract.
 */
const OUTCOMES = Symbol('mpauthx.userStore.outcomes')

/** An error naming the statement and the server's error code, never the server's text. */
function statementError(statement, err, sqlState) {
  const code = codeOf(err)
  const error = new Error(`${statement} failed${sqlState ? ` (SQLSTATE ${sqlState})` : ''}`, { cause: err })
  error.code = code
  return error
}

/** The error's code (or, without one, its name), as the adapters pass it on. */
function codeOf(err) {
  const code = err?.code
  if ((typeof code === 'string' && code !== '') || typeof code === 'number') return String(code)
  return typeof err?.name === 'string' ? err.name : 'Error'
}

// PostgreSQL's SQLSTATEs for a value the table refuses: data exceptions (22…, a value too long,
// of the wrong type, out of range, a character the encoding lacks), integrity constraints (23…,
// NOT NULL, CHECK, UNIQUE on another column), a trigger's RAISE (P0001), and collations that do
// not mix (42P21, 42P22) or a type mismatch (42804).
const postgresRefusal = (code) => /^(22|23)/.test(code) || ['P0001', '42P21', '42P22', '42804'].includes(code)

// MySQL's errors for a value the table refuses (whatever SQLSTATE the server version gives):
// data too long (1406), incorrect or truncated values (1366, 1265, 1292), out of range (1264),
// NULL in a NOT NULL column (1048), a duplicate on a unique key (1062: on the id's key, the
// adapter answers `false` instead), CHECK (3819, MariaDB 4025), collations that do not mix
// (1267, 1270, 1271, 1253), a trigger's SIGNAL (1644); and SQLSTATE classes 22, 23 and 45.
const MYSQL_REFUSALS = new Set([1406, 1366, 1265, 1292, 1264, 1048, 1062, 3819, 4025, 1267, 1270, 1271, 1253, 1644])
const mysqlRefusal = (err) => MYSQL_REFUSALS.has(err?.errno) || /^(22|23|45)/.test(err?.sqlState ?? '')

// MySQL's error number for a deadlock: the victim's transaction was rolled back, and may retry.
const ER_LOCK_DEADLOCK = 1213

/**
 * What differs between the SQL dialects: quoting, placeholders, the NULL-safe "differs" test,
 * how columns are listed, and how statements run and fail.
 */
const dialects = {
  postgres: {
    quote: (name) => `"${name.replace(/"/g, '""')}"`,
    placeholder: (i) => `$${i + 1}`,
    differs: (column, value) => `${column} IS DISTINCT FROM ${value}`,
    columns: 'SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1',
    poolHas: ['query'],
    // `pg` binds `values` with the extended protocol. `{ rows, rowCount }`.
    async read(pool, statement, text, values) {
      try {
        const { rows } = await pool.query(text, values)
        return rows
      } catch (err) {
        throw statementError(statement, err)
      }
    },
    // PostgreSQL converts nothing silently: a statement either does what it says or fails.
    session: (pool, work) => work(pool),
    async write(pool, statement, text, values) {
      try {
        return { count: (await pool.query(text, values)).rowCount }
      } catch (err) {
        if (postgresRefusal(err?.code)) return { refused: `${statement} refused: ${err.code}`, error: statementError(statement, err) }
        throw statementError(statement, err)
      }
    },
    // `ON CONFLICT (<id>)`: only a row with this id makes the insert do nothing; any other
    // unique key the profile violates fails the statement.
    async insert(pool, { table, id, columns }, values) {
      const text = `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT (${id}) DO NOTHING`
      const { count, refused, error } = await this.write(pool, 'INSERT', text, values)
      return refused === undefined ? { added: count === 1 } : { refused, error }
    },
  },
  mysql: {
    quote: (name) => `\`${name.replace(/`/g, '``')}\``,
    placeholder: () => '?',
    // `<=>` is MySQL's NULL-safe equality.
    differs: (column, value) => `NOT (${column} <=> ${value})`,
    columns: 'SELECT COLUMN_NAME AS name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?',
    poolHas: ['query', 'execute'],
    // `execute()`: a server-side prepared statement, the values sent apart from the text.
    async read(pool, statement, text, values) {
      try {
        const [rows] = values.length > 0 ? await pool.execute(text, values) : await pool.query(text)
        return rows
      } catch (err) {
        throw statementError(statement, err, err?.sqlState)
      }
    },
    // One connection for a write and its checks (its warnings, the rollback): a connection of
    // the pool, else the connection the adapter was given, one write at a time.
    session: undefined,
    /**
     * Runs a write in a transaction on `connection` and keeps it only when the server neither
     * failed it nor warned: a warning means a value was truncated or converted, which counts
     * as refused (whatever the application's `sql_mode`, which the adapter leaves alone).
     * Resolves `{ count }` when kept, `{ refused, error }` when the table refused; rejects
     * otherwise. `amend`, when given, may mend a write that warned inside its transaction
     * (resolving true to commit it, still reported as refused) instead of rolling it back.
     */
    async write(connection, statement, text, values, amend) {
      // The transaction's own statements; a failure of one names it, never the server's text.
      const run = async (step) => {
        try {
          return (await connection.query(step))[0]
        } catch (err) {
          throw statementError(`${statement} (${step})`, err, err?.sqlState)
        }
      }
      for (let attempt = 1; ; attempt++) {
        await run('START TRANSACTION')
        let outcome
        try {
          outcome = await this.attempt(connection, run, statement, text, values, amend)
        } catch (err) {
          // Not left open on a connection that goes on serving (one given instead of a pool).
          await connection.query('ROLLBACK').catch(() => {})
          throw err
        }
        if (outcome.deadlock === undefined) return outcome
        if (attempt === 3) throw statementError(statement, outcome.deadlock, outcome.deadlock.sqlState)
      }
    },
    // One try of `write`'s, in its transaction, which it ends; `{ deadlock }` when the server
    // chose it as a deadlock's victim (rolled back: it may try again).
    async attempt(connection, run, statement, text, values, amend) {
      let result
      try {
        ;[result] = await connection.execute(text, values)
      } catch (err) {
        await run('ROLLBACK')
        if (err?.errno === ER_LOCK_DEADLOCK) return { deadlock: err }
        const error = statementError(statement, err, err?.sqlState)
        if (!mysqlRefusal(err)) throw error
        return { refused: `${statement} refused: ${error.code} (SQLSTATE ${err.sqlState})`, error, duplicate: err.code === 'ER_DUP_ENTRY' }
      }
      if (result.warningStatus > 0) {
        // Codes only: a warning's text quotes the value ("Incorrect string value: …").
        const codes = (await run('SHOW WARNINGS')).filter((w) => w.Level !== 'Note').map((w) => w.Code)
        if (codes.length > 0) {
          const refused = `${statement} refused: warning ${codes.join(', ')}`
          if (amend !== undefined && (await amend())) {
            await run('COMMIT')
            return { count: result.affectedRows, refused }
          }
          await run('ROLLBACK')
          const error = new Error(`${statement} failed: the server would truncate or convert a value (warning ${codes.join(', ')})`)
          error.code = `WARNING_${codes[0]}`
          return { refused, error }
        }
      }
      await run('COMMIT')
      return { count: result.affectedRows }
    },
    // A plain INSERT: a duplicate on the id's key means the row was there (`false`); on any
    // other key it is the profile the table refuses. `INSERT IGNORE` and `ON DUPLICATE KEY
    // UPDATE` would hide which key (and IGNORE turns every error into a warning).
    async insert(connection, { table, id, columns }, values) {
      const execute = async (statement, text, values) => {
        try {
          return (await connection.execute(text, values))[0]
        } catch (err) {
          throw statementError(statement, err, err?.sqlState)
        }
      }
      const present = async () => (await execute('SELECT', `SELECT 1 FROM ${table} WHERE ${id} = ? LIMIT 1`, [values[0]])).length > 0
      // A row inserted with converted profile values, and the id as given: it keeps the id
      // alone (its profile columns back to their defaults) in the same transaction. Rolling
      // it back instead would let the logins waiting on its key deadlock.
      const amend =
        columns.length > 1
          ? async () => {
              if (!(await present())) return false
              const reset = columns.slice(1).map((column) => `${column} = DEFAULT`)
              const result = await execute('UPDATE', `UPDATE ${table} SET ${reset.join(', ')} WHERE ${id} = ?`, [values[0]])
              return result.warningStatus === 0
            }
          : undefined
      const text = `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`
      const outcome = await this.write(connection, 'INSERT', text, values, amend)
      if (outcome.error === undefined) return { added: outcome.count === 1, refused: outcome.refused }
      // A duplicate on the id's key: the row was there; on another key, a refused profile.
      if (outcome.duplicate && (await present())) return { added: false }
      return outcome
    },
  },
}

/** One write at a time on `connection` (an adapter given a connection, not a pool). */
function serialized(connection) {
  let tail = Promise.resolve()
  return (work) => {
    const run = tail.then(() => work(connection))
    tail = run.catch(() => {})
    return run
  }
}

/**
 * A user store on `pool` in `dialect`: `idColumn` must be the table's primary key or unique.
 * Profile columns are `profileColumns`, else the table's columns named like a profile field
 * (in any case, as SQLite matches them), read once.
 */
function sqlUserStore(kind, pool, options) {
  const { table, idColumn, profileColumns } = readOptions(`userStores.${kind} options`, options, sqlUserStoreOptions)
  const dialect = dialects[kind]
  const methods = dialect.poolHas
  if (pool === null || typeof pool !== 'object' || methods.some((method) => typeof pool[method] !== 'function')) {
    throw new TypeError(`userStores.${kind}(pool) needs a pool with ${methods.map((m) => `a ${m}()`).join(' and ')} method`)
  }
  const { quote, placeholder } = dialect
  const read = (statement, text, values) => dialect.read(pool, statement, text, values)
  const quotedTable = quote(table)
  const id = quote(idColumn)

  // The connection a write and its checks run on.
  let session = dialect.session
  if (session === undefined) {
    if (typeof pool.getConnection === 'function') {
      session = async (_, work) => {
        const connection = await pool.getConnection().catch((err) => {
          throw statementError('connect', err, err?.sqlState)
        })
        try {
          const result = await work(connection)
          connection.release()
          return result
        } catch (err) {
          // It may have failed inside a transaction: not given back to the pool as it is.
          connection.destroy()
          throw err
        }
      }
    } else {
      const queue = serialized(pool)
      session = (_, work) => queue(work)
    }
  }

  let columns
  // `{ field: column }` for the profile fields the table has columns for.
  const profileMap = () =>
    (columns ??= Promise.resolve(
      profileColumns ?? read('SELECT', dialect.columns, [table]).then((rows) => rows.map((row) => row.name)),
    ).then((names) => {
      const byLowerName = new Map(names.map((name) => [name.toLowerCase(), name]))
      const map = {}
      for (const field of PROFILE_FIELDS) {
        const column = byLowerName.get(field.toLowerCase())
        if (column !== undefined && column.toLowerCase() !== idColumn.toLowerCase()) map[field] = column
      }
      return map
    })).catch((err) => {
      columns = undefined
      throw err
    })
  // The fields of `profile` the table has columns for, as quoted columns and their values.
  const profileValues = async (profile) => {
    const map = await profileMap()
    const present = Object.entries(profile ?? {}).filter(([field, value]) => map[field] !== undefined && value !== undefined)
    return { columns: present.map(([field]) => quote(map[field])), values: present.map(([, value]) => value) }
  }

  /** Adds the row, with the profile when the table takes it, else with the id alone. */
  async function addUser(userId, profile) {
    const { columns, values } = await profileValues(profile)
    return session(pool, async (connection) => {
      let refused
      if (columns.length > 0) {
        const outcome = await dialect.insert(connection, { table: quotedTable, id, columns: [id, ...columns] }, [userId, ...values])
        if (outcome.error === undefined) return outcome
        refused = outcome.refused
      }
      const outcome = await dialect.insert(connection, { table: quotedTable, id, columns: [id] }, [userId])
      // The table refuses the user whatever the profile: an error, never a silent `false`.
      if (outcome.error !== undefined) throw outcome.error
      return outcome.added ? { added: true, refused } : { added: false }
    })
  }

  /** Runs a profile update; one the table refuses is left undone and reported. */
  async function update(text, values) {
    return session(pool, async (connection) => {
      const { refused } = await dialect.write(connection, 'UPDATE', text, values)
      return { refused }
    })
  }

  async function updateProfile(userId, profile) {
    const { columns, values } = await profileValues(profile)
    if (columns.length === 0) return {}
    // Only a changed row is written: a returning user costs no write. Placeholders are
    // numbered in order (the values, the id, the values again), which suits both dialects.
    const n = columns.length
    const set = columns.map((column, i) => `${column} = ${placeholder(i)}`)
    const changed = columns.map((column, i) => dialect.differs(column, placeholder(n + 1 + i)))
    return update(`UPDATE ${quotedTable} SET ${set.join(', ')} WHERE ${id} = ${placeholder(n)} AND (${changed.join(' OR ')})`, [
      ...values,
      userId,
      ...values,
    ])
  }

  async function fillProfile(userId, profile) {
    const { columns, values } = await profileValues(profile)
    if (columns.length === 0) return {}
    // Only empty (NULL) columns are written, and only a row that has one.
    const n = columns.length
    const set = columns.map((column, i) => `${column} = COALESCE(${column}, ${placeholder(i)})`)
    const empty = columns.map((column) => `${column} IS NULL`)
    return update(`UPDATE ${quotedTable} SET ${set.join(', ')} WHERE ${id} = ${placeholder(n)} AND (${empty.join(' OR ')})`, [
      ...values,
      userId,
    ])
  }

  const store = {
    // Reads zero rows: fails when the table or its id column is missing, spending no login.
    async ready() {
      await read('SELECT', `SELECT ${id} FROM ${quotedTable} WHERE 1 = 0`, [])
      await profileMap()
    },
    async hasUser(userId) {
      const rows = await read('SELECT', `SELECT 1 FROM ${quotedTable} WHERE ${id} = ${placeholder(0)} LIMIT 1`, [userId])
      return rows.length > 0
    },
    async addUser(userId, profile) {
      return (await addUser(userId, profile)).added
    },
    async updateProfile(userId, profile) {
      await updateProfile(userId, profile)
    },
    async fillProfile(userId, profile) {
      await fillProfile(userId, profile)
    },
  }
  store.addUser[OUTCOMES] = addUser
  store.updateProfile[OUTCOMES] = updateProfile
  store.fillProfile[OUTCOMES] = fillProfile
  return store
}

/**
 * A user store in PostgreSQL through a `pg` Pool (or Client): `INSERT … ON CONFLICT (<id>) DO
 * NOTHING`, so `idColumn` must be the primary key or unique.
 * @param {{ query: Function }} pool
 * @param {{ table?: string, idColumn?: string, profileColumns?: string[] }} [options]
 */
const postgres = (pool, options) => sqlUserStore('postgres', pool, options)

/**
 * A user store in MySQL or MariaDB through a `mysql2/promise` pool (or connection): prepared
 * statements (`execute()`), a plain `INSERT` in a transaction on one connection of the pool,
 * so `idColumn` must be the primary key or carry a unique index.
 * @param {{ query: Function, execute: Function, getConnection?: Function }} pool
 * @param {{ table?: string, idColumn?: string, profileColumns?: string[] }} [options]
 */
const mysql = (pool, options) => sqlUserStore('mysql', pool, options)

module.exports = { postgres, mysql, PROFILE_FIELDS, OUTCOMES }
