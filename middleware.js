'use strict'

// HTTP middleware over an instance's token check: Express/Connect (and plain `http`) and Koa.
// A missing or dead token answers 401, a store failure 503, both with the JSON body
// `{ status_code, status_message }`; any other failure goes to the framework's error handling.

const INVALID_ACCESS_TOKEN = 6007
const DATABASE_RELATED_ERROR = 6000

/**
 * How each handled status code answers. The body's message is fixed per code: what went wrong
 * inside (which server, which file) is for the server's logs and diagnostics, not the client.
 */
const answers = {
  [INVALID_ACCESS_TOKEN]: {
    httpStatus: 401,
    headers: { 'WWW-Authenticate': 'Bearer realm="mpauthx"' },
    message: 'access token is missing, invalid or expired',
  },
  [DATABASE_RELATED_ERROR]: {
    httpStatus: 503,
    headers: { 'Retry-After': '1' },
    message: 'authentication is temporarily unavailable, try again',
  },
}

/**
 * The token of a request: `Authorization: Bearer <token>`, else the `x-access-token` header.
 * @param {{ [name: string]: string | string[] | undefined }} headers Node's lower-cased headers
 */
function requestToken(headers) {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(firstValue(headers.authorization) ?? '')
  if (match) return match[1]
  const fallback = firstValue(headers['x-access-token'])?.trim()
  return fallback || undefined
}

function firstValue(value) {
  return Array.isArray(value) ? value[0] : value
}

/**
 * The answer to send for a failed authentication, or `undefined` for a failure that is not
 * the client's or the store's (it goes to the framework).
 */
function failureAnswer(err) {
  const answer = answers[err?.code]
  if (!answer) return undefined
  return { ...answer, body: { status_code: err.code, status_message: answer.message } }
}

/**
 * An Express/Connect middleware: `(req, res, next)`.
 * @param {(headers: object) => object | Promise<object>} authenticate gives `req.mpauthx`, at
 *   once when it can, else as a promise
 */
function connectMiddleware(authenticate) {
  return function mpauthxMiddleware(req, res, next) {
    const auth = authenticate(req.headers)
    if (!(auth instanceof Promise)) {
      req.mpauthx = auth
      return next()
    }
    auth.then(
      (auth) => {
        req.mpauthx = auth
        next()
      },
      (err) => {
        const answer = failureAnswer(err)
        if (!answer || res.headersSent) return next(err)
        res.statusCode = answer.httpStatus
        for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value)
        res.setHeader('Content-Type', 'application/json; charset=utf-8')
        res.end(JSON.stringify(answer.body))
      },
    )
  }
}

/**
 * A Koa middleware: `async (ctx, next)`.
 * @param {(headers: object) => object | Promise<object>} authenticate gives
 *   `ctx.state.mpauthx`, at once when it can, else as a promise
 */
function koaMiddleware(authenticate) {
  return async function mpauthxKoaMiddleware(ctx, next) {
    let auth = authenticate(ctx.headers)
    try {
      if (auth instanceof Promise) auth = await auth
    } catch (err) {
      const answer = failureAnswer(err)
      if (!answer) throw err
      ctx.status = answer.httpStatus
      ctx.set(answer.headers)
      ctx.body = answer.body
      return
    }
    ctx.state.mpauthx = auth
    await next()
  }
}

module.exports = { connectMiddleware, koaMiddleware, requestToken }
