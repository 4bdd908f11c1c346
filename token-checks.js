'use strict'

// `isTokenValid` and `verifyToken`: answered from the validation cache when it can, else by
// the native side; `isTokenValid` calls of one tick go to Redis as one batch.

const { constants } = require('./constants.js')
const { reportCall } = require('./diagnostics.js')
const { readOptions, stringOrUndefined, isTokenValidOptions } = require('./options.js')
const { settle, internalError, failure, tokenInfo, notThisSku, CACHED, reportBatch } = require('./replies.js')
const { extractSku } = require('./token.js')

// The most tokens checked in one native call; more calls in one tick make more batches.
const MAX_BATCH = 1024

// What `isTokenValid` returns for a check answered from the validation cache: one settled
// promise, shared (a settled promise cannot change, and each `then` makes a new one).
const LIVE = Promise.resolve()

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
        else batch[i].reject(failure(code, reply.messages[i], reply.details[i]))
      }
      if (log) reportBatch(log, started, reply)
    }
    const failed = (cause) => {
      if (log) reportCall(log, 'isTokenValid', started, undefined)
      for (const call of batch) call.reject(internalError(cause))
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

/**
 * The token checks of an instance of `sku`: `isTokenValid(token, options)`, `verify(method,
 * token)` (`verifyToken`, reported to diagnostics as `method`) and `verifyInStore`, the same
 * past the validation cache, for a token it has just not answered for.
 */
function createTokenChecks(native, validationCache, log, sku) {
  const checkToken = batchedTokenCheck(native, validationCache, log)

  const verifyInStore = (method, token) =>
    settle(
      log,
      method,
      () => native.verifyToken(stringOrUndefined(token)),
      (reply) => tokenInfo(reply.response),
    )

  const verify = (method, token) => {
    const cached = typeof token === 'string' ? validationCache.lookup(token) : undefined
    if (cached === undefined) return verifyInStore(method, token)
    if (log) reportCall(log, method, performance.now(), CACHED)
    const response = { openId: cached.userId, sku: cached.sku, ctime: cached.ctime, expiresIn: validationCache.secondsLeft(cached) }
    return Promise.resolve({ status_code: constants.statusCode.success, status_message: 'OK', response })
  }

  // Without options exactly 1.3.2's check.
  const isTokenValid = (token, options) => {
    if (options === undefined) return checkToken(token)
    let ownSku
    try {
      ;({ ownSku } = readOptions('isTokenValid options', options, isTokenValidOptions))
    } catch (err) {
      return Promise.reject(err)
    }
    if (ownSku && typeof token === 'string' && token !== '' && extractSku(token) !== sku) {
      return Promise.reject(notThisSku())
    }
    return checkToken(token)
  }

  return { isTokenValid, verify, verifyInStore }
}

module.exports = { createTokenChecks }
