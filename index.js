'use strict'

// The factory of mpauthx 1.3.2 around the native binding: it wires the files that own each job
// and holds no logic of its own.
//
//   load-binding.js     the addon for this platform, or an error saying what to install
//   options.js          every option, its type check and default; the unknown-key check
//   replies.js          native replies settled into 1.3.2's results and MpauthxError
//   token.js            the parts of a token (user id, sku)
//   token-checks.js     isTokenValid (batched per tick) and verifyToken
//   validation-cache.js the Node-thread half of the validation cache
//   authenticate.js     where a request's token is read, and the check the integrations share
//   middleware.js       the Express/Connect, Koa and Fastify adapters
//   user-store-call.js  the application's userStore as the native side calls it
//   sql-user-stores.js  the PostgreSQL and MySQL user stores of `mpauthx.userStores`
//   constants.js        the status codes and MpauthxError; diagnostics.js, the logger
//   telemetry.js        the diagnostics channels, stats() and health()

// First, so that a missing binary is the error a user sees.
const { Mpauthx } = require('./load-binding.js').loadBinding()
const { constants, MpauthxError } = require('./constants.js')
const { createLogger } = require('./diagnostics.js')
const { createTelemetry, CHANNELS } = require('./telemetry.js')
const { readOptions, stringOrUndefined, expectString, optionalString, expectToken, dbPath, ttlOf } = require('./options.js')
const { factoryOptions, revokeUserOptions, middlewareOptions, koaMiddlewareOptions } = require('./options.js')
const { settle } = require('./replies.js')
const { extractUserId, extractSku } = require('./token.js')
const { createTokenChecks } = require('./token-checks.js')
const { createValidationCache } = require('./validation-cache.js')
const { createAuthentication } = require('./authenticate.js')
const middleware = require('./middleware.js')
const { userStoreCall } = require('./user-store-call.js')
const sqlUserStores = require('./sql-user-stores.js')

/**
 * Creates an independent mpauthx instance; see index.d.ts and README.md.
 */
// `tokenTTL` left out (or null) takes the native side's default, three days.
function mpauthx(appId, appSecret, sku, db, redisPass = null, tokenTTL, options = {}) {
  const { logger, userStore, ...nativeOptions } = readOptions('options', options, factoryOptions)
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

  const validationCache = createValidationCache(native, sku)
  // Where calls report: the diagnostics logger (or null) and the telemetry.
  const observer = { log, telemetry: createTelemetry(native, appId, sku, validationCache) }
  const { isTokenValid, verify, verifyInStore, verifyToken } = createTokenChecks(native, validationCache, observer, sku)
  const { authenticate, integration } = createAuthentication(validationCache, observer, sku, { verify, verifyInStore })
  // Runs `call` on the native side and settles its reply as `method`.
  const run = (method, call, pick) => settle(observer, method, call, pick)

  const instance = {
    authorize: (code, encryptedData, iv) =>
      run('authorize', () => native.authorize(stringOrUndefined(code), stringOrUndefined(encryptedData), stringOrUndefined(iv))),
    login: (code) => run('login', () => native.login(stringOrUndefined(code))),
    refreshToken: (userId) => run('refreshToken', () => native.refreshToken(stringOrUndefined(userId))),
    decryptData: (token, encryptedData, iv) =>
      run(
        'decryptData',
        () => native.decryptData(stringOrUndefined(token), stringOrUndefined(encryptedData), stringOrUndefined(iv)),
        (reply) => JSON.parse(reply.response),
      ),
    checkSignature: (token, rawData, signature) =>
      run('checkSignature', () =>
        native.checkSignature(stringOrUndefined(token), stringOrUndefined(rawData), stringOrUndefined(signature)),
      ),
    // WeChat's app token (the only "access token" in this package).
    getAccessToken: () =>
      run(
        'getAccessToken',
        () => native.getAccessToken(),
        ({ response }) => ({ accessToken: response.accessToken, expiresIn: response.expiresIn }),
      ),
    getPhoneNumber: (code) =>
      run(
        'getPhoneNumber',
        () => native.getPhoneNumber(stringOrUndefined(code)),
        ({ response: phone }) => ({
          phoneNumber: phone.phoneNumber,
          purePhoneNumber: phone.purePhoneNumber,
          countryCode: phone.countryCode,
        }),
      ),
    ready: () => run('ready', () => native.ready()).then(() => true),
    revokeToken: (token) => run('revokeToken', () => native.revokeToken(stringOrUndefined(token))),
    revokeUser: (userId, options) => {
      const { allSkus } = readOptions('revokeUser options', options, revokeUserOptions)
      return run('revokeUser', () => native.revokeUser(stringOrUndefined(userId), allSkus))
    },
    verifyToken,
    isTokenValid,
    authenticate,
    // 1.3.2's name: the part before the first `|`, an openId or a unionId.
    extractOpenId: (token) => extractUserId(expectToken(token)),
    extractSku: (token) => extractSku(expectToken(token)),
    middleware: (options) => middleware.connectMiddleware(integration('middlewareOptions', options, middlewareOptions)),
    koaMiddleware: (options) => middleware.koaMiddleware(integration('middlewareOptions', options, koaMiddlewareOptions)),
    fastifyPlugin: (options) => middleware.fastifyPlugin(integration('fastifyPlugin options', options, middlewareOptions)),
    stats: () => observer.telemetry.stats(),
    health: () => observer.telemetry.health(),
    close: () => {
      native.stopAccepting()
      return native.close()
    },
    constants,
  }
  // Reached only by the test suite (a Rust panic must become a rejection with 9999; the
  // validation cache's memory as the native side lays it out) and the benchmark (the cost of
  // one async call across the napi boundary).
  Object.defineProperty(instance, Symbol.for('mpauthx.testing'), {
    value: Object.freeze({
      panic: () => run('panic', () => native.panicForTesting()),
      validity: () => native.validity(performance.now()),
      noop: () => native.noop(),
    }),
  })
  return instance
}

module.exports = mpauthx
module.exports.default = mpauthx
module.exports.constants = constants
module.exports.MpauthxError = MpauthxError
module.exports.userStores = { postgres: sqlUserStores.postgres, mysql: sqlUserStores.mysql }
module.exports.channels = CHANNELS
