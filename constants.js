'use strict'

// The status codes of mpauthx 1.3.2, spelled once for the JavaScript side (src/error.rs's
// `status` module is the native side's), the HTTP status each answers, and the error every
// rejection is.

const statusCode = Object.freeze({
  success: 1,
  databaseRelatedError: 6000,
  requiredParamsMissingError: 6001,
  httpError: 6002,
  responseIsNull: 6003,
  jsonParsedError: 6004,
  httpResponseErrorEvent: 6005,
  httpRequestErrorEvent: 6006,
  internetConnectionError: 6006,
  // "access token" is 1.3.2's name for what users hold; in this package it is the "token".
  invalidAccessToken: 6007,
  sessionKeyAndOpenIdRequestError: 6008,
  openIdOrUnionIdNotMatch: 6009,
  userNotExistInDB: 6010,
  userInfoDecryptionError: 6011,
  unknownError: 9999,
})

const constants = Object.freeze({ statusCode })

/**
 * The HTTP status of each mpauthx code: the client's mistake (400), a token that is not
 * live (401), an unknown user (404), WeChat failing (502), a store failing (503), a bug (500).
 */
const httpStatus = Object.freeze(
  Object.fromEntries(
    Object.entries({
      400: ['requiredParamsMissingError', 'openIdOrUnionIdNotMatch', 'userInfoDecryptionError'],
      401: ['invalidAccessToken'],
      404: ['userNotExistInDB'],
      500: ['unknownError'],
      502: [
        'httpError',
        'responseIsNull',
        'jsonParsedError',
        'httpResponseErrorEvent',
        'httpRequestErrorEvent',
        'sessionKeyAndOpenIdRequestError',
      ],
      503: ['databaseRelatedError'],
    }).flatMap(([status, names]) => names.map((name) => [statusCode[name], Number(status)])),
  ),
)

/**
 * A rejection of mpauthx: `code` is one of `constants.statusCode`; `status` the HTTP status it
 * answers and `expose` whether its message is meant for the client (below 500), as
 * `http-errors` errors carry them, so Express's, Koa's and Fastify's error handlers answer
 * the right status. `detail`, when given, says more than the message: what failed and where
 * (a server, a file, an operation), for logs and never for clients.
 */
class MpauthxError extends Error {
  constructor(code, message, options) {
    super(message, options)
    this.name = 'MpauthxError'
    this.code = code
    this.status = httpStatus[code] ?? 500
    this.expose = this.status < 500
    this.detail = options?.detail ?? message
  }
}

module.exports = { constants, statusCode, httpStatus, MpauthxError }
