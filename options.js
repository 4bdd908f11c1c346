'use strict'

// Every option of the public API, declared once: its type check and, in a one-line comment,
// what it is and its default (the native side applies the factory's defaults; index.d.ts
// documents each in full). `readOptions` is the one check of an options object: a misspelt
// key is an error, not a no-op.

/** `null` or the type of `value`, for errors. */
function describe(value) {
  return value === null ? 'null' : typeof value
}

// Non-strings reach the native side as missing, which rejects with 6001 naming the parameter.
const stringOrUndefined = (value) => (typeof value === 'string' ? value : undefined)

// A checker of one JavaScript type: `expect('string')(name, value)` throws a TypeError naming
// the argument unless `value` has that type.
const expect = (type) => (name, value) => {
  if (typeof value !== type) throw new TypeError(`${name} must be a ${type}, got ${describe(value)}`)
  return value
}

// The same check for an argument that may be left out (`undefined` or `null`).
const optional = (type) => (name, value) => (value == null ? undefined : expect(type)(name, value))

const expectString = expect('string')
const optionalString = optional('string')
const optionalNumber = optional('number')
const optionalFunction = optional('function')
const optionalBoolean = optional('boolean')

function optionalStringArray(name, value) {
  if (value == null) return undefined
  if (!Array.isArray(value)) throw new TypeError(`${name} must be an array of strings, got ${describe(value)}`)
  value.forEach((item, i) => expectString(`${name}[${i}]`, item))
  return [...value]
}

// A table of options nested in another, checked with `readOptions`.
const optionalTable = (types) => (name, value) => (value == null ? undefined : readOptions(name, value, types))

// PEM text, as a string or as the Buffer `fs.readFileSync` gives.
const optionalPem = (name, value) => (Buffer.isBuffer(value) ? value.toString('utf8') : optionalString(name, value))

/**
 * Checks `options` against `types` (`{ name: check(name, value) }`): `null` or `undefined`
 * reads as `{}`, an unknown key throws a TypeError listing the known ones, and each check
 * gives the option's value (or throws naming `what.name`).
 */
function readOptions(what, options, types) {
  if (options === null || options === undefined) options = {}
  if (typeof options !== 'object') throw new TypeError(`${what} must be an object, got ${describe(options)}`)
  for (const name of Object.keys(options)) {
    if (!Object.hasOwn(types, name)) {
      throw new TypeError(`${what} has an unknown key '${name}'; known keys: ${Object.keys(types).join(', ')}`)
    }
  }
  const checked = {}
  for (const [name, check] of Object.entries(types)) checked[name] = check(`${what}.${name}`, options[name])
  return checked
}

// The factory's positional arguments (`appId`, `appSecret`, `sku` are `expectString`).

/** A token argument (`extractOpenId`, `extractSku`). */
const expectToken = (token) => expectString('token', token)

// `db`: a path, a node-sqlite3 Database (`filename`) or a better-sqlite3 Database (`name`);
// `null` with a `userStore`, where the native side says whether a file is needed.
function dbPath(db, userStore) {
  if (db == null && userStore !== undefined) return undefined
  if (typeof db === 'string') return db
  if (db !== null && typeof db === 'object') {
    if (typeof db.filename === 'string') return db.filename
    if (typeof db.name === 'string') return db.name
  }
  throw new TypeError('db must be a SQLite file path, a node-sqlite3 Database or a better-sqlite3 Database, got ' + describe(db))
}

// `tokenTTL` in seconds: a number, or a string of digits as `process.env` gives it (1.3.2
// handed it to Redis's EXPIRE, which reads such strings); left out, the native default (3 days).
function ttlOf(value) {
  if (typeof value === 'string' && /^\s*\d+\s*$/.test(value)) return Number(value)
  if (typeof value === 'string') throw new TypeError('tokenTTL must be a number of seconds or a string of digits')
  return optionalNumber('tokenTTL', value)
}

// `options.userStore` (`UserStore` in index.d.ts): `hasUser` and `addUser` are required, the
// others optional.
const USER_STORE_OPTIONAL_METHODS = ['updateProfile', 'fillProfile', 'ready']
function optionalUserStore(name, store) {
  if (store == null) return undefined
  if (typeof store !== 'object') throw new TypeError(`${name} must be an object, got ${describe(store)}`)
  for (const method of ['hasUser', 'addUser']) {
    if (typeof store[method] !== 'function') throw new TypeError(`${name}.${method} must be a function`)
  }
  for (const method of USER_STORE_OPTIONAL_METHODS) {
    if (store[method] != null && typeof store[method] !== 'function') {
      throw new TypeError(`${name}.${method} must be a function when given`)
    }
  }
  return store
}

/** `options.redisTls` (`RedisTlsOptions`): PEM text or Buffers; without it, the system's roots. */
const redisTlsOptions = {
  ca: optionalPem, // the CA that signed the servers' certificates
  cert: optionalPem, // this client's certificate, for mutual TLS
  key: optionalPem, // its private key
  rejectUnauthorized: optionalBoolean, // default true
}

/** `options.redisSentinel` (`RedisSentinelOptions`). */
const redisSentinelOptions = {
  // `redis://host:port` URLs of some of the sentinels; required
  nodes: (name, value) => {
    if (value == null) throw new TypeError(`${name} must be an array of strings, got ${describe(value)}`)
    return optionalStringArray(name, value)
  },
  masterName: expectString, // the master's name in the sentinels' configuration; required
  sentinelPassword: optionalString, // the sentinels' own password; default none
}

/** The factory's `options` (`Options` in index.d.ts); every default is the native side's. */
const factoryOptions = {
  redisUrl: optionalString, // default env MPAUTHX_REDIS_URL, else redis://127.0.0.1:6379
  redisClusterNodes: optionalStringArray, // a Redis Cluster instead; default env MPAUTHX_REDIS_CLUSTER_NODES
  redisTls: optionalTable(redisTlsOptions), // TLS for rediss:// URLs
  redisSentinel: optionalTable(redisSentinelOptions), // Redis Sentinel instead of redisUrl
  wechatApiBase: optionalString, // default env MPAUTHX_WECHAT_API_BASE, else https://api.weixin.qq.com
  httpTimeoutMs: optionalNumber, // bound on the jscode2session exchange; default 5000
  tokenStore: optionalString, // 'redis' (default) or 'sqlite'
  validationCacheSize: optionalNumber, // live tokens remembered per instance; default 10000, 0 turns it off
  slidingTtl: optionalBoolean, // a token checked past half its TTL gets it back; default false
  logger: optionalFunction, // receives the diagnostics events; default none (DEBUG=mpauthx: stderr)
  userStore: optionalUserStore, // users in the application's database; default the SQLite `user` table
  userStoreTimeoutMs: optionalNumber, // bound on one userStore call; default 5000
  profileWrites: optionalString, // 'insert' (default), 'always' or 'never'
  registrationTtl: optionalNumber, // seconds Redis remembers a registered user; default 2592000
  revokeUserScanMs: optionalNumber, // bound on revokeUser's SCAN; default 10000
}

/** `tokenFrom` (`TokenFrom`): where a request's token is read, in the order the keys are written. */
const tokenFromOptions = {
  bearer: optionalBoolean, // `Authorization: Bearer <token>` first; default true
  header: optionalString, // a header's name; default `x-access-token` when `tokenFrom` is not given
  cookie: optionalString, // a cookie's name
  query: optionalString, // a query parameter's name
}

// A `match` or `ignore` pattern (`PathPattern`): a path, a RegExp, a function of the request,
// or an array of these.
function checkPathPattern(name, pattern) {
  if (typeof pattern === 'string' || typeof pattern === 'function' || pattern instanceof RegExp) return pattern
  if (Array.isArray(pattern)) {
    pattern.forEach((item, i) => checkPathPattern(`${name}[${i}]`, item))
    return pattern
  }
  throw new TypeError(`${name} must be a path (string), a RegExp, a function of the request or an array of these, got ` + describe(pattern))
}
const optionalPathPattern = (name, value) => (value == null ? undefined : checkPathPattern(name, value))

/** What `authenticate()` acts on (`AuthenticateOptions`). */
const authenticateOptions = {
  anySku: optionalBoolean, // admit a live token of any sku; default false (this instance's only)
  optional: optionalBoolean, // no token resolves with null; default false (rejects with 6007)
  // default Bearer, then the `x-access-token` header
  tokenFrom: (name, value) => {
    if (value == null) return undefined
    readOptions(name, value, tokenFromOptions)
    // The sources in the order the caller wrote them: the first found wins.
    return Object.fromEntries(Object.entries(value).filter(([, source]) => source != null))
  },
}

/**
 * `middleware()`, `fastifyPlugin()` and `authenticate()` (`MiddlewareOptions`). `authenticate`
 * is an explicit check: it accepts `match`, `ignore` and `failureBody`, so that one options
 * object serves both, and acts on none of them.
 */
const middlewareOptions = {
  ...authenticateOptions,
  failureBody: optionalFunction, // the JSON body of a refusal; default `{ status_code, status_message }`
  match: optionalPathPattern, // the requests to check; default all
  ignore: optionalPathPattern, // the requests not to check; default none
}

// Keys that Egg and Midway pass to every middleware factory; the framework acts on them.
const frameworkKey = () => undefined

/** `koaMiddleware()` (`KoaMiddlewareOptions`): also the keys Egg and Midway pass. */
const koaMiddlewareOptions = { ...middlewareOptions, enable: frameworkKey, core: frameworkKey }

/** `isTokenValid(token, options)` (`IsTokenValidOptions`). */
const isTokenValidOptions = {
  ownSku: optionalBoolean, // reject a live token of another sku with 6007; default false (1.3.2's check)
}

/** `revokeUser(userId, options)`. */
const revokeUserOptions = {
  allSkus: optionalBoolean, // the user's tokens of every sku; default false (this instance's sku)
}

// A non-empty string.
const nonEmptyString = (name, value) => {
  if (typeof value !== 'string' || value === '') throw new TypeError(`${name} must be a non-empty string`)
  return value
}

/** `userStores.postgres(pool, options)` and `userStores.mysql(pool, options)`. */
const sqlUserStoreOptions = {
  table: (name, value) => (value === undefined ? 'user' : nonEmptyString(name, value)), // default 'user'
  idColumn: (name, value) => (value === undefined ? 'openId' : nonEmptyString(name, value)), // default 'openId', 1.3.2's column
  // default the table's columns named like a profile field, read once
  profileColumns: (name, value) => {
    if (value !== undefined && !(Array.isArray(value) && value.every((column) => typeof column === 'string'))) {
      throw new TypeError(`${name} must be an array of column names`)
    }
    return value
  },
}

module.exports = {
  describe,
  stringOrUndefined,
  readOptions,
  expectString,
  optionalString,
  expectToken,
  dbPath,
  ttlOf,
  checkPathPattern,
  USER_STORE_OPTIONAL_METHODS,
  factoryOptions,
  authenticateOptions,
  middlewareOptions,
  koaMiddlewareOptions,
  isTokenValidOptions,
  revokeUserOptions,
  sqlUserStoreOptions,
}
