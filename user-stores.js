'use strict'

// User-store adapters over the application's own pool: `postgres(pool, options)` for a `pg`
// Pool and `mysql(pool, options)` for a `mysql2/promise` pool. Each is plain JavaScript on the
// pool it is given (its connection settings, TLS and pooling stay the application's), and
// neither `pg` nor `mysql2` is a dependency of mpauthx. The contract any other store follows
// is `UserStore` in index.d.ts: `hasUser`, `addUser` (insert when absent, in one statement, so
// that concurrent logins of a new user add one row) and, optionally, `updateProfile` (write
// over), `fillProfile` (write where empty) and `ready` (check the table without a login).

/** The profile fields a login may carry, as the SQLite store names them (src/crypto.rs). */
const PROFILE_FIELDS = ['nickName', 'gender', 'language', 'city', 'province', 'country', 'avatarUrl']

/**
 * What differs between the SQL dialects: quoting, placeholders, insert-if-absent, the
 * NULL-safe "differs" test, how columns are listed, and how `query` answers.
 */
const dialects = {
  postgres: {
    quote: (name) => `"${name.replace(/"/g, '""')}"`,
    placeholder: (i) => `$${i + 1}`,
    insertIfAbsent: (table, columns, values) => `INSERT INTO ${table} (${columns}) VALUES (${values}) ON CONFLICT DO NOTHING`,
    differs: (column, value) => `${column} IS DISTINCT FROM ${value}`,
    columns:
      'SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1',
    // `pg`: `{ rows, rowCount }`.
    answer: (result) => ({ rows: result.rows, count: result.rowCount }),
  },
  mysql: {
    quote: (name) => `\`${name.replace(/`/g, '``')}\``,
    placeholder: () => '?',
    insertIfAbsent: (table, columns, values) => `INSERT IGNORE INTO ${table} (${columns}) VALUES (${values})`,
    // `<=>` is MySQL's NULL-safe equality.
    differs: (column, value) => `NOT (${column} <=> ${value})`,
    columns: 'SELECT COLUMN_NAME AS name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?',
    // `mysql2/promise`: `[rows, fields]` for a SELECT, `[{ affectedRows }, …]` for a write.
    answer: ([result]) => (Array.isArray(result) ? { rows: result, count: result.length } : { rows: [], count: result.affectedRows }),
  },
}

/**
 * A user store on `pool` in `dialect`: `idColumn` must be the table's primary key or unique,
 * since adding a user is one insert-if-absent statement. Profile columns are `profileColumns`,
 * else the table's columns named like a profile field (in any case, as SQLite matches them),
 * read once.
 */
function sqlUserStore(kind, pool, options) {
  if (pool === null || typeof pool !== 'object' || typeof pool.query !== 'function') {
    throw new TypeError(`userStores.${kind}(pool) needs a pool with a query() method`)
  }
  const { table = 'user', idColumn = 'openId', profileColumns, ...unknown } = options ?? {}
  const extra = Object.keys(unknown)
  if (extra.length > 0) {
    throw new TypeError(`userStores.${kind} options have an unknown key '${extra[0]}'; known keys: table, idColumn, profileColumns`)
  }
  for (const [name, value] of [['table', table], ['idColumn', idColumn]]) {
    if (typeof value !== 'string' || value === '') throw new TypeError(`userStores.${kind} option ${name} must be a non-empty string`)
  }
  if (profileColumns !== undefined && !(Array.isArray(profileColumns) && profileColumns.every((c) => typeof c === 'string'))) {
    throw new TypeError(`userStores.${kind} option profileColumns must be an array of column names`)
  }
  const dialect = dialects[kind]
  const { quote, placeholder } = dialect
  const query = async (text, values) => dialect.answer(await pool.query(text, values))
  const quotedTable = quote(table)
  const id = quote(idColumn)

  let columns
  // `{ field: column }` for the profile fields the table has columns for.
  const profileMap = () =>
    (columns ??= Promise.resolve(profileColumns ?? query(dialect.columns, [table]).then(({ rows }) => rows.map((row) => row.name))).then(
      (names) => {
        const byLowerName = new Map(names.map((name) => [name.toLowerCase(), name]))
        const map = {}
        for (const field of PROFILE_FIELDS) {
          const column = byLowerName.get(field.toLowerCase())
          if (column !== undefined && column.toLowerCase() !== idColumn.toLowerCase()) map[field] = column
        }
        return map
      },
    )).catch((err) => {
      columns = undefined
      throw err
    })
  // The fields of `profile` the table has columns for, as quoted columns and their values.
  const profileValues = async (profile) => {
    const map = await profileMap()
    const present = Object.entries(profile ?? {}).filter(([field, value]) => map[field] !== undefined && value !== undefined)
    return { columns: present.map(([field]) => quote(map[field])), values: present.map(([, value]) => value) }
  }

  return {
    // Reads zero rows: fails when the table or its id column is missing, spending no login.
    async ready() {
      await query(`SELECT ${id} FROM ${quotedTable} WHERE 1 = 0`, [])
      await profileMap()
    },
    async hasUser(userId) {
      const { count } = await query(`SELECT 1 FROM ${quotedTable} WHERE ${id} = ${placeholder(0)} LIMIT 1`, [userId])
      return count > 0
    },
    async addUser(userId, profile) {
      const { columns, values } = await profileValues(profile)
      const all = [id, ...columns]
      const { count } = await query(dialect.insertIfAbsent(quotedTable, all.join(', '), all.map((_, i) => placeholder(i)).join(', ')), [
        userId,
        ...values,
      ])
      return count === 1
    },
    async updateProfile(userId, profile) {
      const { columns, values } = await profileValues(profile)
      if (columns.length === 0) return
      // Only a changed row is written: a returning user costs no write. Placeholders are
      // numbered in order (the values, the id, the values again), which suits both dialects.
      const n = columns.length
      const set = columns.map((column, i) => `${column} = ${placeholder(i)}`)
      const changed = columns.map((column, i) => dialect.differs(column, placeholder(n + 1 + i)))
      await query(`UPDATE ${quotedTable} SET ${set.join(', ')} WHERE ${id} = ${placeholder(n)} AND (${changed.join(' OR ')})`, [
        ...values,
        userId,
        ...values,
      ])
    },
    async fillProfile(userId, profile) {
      const { columns, values } = await profileValues(profile)
      if (columns.length === 0) return
      // Only empty (NULL) columns are written, and only a row that has one.
      const n = columns.length
      const set = columns.map((column, i) => `${column} = COALESCE(${column}, ${placeholder(i)})`)
      const empty = columns.map((column) => `${column} IS NULL`)
      await query(`UPDATE ${quotedTable} SET ${set.join(', ')} WHERE ${id} = ${placeholder(n)} AND (${empty.join(' OR ')})`, [
        ...values,
        userId,
      ])
    },
  }
}

/**
 * A user store in PostgreSQL through a `pg` Pool (or Client): `INSERT … ON CONFLICT DO
 * NOTHING`, so `idColumn` must be the primary key or unique.
 * @param {{ query: Function }} pool
 * @param {{ table?: string, idColumn?: string, profileColumns?: string[] }} [options]
 */
const postgres = (pool, options) => sqlUserStore('postgres', pool, options)

/**
 * A user store in MySQL or MariaDB through a `mysql2/promise` pool (or connection): `INSERT
 * IGNORE`, so `idColumn` must be the primary key or carry a unique index.
 * @param {{ query: Function }} pool
 * @param {{ table?: string, idColumn?: string, profileColumns?: string[] }} [options]
 */
const mysql = (pool, options) => sqlUserStore('mysql', pool, options)

module.exports = { postgres, mysql, PROFILE_FIELDS }
