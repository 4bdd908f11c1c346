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
 * Runs a native call and settles its reply. `log` is the instance's diagnostics logger, or
 * null; `call` starts the native call and `pick` takes the result out of a successful reply.
 */
async function settle(log, method, call, pick = (reply) => reply.response) {
  const started = log && performance.now()
  let reply
  try {
    reply = await call()
  } catch (cause) {
    // Only a panic or a binding failure lands here; the native side reports all else as replies.
    if (log) reportCall(log, method, started, undefined)
    throw internalError(cause)
  }
  if (log) reportCall(log, method, started, reply)
  if (reply.statusCode !== constants.statusCode.success) throw failure(reply.statusCode, reply.message, reply.detail)
  return { status_code: reply.statusCode, status_message: reply.message, response: pick(reply) }
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
