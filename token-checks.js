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
function batchedTokenCheck(native, validationCache, observer) {
  const { log, telemetry } = observer
  const checks = telemetry.probe('isTokenValid')
  let pending = []

  function flush() {
    const batch = pending
    // A batch that filled up went at once; the flush scheduled for it finds nothing.
    if (batch.length === 0) return
    pending = []
    const started = performance.now()
    const settled = (reply) => {
      // The batch's round trips are each call's; a change of state it found is published once,
      // with the first call that has a context.
      let events = reply.events
      const roundTrips = events?.filter((event) => event.state == null)
      for (let i = 0; i < batch.length; i++) {
        const { ctx, token, resolve, reject } = batch[i]
        const code = reply.statusCodes[i]
        const published = ctx === undefined ? undefined : events
        if (ctx !== undefined) events = roundTrips
        if (code === constants.statusCode.success) {
          telemetry.liveToken(ctx, token)
          telemetry.settled(checks, ctx, code, undefined, published, started)
          resolve()
        } else {
          const error = failure(code, reply.messages[i], reply.details[i])
          telemetry.settled(checks, ctx, code, error, published, started)
          reject(error)
        }
      }
      if (log) reportBatch(log, started, reply)
    }
    const failed = (cause) => {
      if (log) reportCall(log, 'isTokenValid', started, undefined)
      for (const { ctx, reject } of batch) {
        const error = internalError(cause)
        telemetry.settled(checks, ctx, error.code, error, undefined, started)
        reject(error)
      }
    }
    try {
      native.checkTokens(batch.map((call) => call.token)).then(settled, failed)
    } catch (cause) {
      failed(cause)
    }
  }

  // One check: answered from the validation cache, or added to this tick's batch.
  function check(token, ctx) {
    if (typeof token === 'string') {
      const cached = validationCache.lookup(token)
      if (ctx !== undefined) telemetry.cacheLookup(ctx)
      // Most checks are answered here, from the validation cache, with no round trip.
      if (cached !== undefined) {
        if (log) reportCall(log, 'isTokenValid', performance.now(), CACHED)
        if (ctx !== undefined) ctx.sku = cached.sku
        telemetry.settled(checks, ctx, constants.statusCode.success)
        return LIVE
      }
    }
    return batched(token, ctx)
  }

  // A check of this tick's batch.
  function batched(token, ctx) {
    return new Promise((resolve, reject) => {
      if (pending.length === 0) process.nextTick(flush)
      // Non-strings reach the native side as empty, which rejects with 6001.
      pending.push({ token: typeof token === 'string' ? token : '', ctx, resolve, reject })
      if (pending.length === MAX_BATCH) flush()
    })
  }

  return (token, ctx) => {
    if (ctx === undefined) return check(token, undefined)
    return telemetry.run(ctx, () => check(token, ctx))
  }
}

/**
 * The token checks of an instance of `sku`: `isTokenValid(token, options)`, `verifyToken`,
 * `verify(probe, token, ctx)` (a check counted as `probe`'s method, settling the context `ctx`
 * of the caller that traced it) and `verifyInStore`, the same past the validation cache, for
 * a token it has just not answered for. `observer` is the instance's `{ log, telemetry }`.
 */
function createTokenChecks(native, validationCache, observer, sku) {
  const { log, telemetry } = observer
  const checks = telemetry.probe('isTokenValid')
  const verifications = telemetry.probe('verifyToken')
  const checkToken = batchedTokenCheck(native, validationCache, observer)

  const verifyInStore = (probe, token, ctx) =>
    settle(
      observer,
      probe.method,
      () => native.verifyToken(stringOrUndefined(token)),
      (reply) => {
        telemetry.liveToken(ctx, token)
        return tokenInfo(reply.response)
      },
      ctx,
    )

  const verify = (probe, token, ctx) => {
    let cached
    if (typeof token === 'string') {
      cached = validationCache.lookup(token)
      if (ctx !== undefined) telemetry.cacheLookup(ctx)
    }
    if (cached === undefined) return verifyInStore(probe, token, ctx)
    if (log) reportCall(log, probe.method, performance.now(), CACHED)
    if (ctx !== undefined) ctx.sku = cached.sku
    telemetry.settled(probe, ctx, constants.statusCode.success)
    const response = { openId: cached.userId, sku: cached.sku, ctime: cached.ctime, expiresIn: validationCache.secondsLeft(cached) }
    return Promise.resolve({ status_code: constants.statusCode.success, status_message: 'OK', response })
  }

  // `verifyToken`: traced here, as the integrations' check traces its own.
  const verifyToken = (token) => {
    const ctx = telemetry.context(verifications)
    if (ctx === undefined) return verify(verifications, token, undefined)
    return telemetry.run(ctx, () => verify(verifications, token, ctx))
  }

  // A check of a token of another sku where only this one's is admitted: refused at once.
  const otherSku = (ctx) => {
    const error = notThisSku()
    telemetry.run(ctx, () => undefined)
    telemetry.settled(checks, ctx, error.code, error)
    return Promise.reject(error)
  }

  // Without options exactly 1.3.2's check.
  const isTokenValid = (token, options) => {
    const ctx = telemetry.context(checks)
    if (options === undefined) return checkToken(token, ctx)
    let ownSku
    try {
      ;({ ownSku } = readOptions('isTokenValid options', options, isTokenValidOptions))
    } catch (err) {
      // Options of the wrong shape are the program's mistake, not a check: not counted.
      return Promise.reject(err)
    }
    if (ownSku && typeof token === 'string' && token !== '' && extractSku(token) !== sku) return otherSku(ctx)
    return checkToken(token, ctx)
  }

  return { isTokenValid, verify, verifyInStore, verifyToken }
}

module.exports = { createTokenChecks }
