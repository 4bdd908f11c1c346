'use strict'

const { Controller } = require('egg')
const { MpauthxError } = require('../../../..') // in your project: require('mpauthx')

class AuthController extends Controller {
  /** POST /login `{ code }`: the mini-program sends wx.login()'s code, gets its token back. */
  async login() {
    const { ctx, app } = this
    try {
      const { response: token } = await app.mpauthx.login(ctx.request.body?.code)
      ctx.body = { token }
    } catch (err) {
      if (!(err instanceof MpauthxError)) throw err
      // err.status: 400 for the client's mistake, 502 when WeChat fails, 503 when the stores
      // do; err.expose says whether the message is for the client (else it is for the logs).
      if (!err.expose) ctx.logger.error(err)
      ctx.status = err.status
      ctx.body = { status_code: err.code, status_message: err.expose ? err.message : 'try again later' }
    }
  }

  /** GET /me: only reached with a live token (app/middleware/mpauthx.js). */
  async me() {
    const { openId, sku } = this.ctx.state.mpauthx
    this.ctx.body = { openId, sku }
  }
}

module.exports = AuthController
