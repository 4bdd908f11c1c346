'use strict'

const { Controller } = require('egg')
const { MpauthxError, constants } = require('../../../..') // in your project: require('mpauthx')

const { statusCode } = constants

// How login failures answer: the client's fault, WeChat's, or the stores'.
const httpStatusOf = {
  [statusCode.requiredParamsMissingError]: 400,
  [statusCode.sessionKeyAndOpenIdRequestError]: 502,
  [statusCode.databaseRelatedError]: 503,
}

class AuthController extends Controller {
  /** POST /login `{ code }`: the mini-program sends wx.login()'s code, gets its token back. */
  async login() {
    const { ctx, app } = this
    try {
      const { response: token } = await app.mpauthx.login(ctx.request.body?.code)
      ctx.body = { token }
    } catch (err) {
      if (!(err instanceof MpauthxError)) throw err
      // A store failure's message names the server or file: for the logs, not the client.
      const stores = err.code === statusCode.databaseRelatedError
      if (stores) ctx.logger.error(err)
      ctx.status = httpStatusOf[err.code] ?? 401
      ctx.body = { status_code: err.code, status_message: stores ? 'try again later' : err.message }
    }
  }

  /** GET /me: only reached with a live token (app/middleware/mpauthx.js). */
  async me() {
    const { openId, sku } = this.ctx.state.mpauthx
    this.ctx.body = { openId, sku }
  }
}

module.exports = AuthController
