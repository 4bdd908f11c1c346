'use strict'

// User-store adapters over the application's own pool: `postgres(pool, options)` for a `pg`
// Pool and `mysql(pool, options)` for a `mysql2/promise` pool. Each is plain JavaScript on the
// pool it is given (its connection settings, TLS and pooling stay the application's), and
// neither `pg` nor `mysql2` is a dependency of mpauthx. The contract any other store follows
// is `UserStore` in index.d.ts: `hasUser`, `addUser` (insert when absent, in one statement, so
// that concurrent logins of a new user add one row) and, optionally, `updateProfile`.

/** The profile fields a login may carry, as the SQLite store names them (src/crypto.rs). */
const PROFILE_FIELDS = ['nickName', 'gender', 'language', 'city', 'province', 'country', 'avatarUrl']

/**
 * What both adapters share: the options, and the profile columns of the table (given, or
 * found once by `columnsOf()`), matched to the profile fields in any case, as SQLite matches
 * column names.
 */
function adapterSettings(kind, pool, options, columnsOf) {
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
  let columns
  // `{ field: column }` for the profile fields the table has columns for.
  const profileMap = () =>
    (columns ??= Promise.resolve(profileColumns ?? columnsOf(table)).then((names) => {
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
  // The fields of `profile` the table has columns for, as `[column, value]` pairs.
  const profileValues = async (profile) => {
    const map = await profileMap()
    return Object.entries(profile ?? {})
      .filter(([field, value]) => map[field] !== undefined && value !== undefined)
      .map(([field, value]) => [map[field], value])
  }
  return { table, idColumn, profileValues }
}

/**
 * A user store in PostgreSQL through a `pg` Pool (or Client). `idColumn` must be the table's
 * primary key or carry a unique constraint: `addUser` is `INSERT … ON CONFLICT DO NOTHING`.
 * @param {{ query: Function }} pool
 * @param {{ table?: string, idColumn?: string, profileColumns?: string[] }} [options]
 */
function postgres(pool, options) {
  const quote = (name) => `"${name.replace(/"/g, '""')}"`
  const settings = adapterSettings('postgres', pool, options, async (table) => {
    const { rows } = await pool.query(
      'SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1',
      [table],
    )
    return rows.map((row) => row.column_name)
  })
  const table = quote(settings.table)
  const id = quote(settings.idColumn)
  return {
    async hasUser(userId) {
      const { rowCount } = await pool.query(`SELECT 1 FROM ${table} WHERE ${id} = $1 LIMIT 1`, [userId])
      return rowCount > 0
    },
    async addUser(userId, profile) {
      const values = await settings.profileValues(profile)
      const columns = [id, ...values.map(([column]) => quote(column))]
      const placeholders = columns.map((_, i) => `$${i + 1}`)
      const { rowCount } = await pool.query(
        `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${placeholders.join(', ')}) ON CONFLICT DO NOTHING`,
        [userId, ...values.map(([, value]) => value)],
      )
      return rowCount === 1
    },
    async updateProfile(userId, profile) {
      const values = await settings.profileValues(profile)
      if (values.length === 0) return
      // Only a changed row is written: a returning user costs no write.
      const set = values.map(([column], i) => `${quote(column)} = $${i + 2}`)
      const changed = values.map(([column], i) => `${quote(column)} IS DISTINCT FROM $${i + 2}`)
      await pool.query(`UPDATE ${table} SET ${set.join(', ')} WHERE ${id} = $1 AND (${changed.join(' OR ')})`, [
        userId,
        ...values.map(([, value]) => value),
      ])
    },
  }
}

/**
 * A user store in MySQL or MariaDB through a `mysql2/promise` pool (or connection).
 * `idColumn` must be the table's primary key or carry a unique index: `addUser` is
 * `INSERT IGNORE`.
 * @param {{ query: Function }} pool
 * @param {{ table?: string, idColumn?: string, profileColumns?: string[] }} [options]
 */
function mysql(pool, options) {
  const quote = (name) => `\`${name.replace(/`/g, '``')}\``
  const settings = adapterSettings('mysql', pool, options, async (table) => {
    const [rows] = await pool.query(
      'SELECT COLUMN_NAME AS name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?',
      [table],
    )
    return rows.map((row) => row.name)
  })
  const table = quote(settings.table)
  const id = quote(settings.idColumn)
  return {
    async hasUser(userId) {
      const [rows] = await pool.query(`SELECT 1 FROM ${table} WHERE ${id} = ? LIMIT 1`, [userId])
      return rows.length > 0
    },
    async addUser(userId, profile) {
      const values = await settings.profileValues(profile)
      const columns = [id, ...values.map(([column]) => quote(column))]
      const [result] = await pool.query(
        `INSERT IGNORE INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`,
        [userId, ...values.map(([, value]) => value)],
      )
      return result.affectedRows === 1
    },
    async updateProfile(userId, profile) {
      const values = await settings.profileValues(profile)
      if (values.length === 0) return
      // Only a changed row is written (`<=>` is MySQL's NULL-safe equality).
      const set = values.map(([column]) => `${quote(column)} = ?`)
      const changed = values.map(([column]) => `NOT (${quote(column)} <=> ?)`)
      const params = values.map(([, value]) => value)
      await pool.query(`UPDATE ${table} SET ${set.join(', ')} WHERE ${id} = ? AND (${changed.join(' OR ')})`, [
        ...params,
        userId,
        ...params,
      ])
    },
  }
}

module.exports = { postgres, mysql, PROFILE_FIELDS }
