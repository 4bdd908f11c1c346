'use strict'

// The app's configuration. Redis: MPAUTHX_REDIS_URL (default redis://127.0.0.1:6379), or
// `options: { redisUrl }` below; users: the SQLite file DB (default users.db).

module.exports = (appInfo) => ({
  keys: `${appInfo.name}_${process.env.EGG_KEYS ?? 'change-me'}`,

  // app/middleware/mpauthx.js on every route, but those that `ignore` names: Egg runs it
  // where `match`, `ignore` and `enable` say, and passes it these options, on which it acts
  // the same way.
  middleware: ['mpauthx'],
  mpauthx: { ignore: '/login' }, // every route needs a live token but /login

  // The arguments of mpauthx's factory, for app/extend/application.js.
  mpauthxClient: {
    appId: process.env.APP_ID,
    appSecret: process.env.APP_SECRET,
    sku: process.env.SKU ?? 'myapp',
    db: process.env.DB ?? 'users.db',
    redisPass: process.env.REDIS_PASS ?? null,
    tokenTTL: 259200,
    options: {},
  },

  // The mini-program sends its token in a header, never a cookie: CSRF does not apply.
  security: { csrf: { enable: false } },
})
