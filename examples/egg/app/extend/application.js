'use strict'

const mpauthx = require('../../../..') // in your project: require('mpauthx')

const INSTANCE = Symbol('Application#mpauthx')

module.exports = {
  /** The app's mpauthx instance, made from `config.mpauthxClient` on first use. */
  get mpauthx() {
    if (!this[INSTANCE]) {
      const { appId, appSecret, sku, db, redisPass, tokenTTL, options } = this.config.mpauthxClient
      if (!appId || !appSecret) throw new Error("set APP_ID and APP_SECRET to your mini-program's AppID and AppSecret")
      this[INSTANCE] = mpauthx(appId, appSecret, sku, db, redisPass, tokenTTL, options)
    }
    return this[INSTANCE]
  },
}
