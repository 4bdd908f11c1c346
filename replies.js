'use strict'

// The one place where native replies become what mpauthx 1.3.2 resolved or rejected with:
// `{ status_code, status_message, response }` or an MpauthxError carrying the numeric code,
// which napi cannot put on an async rejection.

const { constants, MpauthxError } = require('./constants.js')
const { reportCall } = require('./diagnostics.js')

/** The rejection of a call whose native side panicked or whose binding failed: 9999. */
const internalError = (cause) => new MpauthxError(constants.statusCode.unknownError, 'internal error in mpauthx', { cause })

/** The rejection of a reply that is not a success. */
const failure = (statusCode, message, detail) => new MpauthxError(statusCode, message, { detail })

/**
 * Runs a native call and settles its reply. `observer` is the instance's `{ log, telemetry }`
 * (`log`, the diagnostics logger, or null); `call` starts the native call and `pick` takes the
 * result out of a successful reply. The call is traced as `method` unless `ctx` is given: then
 * the caller traced its start (`authenticate`), and this settles it.
 */
async function settle({ log, telemetry }, method, call, pick = (reply) => reply.response, ctx) {
  const probe = telemetry.probe(method)
  const own = ctx === undefined
  if (own) ctx = telemetry.context(probe)
  // When the native call starts: the origin of the times of its events.
  let started
  // A binding that throws instead of rejecting is settled below, as a rejection.
  const start = () => {
    started = performance.now()
    try {
      return call()
    } catch (cause) {
      return Promise.reject(cause)
    }
  }
  const pending = own ? telemetry.run(ctx, start) : start()
  let reply
  try {
    reply = await pending
  } catch (cause) {
    // Only a panic or a binding failure lands here; the native side reports all else as replies.
    if (log) reportCall(log, method, started, undefined)
    const error = internalError(cause)
    telemetry.settled(probe, ctx, error.code, error, undefined, started)
    throw error
  }
  if (log) reportCall(log, method, started, reply)
  if (reply.statusCode !== constants.statusCode.success) {
    const error = failure(reply.statusCode, reply.message, reply.detail)
    telemetry.settled(probe, ctx, reply.statusCode, error, reply.events, started)
    throw error
  }
  let response
  try {
    response = pick(reply)
  } catch (cause) {
    const error = internalError(cause)
    telemetry.settled(probe, ctx, error.code, error, reply.events, started)
    throw error
  }
  telemetry.settled(probe, ctx, reply.statusCode, undefined, reply.events, started)
  return { status_code: reply.statusCode, status_message: reply.message, response }
}

/** What `verifyToken` resolves with (`response`), from the binding's `TokenInfo`. */
const tokenInfo = (info) => ({ openId: info.openId, sku: info.sku, ctime: info.ctime, expiresIn: info.expiresIn ?? null })

/** The rejection of a live token of another sku where only the instance's own is admitted. */
const notThisSku = () => new MpauthxError(constants.statusCode.invalidAccessToken, 'token is not for this sku')

/** What diagnostics report for a check answered from the validation cache. */
const CACHED = Object.freeze({
  statusCode: constants.statusCode.success,
  message: 'OK',
  steps: [Object.freeze({ name: 'token.cached', elapsedMs: 0, detail: 'live, answered from the validation cache' })],
})

/** Reports a batch of token checks: the native steps once, then each call's outcome. */
function reportBatch(log, started, reply) {
  const { statusCodes, messages, details, steps } = reply
  reportCall(log, 'isTokenValid', started, { statusCode: statusCodes[0], message: messages[0], detail: details[0], steps })
  for (let i = 1; i < statusCodes.length; i++) {
    reportCall(log, 'isTokenValid', started, { statusCode: statusCodes[i], message: messages[i], detail: details[i] })
  }
}

module.exports = { settle, internalError, failure, tokenInfo, notThisSku, CACHED, reportBatch }
