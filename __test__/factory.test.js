'use strict'

const assert = require('node:assert/strict')
const { test } = require('node:test')

const mpauthx = require('..')
const { APP_ID, APP_SECRET, SKU } = require('./support/harness')

const make = (...overrides) => {
  const args = [APP_ID, APP_SECRET, SKU, '/tmp/mpauthx-factory-test.db', null, 60, {}]
  overrides.forEach((value, i) => {
    if (value !== undefined) args[i] = value
  })
  return mpauthx(...args)
}

test('constants are exactly those of mpauthx 1.3.2', () => {
  // Written out here rather than imported from constants.js, so that a changed code fails.
  const codes1_3_2 = [
    ['success', 1],
    ['databaseRelatedError', 6000],
    ['requiredParamsMissingError', 6001],
    ['httpError', 6002],
    ['responseIsNull', 6003],
    ['jsonParsedError', 6004],
    ['httpResponseErrorEvent', 6005],
    ['httpRequestErrorEvent', 6006],
    ['internetConnectionError', 6006],
    ['invalidAccessToken', 6007],
    ['sessionKeyAndOpenIdRequestError', 6008],
    ['openIdOrUnionIdNotMatch', 6009],
    ['userNotExistInDB', 6010],
    ['userInfoDecryptionError', 6011],
    ['unknownError', 9999],
  ]
  assert.deepEqual(make().constants, { statusCode: Object.fromEntries(codes1_3_2) })
})

test('the instance has the methods of mpauthx 1.3.2 plus refreshToken and extractSku', () => {
  const instance = make()
  for (const name of ['authorize', 'refreshToken', 'isTokenValid', 'extractOpenId', 'extractSku', 'close']) {
    assert.equal(typeof instance[name], 'function', name)
  }
})

test('missing or empty appId and appSecret throw TypeError', () => {
  assert.throws(() => mpauthx(), TypeError)
  assert.throws(() => make(''), { name: 'TypeError', message: /appId/ })
  assert.throws(() => make(null), { name: 'TypeError', message: /appId/ })
  assert.throws(() => make(APP_ID, ''), { name: 'TypeError', message: /appSecret/ })
  assert.throws(() => make(APP_ID, 42), { name: 'TypeError', message: /appSecret/ })
})

test('a sku containing | throws RangeError', () => {
  assert.throws(() => make(undefined, undefined, 'a|b'), { name: 'RangeError', message: /sku/ })
  assert.throws(() => make(undefined, undefined, 7), { name: 'TypeError', message: /sku/ })
})

test('tokenTTL must be a positive integer, or a string of digits as 1.3.2 took from process.env', () => {
  for (const ttl of [0, -1, 1.5, NaN, Infinity, 2 ** 40, '0']) {
    assert.throws(() => make(undefined, undefined, undefined, undefined, undefined, ttl), {
      name: 'RangeError',
      message: /tokenTTL/,
    })
  }
  for (const ttl of ['sixty', '60s', '', '-60', true]) {
    assert.throws(() => make(undefined, undefined, undefined, undefined, undefined, ttl), { name: 'TypeError', message: /tokenTTL/ })
  }
  assert.doesNotThrow(() => make(undefined, undefined, undefined, undefined, undefined, '60'))
  assert.doesNotThrow(() => make(undefined, undefined, undefined, undefined, undefined, 1))
})

test('db may be a path, a node-sqlite3 or a better-sqlite3 Database, and nothing else', () => {
  assert.doesNotThrow(() => make(undefined, undefined, undefined, { filename: '/tmp/a.db' }))
  assert.doesNotThrow(() => make(undefined, undefined, undefined, { name: '/tmp/b.db' }))
  for (const db of [undefined, null, 5, {}, { filename: 3 }, '']) {
    assert.throws(() => mpauthx(APP_ID, APP_SECRET, SKU, db), TypeError, String(db))
  }
  assert.throws(() => make(undefined, undefined, undefined, ':memory:'), RangeError)
})

test('bad options throw before anything connects', () => {
  assert.throws(() => make(...Array(6), { redisUrl: 'not a url' }), { name: 'RangeError', message: /redisUrl/ })
  assert.throws(() => make(...Array(6), { wechatApiBase: 'ftp://x' }), RangeError)
  assert.throws(() => make(...Array(6), { httpTimeoutMs: 0 }), RangeError)
  assert.throws(() => make(...Array(6), { httpTimeoutMs: '5' }), TypeError)
  assert.throws(() => make(...Array(6), 'options'), TypeError)
  assert.throws(() => make(undefined, undefined, undefined, undefined, 123), { name: 'TypeError', message: /redisPass/ })
})

test('an error message never repeats the Redis URL, which may hold a password', () => {
  assert.throws(
    () => make(...Array(6), { redisUrl: 'redis://:hunter2@host:notaport' }),
    (err) => err instanceof RangeError && !err.message.includes('hunter2'),
  )
})

test('the factory returns at once even when nothing is reachable', async () => {
  const instance = make(...Array(6), { redisUrl: 'redis://127.0.0.1:1', wechatApiBase: 'http://127.0.0.1:1' })
  await instance.close()
})

test('extractOpenId and extractSku parse tokens as mpauthx 1.3.2 did', () => {
  const { extractOpenId, extractSku } = make()
  assert.equal(extractOpenId('oUser|sku|abc'), 'oUser')
  assert.equal(extractOpenId('no-separator'), '')
  assert.equal(extractOpenId('用户|sku|abc'), '用户')
  assert.equal(extractSku('oUser|sku|abc'), 'sku')
  assert.equal(extractSku('oUser||abc'), '')
  assert.equal(extractSku('oUser|sku'), null)
  assert.equal(extractSku('a|b|c|d'), null)
  for (const bad of [undefined, null, 1, {}, ['a|b|c']]) {
    assert.throws(() => extractOpenId(bad), TypeError)
    assert.throws(() => extractSku(bad), TypeError)
  }
})
