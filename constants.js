'use strict'

// The status codes of mpauthx 1.3.2, spelled once for the JavaScript side (src/error.rs's
// `status` module is the native side's), and the error every rejection is.

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
  invalidAccessToken: 6007,
  sessionKeyAndOpenIdRequestError: 6008,
  openIdOrUnionIdNotMatch: 6009,
  userNotExistInDB: 6010,
  userInfoDecryptionError: 6011,
  unknownError: 9999,
})

const constants = Object.freeze({ statusCode })

/** A rejection of mpauthx: `code` is one of `constants.statusCode`. */
class MpauthxError extends Error {
  constructor(code, message, options) {
    super(message, options)
    this.name = 'MpauthxError'
    this.code = code
  }
}

module.exports = { constants, statusCode, MpauthxError }
