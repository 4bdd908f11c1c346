'use strict'

// `config.mpauthx` is `options`: Egg reads its `match`, `ignore` and `enable`, mpauthx the
// rest. A request with a live token gets `ctx.state.mpauthx`; others get 401 (or 503 while
// Redis is down) with `{ status_code, status_message }`.
module.exports = (options, app) => app.mpauthx.koaMiddleware(options)
