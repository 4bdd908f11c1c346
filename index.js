'use strict'

// The factory of mpauthx 1.3.2 around the native binding. It checks JavaScript types,
// turns native replies into the original's success objects and coded Errors, and holds
// no other logic.

const { Mpauthx } = loadBinding()
const { constants, MpauthxError } = require('./constants.js')
const { createLogger, reportCall } = require('./diagnostics.js')
const userStores = require('./user-stores.js')
const middleware = require('./middleware.js')
const { createValidationCache } = require('./validation-cache.js')

// The addon for this platform, or an error that says first which package is missing and how
// to install it, with napi-rs's own account of every place it looked as its cause.
function loadBinding() {
  try {
    return require('./binding.js')
  } catch (cause) {
    if (!/Cannot find native binding/.test(String(cause?.message))) throw cause
    const name = `mpauthx-${platformTarget()}`
    const error = new Error(
      `mpauthx has no native binary for this platform: the package ${name} is not installed. ` +
        'It is an optional dependency of mpauthx: install with `npm install --include=optional` ' +
        '(optional dependencies were skipped: --omit=optional, or a lockfile made on another ' +
        `platform), or add it by name: \`npm install ${name}\`. Binaries are published for ` +
        'linux x64/arm64 (glibc and musl), macOS x64/arm64 and Windows x64.',
    )
    error.cause = cause
    throw error
  }
}

// The suffix of this platform's package, as napi-rs names them.
function platformTarget() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const glibc = process.report?.getReport?.().header?.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

// The one place where native replies become what mpauthx 1.3.2 resolved or rejected with.
// `log` is the instance's diagnostics logger, or null; `call` starts the native call and
// `pick` takes the result out of a successful reply.
async function settle(log, method, call, pick = (reply) => reply.response) {
  const started = log && performance.now()
  let reply
  try {
    reply = await call()
  } catch (cause) {
    // Only a panic or a binding failure lands here; the native side reports all else as replies.
    if (log) reportCall(log, method, started, undefined)
    throw new MpauthxError(constants.statusCode.unknownError, 'internal error in mpauthx', { cause })
  }
  if (log) reportCall(log, method, started, reply)
  if (reply.statusCode !== constants.statusCode.success) {
    throw new MpauthxError(reply.statusCode, reply.message, { detail: reply.detail })
  }
  return { status_code: reply.statusCode, status_message: reply.message, response: pick(reply) }
}

// The most tokens checked in one native call; more calls in one tick make more batches.
const MAX_BATCH = 1024

// `isTokenValid` calls made in the same tick are checked by one native call, which sends
// their tokens to Redis as one pipeline: one napi crossing and one round trip for many calls,
// and a lone call waits for no timer (the batch goes at the end of the current tick).
function batchedTokenCheck(native, validationCache, log) {
  let pending = []

  function flush() {
    const batch = pending
    pending = []
    const started = log && performance.now()
    const settled = (reply) => {
      for (let i = 0; i < batch.length; i++) {
        const code = reply.statusCodes[i]
        if (code === constants.statusCode.success) batch[i].resolve()
        else batch[i].reject(new MpauthxError(code, reply.messages[i], { detail: reply.details[i] }))
      }
      if (log) reportBatch(log, started, reply)
    }
    const failed = (cause) => {
      if (log) reportCall(log, 'isTokenValid', started, undefined)
      for (const call of batch) {
        call.reject(new MpauthxError(constants.statusCode.unknownError, 'internal error in mpauthx', { cause }))
      }
    }
    try {
      native.checkTokens(batch.map((call) => call.token)).then(settled, failed)
    } catch (cause) {
      failed(cause)
    }
  }

  return (token) => {
    // Most checks are answered here, from the validation cache, with no round trip.
    if (typeof token === 'string' && validationCache.lookup(token) !== undefined) {
      if (log) reportCall(log, 'isTokenValid', performance.now(), CACHED)
      return LIVE
    }
    return new Promise((resolve, reject) => {
      if (pending.length === 0) process.nextTick(flush)
      // Non-strings reach the native side as empty, which rejects with 6001.
      pending.push({ token: typeof token === 'string' ? token : '', resolve, reject })
      if (pending.length === MAX_BATCH) flush()
    })
  }
}

// What `isTokenValid` returns for a check answered from the validation cache: one settled
// promise, shared (a settled promise cannot change, and each `then` makes a new one).
const LIVE = Promise.resolve()

// What diagnostics report for a check answered from the validation cache.
const CACHED = Object.freeze({
  statusCode: constants.statusCode.success,
  message: 'OK',
  steps: [Object.freeze({ name: 'token.cached', elapsedMs: 0, detail: 'live, answered from the validation cache' })],
})

// Reports a batch's native steps once, then each call's outcome.
function reportBatch(log, started, reply) {
  const { statusCodes, messages, details, steps } = reply
  reportCall(log, 'isTokenValid', started, { statusCode: statusCodes[0], message: messages[0], detail: details[0], steps })
  for (let i = 1; i < statusCodes.length; i++) {
    reportCall(log, 'isTokenValid', started, { statusCode: statusCodes[i], message: messages[i], detail: details[i] })
  }
}

// The rejection of a live token of another sku where only the instance's own is admitted.
const notThisSku = () => new MpauthxError(constants.statusCode.invalidAccessToken, 'token is not for this sku')

// Whole seconds a remembered token has left at `now` (the time of its check), rounded as
// Redis's TTL rounds them; `null` without a TTL.
const secondsLeft = (cached, now) =>
  cached.expiresAt === Infinity ? null : Math.floor((cached.expiresAt - now + 500) / 1000)

// What `verifyToken` resolves with, from the binding's `TokenInfo`.
const tokenInfo = (info) => ({ openId: info.openId, sku: info.sku, ctime: info.ctime, expiresIn: info.expiresIn ?? null })

// The parts of a token `<userId>|<sku>|<64 hex>`, read as src/token.rs reads them; here in
// JavaScript because every authenticated request needs them and a call into the binding
// would cost more than the whole check answered from the validation cache.

/** The part before the first `|`, or `''` when there is none. */
function extractOpenId(token) {
  const end = token.indexOf('|')
  return end < 0 ? '' : token.slice(0, end)
}

/** The middle part of a token of exactly three `|`-separated parts, else `null`. */
function extractSku(token) {
  const start = token.indexOf('|')
  if (start < 0) return null
  const end = token.indexOf('|', start + 1)
  if (end < 0 || token.includes('|', end + 1)) return null
  return token.slice(start + 1, end)
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

function describe(value) {
  return value === null ? 'null' : typeof value
}

// A path, a node-sqlite3 Database (`filename`) or a better-sqlite3 Database (`name`);
// `null` with a `userStore`, where the native side says whether a file is needed.
function dbPath(db, userStore) {
  if (db == null && userStore !== undefined) return undefined
  if (typeof db === 'string') return db
  if (db !== null && typeof db === 'object') {
    if (typeof db.filename === 'string') return db.filename
    if (typeof db.name === 'string') return db.name
  }
  throw new TypeError(
    'db must be a SQLite file path, a node-sqlite3 Database or a better-sqlite3 Database, got ' + describe(db),
  )
}

// `tokenTTL` in seconds: a number, or a string of digits as `process.env` gives it (1.3.2
// handed it to Redis's EXPIRE, which reads such strings).
function ttlOf(value) {
  if (typeof value === 'string' && /^\s*\d+\s*$/.test(value)) return Number(value)
  if (typeof value === 'string') throw new TypeError('tokenTTL must be a number of seconds or a string of digits')
  return optionalNumber('tokenTTL', value)
}

function expectToken(token) {
  return expectString('token', token)
}

// PEM text, as a string or as the Buffer `fs.readFileSync` gives.
const optionalPem = (name, value) => (Buffer.isBuffer(value) ? value.toString('utf8') : optionalString(name, value))

// Each option of `options.redisTls` (`RedisTlsOptions` in index.d.ts).
const redisTlsTypes = { ca: optionalPem, cert: optionalPem, key: optionalPem, rejectUnauthorized: optionalBoolean }

// Each option of `options.redisSentinel` (`RedisSentinelOptions` in index.d.ts).
const redisSentinelTypes = {
  nodes: (name, value) => {
    if (value == null) throw new TypeError(`${name} must be an array of strings, got ${describe(value)}`)
    return optionalStringArray(name, value)
  },
  masterName: expectString,
  sentinelPassword: optionalString,
}

// Each option of the factory (see `Options` in index.d.ts) and how its type is checked.
const optionTypes = {
  redisUrl: optionalString,
  redisClusterNodes: optionalStringArray,
  redisTls: (name, value) => (value == null ? undefined : readOptions(name, value, redisTlsTypes)),
  redisSentinel: (name, value) => (value == null ? undefined : readOptions(name, value, redisSentinelTypes)),
  wechatApiBase: optionalString,
  httpTimeoutMs: optionalNumber,
  tokenStore: optionalString,
  validationCacheSize: optionalNumber,
  slidingTtl: optionalBoolean,
  logger: optionalFunction,
  userStore: (name, value) => (value == null ? undefined : userStoreOf(name, value)),
  userStoreTimeoutMs: optionalNumber,
  profileWrites: optionalString,
  registrationTtl: optionalNumber,
  revokeUserScanMs: optionalNumber,
}

// `options.userStore` (`UserStore` in index.d.ts): `hasUser` and `addUser` are required,
// `updateProfile`, `fillProfile` and `ready` optional.
const USER_STORE_OPTIONAL_METHODS = ['updateProfile', 'fillProfile', 'ready']
function userStoreOf(name, store) {
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

// The store's methods as the one function the native side calls: `(call, userId, profile)`,
// the profile as JSON, resolving with the outcome as JSON: `{ answer }` (the optional methods,
// which resolve with nothing, answer true; a store without one does nothing for it), with
// `refused` when the table refused the profile values (known of the shipped adapters' methods
// only, through `userStores.OUTCOMES`), or `{ failed, code }` when the method threw or
// rejected: `failed` is its message (the detail), `code` its error's `code` or `name` (the
// public message), when it is a short word. `hasUser` or `addUser` resolving with anything but
// a boolean fails, so that a store answering `1` or a row is found at once.
function userStoreCall(store) {
  const answer = async (call, userId, profile) => {
    const method = store[call]
    // The shipped adapter's own method (not one the application put in its place).
    const outcomes = typeof method === 'function' ? method[userStores.OUTCOMES] : undefined
    if (USER_STORE_OPTIONAL_METHODS.includes(call)) {
      if (method == null) return { answer: true }
      if (call === 'ready') {
        await store.ready()
        return { answer: true }
      }
      if (outcomes !== undefined) return { answer: true, refused: (await outcomes(userId, JSON.parse(profile))).refused }
      await store[call](userId, JSON.parse(profile))
      return { answer: true }
    }
    if (call === 'addUser' && outcomes !== undefined) {
      const { added, refused } = await outcomes(userId, JSON.parse(profile))
      return { answer: added, refused }
    }
    const answer = await (call === 'addUser' ? store.addUser(userId, JSON.parse(profile)) : store.hasUser(userId))
    if (typeof answer !== 'boolean') return { failed: `resolved with ${describe(answer)}, not a boolean` }
    return { answer }
  }
  const publicCode = (value) =>
    (typeof value === 'string' || typeof value === 'number') && /^[A-Za-z0-9_.-]{1,64}$/.test(String(value)) ? String(value) : undefined
  return async (call, userId, profile) => {
    try {
      return JSON.stringify(await answer(call, userId, profile))
    } catch (err) {
      const name = err?.name === 'Error' ? undefined : err?.name
      const failed = err instanceof Error ? String(err.message) : typeof err === 'string' ? err : `threw ${describe(err)}`
      return JSON.stringify({ failed, code: publicCode(err?.code) ?? publicCode(name) })
    }
  }
}

// Each key of `tokenFrom` (`TokenFrom` in index.d.ts).
const tokenFromTypes = { bearer: optionalBoolean, header: optionalString, cookie: optionalString, query: optionalString }

// What `authenticate()` acts on (`AuthenticateOptions` in index.d.ts).
const authenticateOptionTypes = {
  anySku: optionalBoolean,
  optional: optionalBoolean,
  tokenFrom: (name, value) => {
    if (value == null) return undefined
    readOptions(name, value, tokenFromTypes)
    // The sources in the order the caller wrote them: the first found wins.
    return Object.fromEntries(Object.entries(value).filter(([, source]) => source != null))
  },
}

// A `match` or `ignore` pattern (`PathPattern` in index.d.ts): a path, a RegExp, a function of
// the request, or an array of these.
const optionalPathPattern = (name, value) => (value == null ? undefined : middleware.checkPathPattern(name, value))

// Each option of `middleware()`, `fastifyPlugin()` and `authenticate()` (`MiddlewareOptions`
// in index.d.ts). `authenticate` is an explicit check: it accepts `match`, `ignore` and
// `failureBody`, so that one options object serves both, and acts on none of them.
const middlewareOptionTypes = {
  ...authenticateOptionTypes,
  failureBody: optionalFunction,
  match: optionalPathPattern,
  ignore: optionalPathPattern,
}

// `koaMiddleware()` also takes the other keys Egg and Midway pass to every middleware
// factory; the framework acts on them, mpauthx leaves them alone.
const frameworkKey = () => undefined
const koaMiddlewareOptionTypes = {
  ...middlewareOptionTypes,
  enable: frameworkKey,
  core: frameworkKey,
}

// Each option of `isTokenValid(token, options)`.
const isTokenValidOptionTypes = {
  ownSku: optionalBoolean,
}

// Each option of `revokeUser(userId, options)`.
const revokeUserOptionTypes = {
  allSkus: optionalBoolean,
}

// Checks an options object against its table: a misspelt option is an error, not a no-op.
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

/**
 * Creates an independent mpauthx instance; see index.d.ts and README.md.
 */
// `tokenTTL` left out (or null) takes the native side's default, three days.
function mpauthx(appId, appSecret, sku, db, redisPass = null, tokenTTL, options = {}) {
  const { logger, userStore, ...nativeOptions } = readOptions('options', options, optionTypes)
  const log = createLogger(logger, process.env.DEBUG)
  const native = new Mpauthx(
    {
      appId: expectString('appId', appId),
      appSecret: expectString('appSecret', appSecret),
      sku: expectString('sku', sku),
      dbPath: dbPath(db, userStore),
      redisPass: optionalString('redisPass', redisPass),
      ttl: ttlOf(tokenTTL),
      ...nativeOptions,
      userStore: userStore !== undefined,
      diagnostics: log !== null,
    },
    userStore === undefined ? undefined : userStoreCall(userStore),
  )

  const validationCache = createValidationCache(
    native,
    (token) => ({ openId: extractOpenId(token), sku: extractSku(token) }),
    sku,
  )
  const checkToken = batchedTokenCheck(native, validationCache, log)

  // What `authenticate` resolves with and the integrations put on the request, returned at
  // once when the validation cache answers for `Bearer <token>` (no promise, so the request
  // goes on in the same callback), else a promise; `null` when `optional` and no token was
  // sent. It rejects like `isTokenValid`, with 6007 for a missing token and, unless `anySku`,
  // for a token of another sku.
  const authenticator = ({ anySku, optional, tokenFrom }) => {
    const sources = middleware.tokenSources(tokenFrom)
    const missing = `token is missing: send ${sources.described}`
    return (request) => {
      const headers = request.headers
      // The token the validation cache was asked about, and did not answer for.
      let missed
      // What nearly every request is: `Bearer <token>` with a token the cache remembers. A
      // remembered token has no whitespace, so the header needs no further parsing.
      if (sources.bearerFirst) {
        const authorization = headers.authorization
        if (typeof authorization === 'string' && authorization.startsWith('Bearer ')) {
          const cached = validationCache.lookupBearer(authorization)
          if (cached !== undefined && (anySku || cached.sku === sku)) {
            if (log) reportCall(log, 'authenticate', performance.now(), CACHED)
            return { token: cached.token, openId: cached.openId, sku: cached.sku, expiresIn: secondsLeft(cached, validationCache.checkedAt) }
          }
          missed = authorization.slice(7)
        }
      }
      const token = sources.read(request)
      if (token === undefined) {
        if (optional) return null
        return Promise.reject(new MpauthxError(constants.statusCode.invalidAccessToken, missing))
      }
      if (!anySku && extractSku(token) !== sku) return Promise.reject(notThisSku())
      const verified = token === missed ? verifyInStore('authenticate', token) : verify('authenticate', token)
      return verified.then(({ response }) => ({
        token,
        openId: response.openId,
        sku: response.sku,
        expiresIn: response.expiresIn,
      }))
    }
  }

  // Authenticators by their options object, so that `authenticate(req, options)` with the same
  // options reads them once.
  const authenticators = new WeakMap()
  const defaultAuthenticator = authenticator(readOptions('options', undefined, middlewareOptionTypes))
  const authenticate = (request, options) => {
    if (request === null || typeof request !== 'object') {
      return Promise.reject(new TypeError(`request must be a request or a headers object, got ${describe(request)}`))
    }
    let check = defaultAuthenticator
    if (options !== undefined && options !== null) {
      check = authenticators.get(options)
      if (check === undefined) {
        try {
          // The integrations' options are welcome; `failureBody` shapes no reply here.
          check = authenticator(readOptions('authenticate options', options, middlewareOptionTypes))
        } catch (err) {
          return Promise.reject(err)
        }
        authenticators.set(options, check)
      }
    }
    // A request (Node, Express, Koa, Fastify, NestJS) has `headers`; else `request` is them.
    const isRequest = typeof request.headers === 'object' && request.headers !== null
    return Promise.resolve(check(isRequest ? request : { headers: request }))
  }

  // `verifyToken`, reported to diagnostics as `method`.
  const verify = (method, token) => {
    const cached = typeof token === 'string' ? validationCache.lookup(token) : undefined
    if (cached !== undefined) {
      if (log) reportCall(log, method, performance.now(), CACHED)
      const response = { openId: cached.openId, sku: cached.sku, ctime: cached.ctime, expiresIn: secondsLeft(cached, validationCache.checkedAt) }
      return Promise.resolve({ status_code: constants.statusCode.success, status_message: 'OK', response })
    }
    return verifyInStore(method, token)
  }

  // `verify` past the validation cache, for a token it has just not answered for.
  const verifyInStore = (method, token) =>
    settle(log, method, () => native.verifyToken(stringOrUndefined(token)), (reply) => tokenInfo(reply.response))

  // `isTokenValid(token, { ownSku })`: without options exactly 1.3.2's check.
  const isTokenValid = (token, options) => {
    if (options === undefined) return checkToken(token)
    let ownSku
    try {
      ;({ ownSku } = readOptions('isTokenValid options', options, isTokenValidOptionTypes))
    } catch (err) {
      return Promise.reject(err)
    }
    if (ownSku && typeof token === 'string' && token !== '' && extractSku(token) !== sku) {
      return Promise.reject(notThisSku())
    }
    return checkToken(token)
  }

  // The options of an integration: those of `authenticate`, how it shapes failures, and which
  // requests it checks (`match`, `ignore`).
  const integration = (what, options, types) => {
    const { failureBody, match, ignore, ...rest } = readOptions(what, options, types)
    return {
      authenticate: authenticator(rest),
      authenticateOptional: authenticator({ ...rest, optional: true }),
      failureBody,
      what,
      match,
      ignore,
    }
  }

  const instance = {
    authorize: (code, encryptedData, iv) =>
      settle(log, 'authorize', () =>
        native.authorize(stringOrUndefined(code), stringOrUndefined(encryptedData), stringOrUndefined(iv)),
      ),
    login: (code) => settle(log, 'login', () => native.login(stringOrUndefined(code))),
    refreshToken: (userId) => settle(log, 'refreshToken', () => native.refreshToken(stringOrUndefined(userId))),
    decryptData: (token, encryptedData, iv) =>
      settle(
        log,
        'decryptData',
        () => native.decryptData(stringOrUndefined(token), stringOrUndefined(encryptedData), stringOrUndefined(iv)),
        (reply) => JSON.parse(reply.response),
      ),
    checkSignature: (token, rawData, signature) =>
      settle(
        log,
        'checkSignature',
        () => native.checkSignature(stringOrUndefined(token), stringOrUndefined(rawData), stringOrUndefined(signature)),
        (reply) => reply.response,
      ),
    getAccessToken: () =>
      settle(log, 'getAccessToken', () => native.getAccessToken(), ({ response }) => ({
        accessToken: response.accessToken,
        expiresIn: response.expiresIn,
      })),
    getPhoneNumber: (code) =>
      settle(log, 'getPhoneNumber', () => native.getPhoneNumber(stringOrUndefined(code)), ({ response: phone }) => ({
        phoneNumber: phone.phoneNumber,
        purePhoneNumber: phone.purePhoneNumber,
        countryCode: phone.countryCode,
      })),
    ready: () => settle(log, 'ready', () => native.ready()).then(() => true),
    revokeToken: (token) =>
      settle(log, 'revokeToken', () => native.revokeToken(stringOrUndefined(token))),
    revokeUser: (userId, options) => {
      const { allSkus } = readOptions('revokeUser options', options, revokeUserOptionTypes)
      return settle(
        log,
        'revokeUser',
        () => native.revokeUser(stringOrUndefined(userId), allSkus),
        (reply) => reply.response,
      )
    },
    verifyToken: (token) => verify('verifyToken', token),
    isTokenValid,
    authenticate,
    extractOpenId: (token) => extractOpenId(expectToken(token)),
    extractSku: (token) => extractSku(expectToken(token)),
    middleware: (options) => middleware.connectMiddleware(integration('middlewareOptions', options, middlewareOptionTypes)),
    koaMiddleware: (options) => middleware.koaMiddleware(integration('middlewareOptions', options, koaMiddlewareOptionTypes)),
    fastifyPlugin: (options) => middleware.fastifyPlugin(integration('fastifyPlugin options', options, middlewareOptionTypes)),
    close: () => {
      native.stopAccepting()
      return native.close()
    },
    constants,
  }
  // Reached only by the test suite (a Rust panic must become a rejection with 9999) and the
  // benchmark (the cost of one async call across the napi boundary).
  Object.defineProperty(instance, Symbol.for('mpauthx.testing'), {
    value: Object.freeze({
      panic: () => settle(log, 'panic', () => native.panicForTesting()),
      noop: () => native.noop(),
    }),
  })
  return instance
}

module.exports = mpauthx
module.exports.default = mpauthx
module.exports.constants = constants
module.exports.MpauthxError = MpauthxError
module.exports.userStores = { postgres: userStores.postgres, mysql: userStores.mysql }
