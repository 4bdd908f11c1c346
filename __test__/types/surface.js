// @ts-check
// The runtime of index.js against the typings of index.d.ts, both ways: `tsc --strict` checks
// that each table below lists exactly the keys the typings declare (a missing key or an extra
// one fails the compile), and typings.test.js runs this file to check that the runtime has
// exactly those keys too.

const assert = require('node:assert/strict')
const mpauthx = require('../..')

/** @type {{ [K in keyof import('../..').Module]-?: true }} */
const moduleKeys = { default: true, constants: true, MpauthxError: true, userStores: true, channels: true }

/** @type {{ [K in keyof import('../..').UserStores]-?: true }} */
const userStoresKeys = { postgres: true, mysql: true }

/** @type {{ [K in keyof import('../..').UserStore]-?: true }} */
const userStoreKeys = { hasUser: true, addUser: true, updateProfile: true, fillProfile: true, ready: true }

/** @type {{ [K in keyof import('../..').Mpauthx]-?: true }} */
const instanceKeys = {
  authorize: true,
  login: true,
  refreshToken: true,
  revokeToken: true,
  revokeUser: true,
  verifyToken: true,
  decryptData: true,
  checkSignature: true,
  getAccessToken: true,
  getPhoneNumber: true,
  ready: true,
  isTokenValid: true,
  authenticate: true,
  extractOpenId: true,
  extractSku: true,
  middleware: true,
  koaMiddleware: true,
  fastifyPlugin: true,
  stats: true,
  health: true,
  close: true,
  constants: true,
}

/** @type {{ [K in keyof import('../..').Options]-?: true }} */
const optionKeys = {
  redisUrl: true,
  redisClusterNodes: true,
  redisTls: true,
  redisSentinel: true,
  wechatApiBase: true,
  httpTimeoutMs: true,
  tokenStore: true,
  validationCacheSize: true,
  slidingTtl: true,
  logger: true,
  userStore: true,
  userStoreTimeoutMs: true,
  profileWrites: true,
  registrationTtl: true,
  revokeUserScanMs: true,
}

/** @type {{ [K in keyof import('../..').MiddlewareOptions]-?: true }} */
const middlewareOptionKeys = { anySku: true, optional: true, tokenFrom: true, failureBody: true, match: true, ignore: true }

/** @type {{ [K in keyof import('../..').KoaMiddlewareOptions]-?: true }} */
const koaMiddlewareOptionKeys = { ...middlewareOptionKeys, enable: true, core: true }

// The keys of an MpauthxError beyond those of every Error (`name` is one: it is an Error's too).
/** @type {{ [K in Exclude<keyof import('../..').MpauthxError, keyof Error>]-?: true }} */
const errorKeys = { code: true, status: true, expose: true, detail: true }

// The HTTP status of every code, as values: a status the typings do not allow fails the compile.
// prettier-ignore
/** @type {{ [K in import('../..').ErrorCode]: import('../..').HttpStatus }} */
const httpStatuses = {
  6000: 503, 6001: 400, 6002: 502, 6003: 502, 6004: 502, 6005: 502, 6006: 502,
  6007: 401, 6008: 502, 6009: 400, 6010: 404, 6011: 400, 9999: 500,
}

/** @type {{ [K in keyof import('../..').TokenFrom]-?: true }} */
const tokenFromKeys = { bearer: true, header: true, cookie: true, query: true }

// The literal types of the codes, as values: a wrong number fails the compile.
// prettier-ignore
/** @type {import('../..').StatusCodes} */
const statusCodes = {
  success: 1, databaseRelatedError: 6000, requiredParamsMissingError: 6001, httpError: 6002,
  responseIsNull: 6003, jsonParsedError: 6004, httpResponseErrorEvent: 6005, httpRequestErrorEvent: 6006,
  internetConnectionError: 6006, invalidAccessToken: 6007, sessionKeyAndOpenIdRequestError: 6008,
  openIdOrUnionIdNotMatch: 6009, userNotExistInDB: 6010, userInfoDecryptionError: 6011, unknownError: 9999,
}

/** @type {{ [K in keyof import('../..').Success<string>]-?: true }} */
const successKeys = { status_code: true, status_message: true, response: true }

/** @type {{ [K in keyof import('../..').AccessToken]-?: true }} */
const accessTokenKeys = { accessToken: true, expiresIn: true }

/** @type {{ [K in keyof import('../..').PhoneNumber]-?: true }} */
const phoneNumberKeys = { phoneNumber: true, purePhoneNumber: true, countryCode: true }

/** @type {{ [K in keyof import('../..').TokenInfo]-?: true }} */
const tokenInfoKeys = { openId: true, sku: true, ctime: true, expiresIn: true }

/** @type {{ [K in keyof import('../..').RequestAuth]-?: true }} */
const requestAuthKeys = { token: true, openId: true, sku: true, expiresIn: true }

// What operating it gives (stats(), health(), the diagnostics channels).
/** @type {{ [K in keyof import('../..').Stats]-?: true }} */
const statsKeys = {
  appId: true,
  sku: true,
  calls: true,
  wechat: true,
  store: true,
  validationCache: true,
  connections: true,
  appToken: true,
}

/** @type {{ [K in import('../..').TracedMethod]-?: true }} */
const tracedMethods = {
  ready: true,
  authorize: true,
  login: true,
  refreshToken: true,
  isTokenValid: true,
  verifyToken: true,
  revokeToken: true,
  revokeUser: true,
  getAccessToken: true,
  getPhoneNumber: true,
  decryptData: true,
  checkSignature: true,
  authenticate: true,
}

/** @type {{ [K in keyof import('../..').MethodStats]-?: true }} */
const methodStatsKeys = { calls: true, failures: true }

/** @type {{ [K in import('../..').WechatOutcome]-?: true }} */
const wechatOutcomes = { ok: true, errcode: true, httpStatus: true, timeout: true, network: true, badReply: true }

/** @type {{ [K in keyof import('../..').Histogram]-?: true }} */
const histogramKeys = { le: true, counts: true, count: true, sum: true }

/** @type {{ [K in import('../..').StoreBackend]-?: true }} */
const storeBackends = { redis: true, sqlite: true, userStore: true }

/** @type {{ [K in keyof import('../..').StoreStats]-?: true }} */
const storeStatsKeys = { roundTrips: true, retries: true, failures: true }

/** @type {{ [K in keyof import('../..').ValidationCacheStats]-?: true }} */
const validationCacheStatsKeys = { on: true, entries: true, hits: true, misses: true, invalidations: true }

/** @type {{ [K in keyof import('../..').Stats['connections']]-?: true }} */
const connectionsStatsKeys = { reconnects: true, lastFailure: true }

/** @type {{ [K in keyof import('../..').ConnectionFailure]-?: true }} */
const connectionFailureKeys = { connection: true, kind: true, at: true }

/** @type {{ [K in keyof import('../..').Stats['appToken']]-?: true }} */
const appTokenStatsKeys = { fetches: true, lockWaits: true }

/** @type {{ [K in keyof import('../..').Health]-?: true }} */
const healthKeys = { connections: true, validationCache: true }

/** @type {{ [K in keyof import('../..').ConnectionHealth]-?: true }} */
const connectionHealthKeys = { state: true, since: true, lastError: true }

/** @type {{ [K in import('../..').ConnectionName]-?: true }} */
const connectionNames = { redis: true, sqlite: true, wechat: true, userStore: true }

/** @type {{ [K in keyof import('../..').CallContext]-?: true }} */
const callContextKeys = { method: true, sku: true, code: true, error: true }

/** @type {{ [K in keyof import('../..').WechatEvent]-?: true }} */
const wechatEventKeys = {
  context: true,
  endpoint: true,
  outcome: true,
  httpStatus: true,
  errcode: true,
  start: true,
  end: true,
  durationMs: true,
}

/** @type {{ [K in keyof import('../..').StoreEvent]-?: true }} */
const storeEventKeys = { context: true, backend: true, operation: true, outcome: true, start: true, end: true, durationMs: true }

/** @type {{ [K in keyof import('../..').ConnectionChange]-?: true }} */
const connectionChangeKeys = { context: true, backend: true, state: true, error: true }

const keys = (/** @type {object} */ object) => Object.keys(object).sort()

/** The unknown-key error of an options object lists the keys the runtime knows. */
function runtimeOptionKeys(/** @type {() => unknown} */ create) {
  try {
    create()
  } catch (err) {
    const known = /known keys: (.*)$/.exec(String(err instanceof Error ? err.message : err))
    if (known) return known[1].split(', ').sort()
  }
  throw new Error('an unknown key was accepted')
}

module.exports = function checkSurface(/** @type {string} */ dbFile) {
  // Options are checked before anything connects, so any address will do.
  const instance = mpauthx('wx0123456789abcdef', 'secret', 'sku', dbFile)
  try {
    assert.deepEqual(keys(mpauthx), keys(moduleKeys), 'module exports')
    assert.equal(mpauthx.default, mpauthx)
    assert.deepEqual(keys(instance), keys(instanceKeys), 'instance members')
    assert.deepEqual(mpauthx.constants.statusCode, statusCodes, 'status codes')
    assert.equal(instance.constants, mpauthx.constants)
    const unknown = { ['not an option']: true }
    assert.deepEqual(
      // @ts-expect-error an unknown option, on purpose
      runtimeOptionKeys(() => mpauthx('a', 'b', 'c', dbFile, null, 60, unknown)),
      keys(optionKeys),
      'factory options',
    )
    assert.deepEqual(
      // @ts-expect-error an unknown option, on purpose
      runtimeOptionKeys(() => instance.middleware(unknown)),
      keys(middlewareOptionKeys),
      'middleware options',
    )
    assert.deepEqual(
      // @ts-expect-error an unknown option, on purpose
      runtimeOptionKeys(() => instance.fastifyPlugin(unknown)),
      keys(middlewareOptionKeys),
      'fastifyPlugin options',
    )
    assert.deepEqual(
      // @ts-expect-error an unknown option, on purpose
      runtimeOptionKeys(() => instance.koaMiddleware(unknown)),
      keys(koaMiddlewareOptionKeys),
      'koaMiddleware options',
    )
    assert.deepEqual(
      // @ts-expect-error an unknown source, on purpose
      runtimeOptionKeys(() => instance.middleware({ tokenFrom: unknown })),
      keys(tokenFromKeys),
      'tokenFrom keys',
    )
    assert.deepEqual(keys(mpauthx.userStores), keys(userStoresKeys), 'userStores')
    assert.deepEqual(keys(mpauthx.channels.calls), keys(tracedMethods), 'traced methods')
    for (const [method, name] of Object.entries(mpauthx.channels.calls)) assert.equal(name, `mpauthx:${method}`)
    // The MySQL adapter also needs `execute()` (prepared statements).
    const pool = { query: async () => ({ rows: [], rowCount: 0 }), execute: async () => [[]] }
    assert.deepEqual(keys(mpauthx.userStores.postgres(pool)), keys(userStoreKeys), 'postgres adapter')
    assert.deepEqual(keys(mpauthx.userStores.mysql(pool)), keys(userStoreKeys), 'mysql adapter')
    const error = new mpauthx.MpauthxError(6007, 'x')
    assert.ok(error instanceof Error)
    assert.equal(error.name, 'MpauthxError')
    assert.equal(error.code, 6007)
    assert.deepEqual(keys(error), keys({ name: true, ...errorKeys }), 'MpauthxError keys')
    assert.equal(error.detail, 'x')
    assert.equal(new mpauthx.MpauthxError(6000, 'x', { detail: 'where' }).detail, 'where')
    for (const [code, status] of Object.entries(httpStatuses)) {
      const coded = new mpauthx.MpauthxError(/** @type {import('../..').ErrorCode} */ (Number(code)), 'x')
      assert.equal(coded.status, status, `the status of ${code}`)
      assert.equal(coded.expose, status < 500, `expose of ${code}`)
    }
    assert.deepEqual(
      [...new Set(Object.values(mpauthx.constants.statusCode))].filter((code) => code !== 1).sort(),
      Object.keys(httpStatuses).map(Number).sort(),
      'every error code has a status',
    )
  } finally {
    instance.close()
  }
  return {
    successKeys: keys(successKeys),
    requestAuthKeys: keys(requestAuthKeys),
    tokenInfoKeys: keys(tokenInfoKeys),
    accessTokenKeys: keys(accessTokenKeys),
    phoneNumberKeys: keys(phoneNumberKeys),
    operating: {
      statsKeys: keys(statsKeys),
      tracedMethods: keys(tracedMethods),
      methodStatsKeys: keys(methodStatsKeys),
      wechatOutcomes: keys(wechatOutcomes),
      histogramKeys: keys(histogramKeys),
      storeBackends: keys(storeBackends),
      storeStatsKeys: keys(storeStatsKeys),
      validationCacheStatsKeys: keys(validationCacheStatsKeys),
      connectionsStatsKeys: keys(connectionsStatsKeys),
      connectionFailureKeys: keys(connectionFailureKeys),
      appTokenStatsKeys: keys(appTokenStatsKeys),
      healthKeys: keys(healthKeys),
      connectionHealthKeys: keys(connectionHealthKeys),
      connectionNames: keys(connectionNames),
      callContextKeys: keys(callContextKeys),
      wechatEventKeys: keys(wechatEventKeys),
      storeEventKeys: keys(storeEventKeys),
      connectionChangeKeys: keys(connectionChangeKeys),
    },
  }
}
