'use strict'

// The framework adapters over an instance's check (authenticate.js): Express/Connect (and
// plain `http`), Koa (and Egg, Midway) and Fastify. A failed check answers the HTTP status of
// its code (401 for a missing or dead token, 503 when a store cannot answer, …) with the JSON
// body `{ status_code, status_message }` (or `failureBody(err)`); any error that is not an
// MpauthxError goes to the framework's error handling. `match` and `ignore` say which
// requests are checked, with Egg's semantics (egg-path-matching).

const pathMatching = require('egg-path-matching')
const { statusCode, httpStatus } = require('./constants.js')
const { checkPathPattern } = require('./options.js')

/**
 * How the codes that need more than a status answer. The body's message is fixed per code:
 * what went wrong inside (which server, which file) is for the server's logs and
 * diagnostics, not the client.
 */
const answers = {
  [statusCode.invalidAccessToken]: {
    headers: { 'WWW-Authenticate': 'Bearer realm="mpauthx"' },
    message: 'token is missing, invalid or expired',
  },
  [statusCode.databaseRelatedError]: {
    headers: { 'Retry-After': '1' },
    message: 'authentication is temporarily unavailable, try again',
  },
}

// The public message of every other code, by its HTTP status.
const publicMessages = {
  400: 'bad request',
  404: 'not found',
  502: 'bad gateway',
  503: 'service unavailable',
}

const NO_HEADERS = Object.freeze({})

const JSON_TYPE = 'application/json; charset=utf-8'

/**
 * The answer to send for a failed authentication: the HTTP status of any MpauthxError (an
 * error whose `code` is an mpauthx code), or `undefined` for a bug, 9999 or another error: it
 * goes to the framework's error handling, which logs it and answers its `status` (500).
 * @param {object} err the rejection
 * @param {((err: object) => unknown) | undefined} failureBody shapes the JSON body
 */
function failureAnswer(err, failureBody) {
  const code = err?.code
  const status = typeof code === 'number' && Object.hasOwn(httpStatus, code) ? httpStatus[code] : undefined
  if (status === undefined || code === statusCode.unknownError) return undefined
  const answer = answers[code]
  const body = failureBody ? failureBody(err) : { status_code: code, status_message: answer ? answer.message : publicMessages[status] }
  return { httpStatus: status, headers: answer ? answer.headers : NO_HEADERS, body }
}

/**
 * Which requests an integration checks, from `match` or `ignore` with Egg's semantics: a
 * string is a path pattern (path-to-regexp, `end: false`: the path and everything under it), a
 * RegExp is tested on the path, a function gets the framework's request and matches when it
 * returns truthy, an array matches when one of its items does. `null` when every request is
 * checked. As in Egg, an empty string restricts nothing.
 *
 * A path that a router may read otherwise than it was sent (percent-encoded, `//`, dot
 * segments, an absolute-form target) is checked unless every reading of it is skipped, so
 * that no spelling of a guarded route gets past the check.
 * @param {string} what the options, for errors
 * @param {unknown} match patterns of the requests to check
 * @param {unknown} ignore patterns of the requests not to check
 * @param {(request: object) => string} pathOf the request's path, without the query
 * @returns {((request: object) => boolean) | null} whether a request is checked
 */
function requestFilter(what, match, ignore, pathOf) {
  if (match != null && ignore != null) {
    throw new TypeError(
      `${what}.match and ${what}.ignore are both given: give one (match names the requests to check, ignore those not to check)`,
    )
  }
  const isMatch = match != null
  const pattern = isMatch ? match : ignore
  if (!pattern) return null
  checkPathPattern(`${what}.${isMatch ? 'match' : 'ignore'}`, pattern)
  const functions = []
  const paths = []
  ;(function collect(item) {
    if (Array.isArray(item)) item.forEach(collect)
    else if (typeof item === 'function') functions.push(item)
    else paths.push(item)
  })(pattern)
  // Egg's own matcher over the strings and RegExps, so that their semantics are exactly Egg's.
  let pathTest = null
  if (paths.length > 0) {
    try {
      pathTest = pathMatching({ match: paths })
    } catch (err) {
      throw new TypeError(`${what}.${isMatch ? 'match' : 'ignore'}: ${err.message}`, { cause: err })
    }
  }
  const testPath = (path) => pathTest({ path })

  return function checks(request) {
    let hit = false
    if (pathTest !== null) {
      const readings = pathReadings(pathOf(request))
      hit = isMatch ? readings.some(testPath) : readings.every(testPath)
    }
    if (!hit) hit = functions.some((fn) => fn(request))
    return isMatch ? hit : !hit
  }
}

// A path as sent and, when a router might read it otherwise, the other readings: decoded (as
// Fastify's router decodes), with repeated slashes collapsed, with dot segments resolved, and
// without the scheme and host of an absolute-form target.
function pathReadings(path) {
  if (path.startsWith('/') && !/%|\/\/|\/\./.test(path)) return [path]
  const readings = new Set([path])
  let base = path
  if (!base.startsWith('/')) {
    const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(base)
    if (origin) base = base.slice(origin[0].length) || '/'
  }
  let decoded = base
  try {
    decoded = decodeURIComponent(base)
  } catch {
    // Not valid percent-encoding: routers refuse it or read it as sent.
  }
  for (const reading of [base, decoded]) {
    const collapsed = reading.replace(/\/{2,}/g, '/')
    readings.add(reading).add(collapsed)
    try {
      readings.add(new URL(collapsed, 'http://host').pathname)
    } catch {
      // Nothing more to read.
    }
  }
  return [...readings]
}

// The path of a request without its query: Express's and Connect's whole path, wherever the
// middleware is mounted (`req.url` is relative to the mount point there); Koa's `ctx.path`,
// which is what Egg tests; Fastify's URL.
const withoutQuery = (url) => {
  if (typeof url !== 'string') return ''
  const query = url.indexOf('?')
  return query < 0 ? url : url.slice(0, query)
}
const connectPath = (req) => withoutQuery(req.originalUrl ?? req.url)
const koaPath = (ctx) => (typeof ctx.path === 'string' ? ctx.path : withoutQuery(ctx.url))
const fastifyPath = (request) => withoutQuery(request.url)

/**
 * Whether `request` goes on unchecked, handed to `proceed` (`next`, `done`): `checks` (from
 * `match`/`ignore`) skips it, or throws, and `proceed` gets the error.
 * @param {((request: object) => boolean) | null} checks
 * @param {object} request
 * @param {(err?: unknown) => void} proceed
 */
function passedOver(checks, request, proceed) {
  if (checks === null) return false
  try {
    if (checks(request)) return false
  } catch (err) {
    proceed(err)
    return true
  }
  proceed()
  return true
}

/**
 * An Express/Connect middleware: `(req, res, next)`.
 * @param {object} integration
 * @param {(request: object) => object | null | Promise<object | null>} integration.authenticate
 *   gives `req.mpauthx`, at once when it can, else as a promise; `null` when optional and absent
 * @param {((err: object) => unknown) | undefined} integration.failureBody
 * @param {string} integration.what the options, for errors
 * @param {unknown} integration.match
 * @param {unknown} integration.ignore
 */
function connectMiddleware({ authenticate, failureBody, what, match, ignore }) {
  const checks = requestFilter(what, match, ignore, connectPath)
  return function mpauthxMiddleware(req, res, next) {
    if (passedOver(checks, req, next)) return
    const auth = authenticate(req)
    if (!(auth instanceof Promise)) {
      if (auth !== null) req.mpauthx = auth
      return next()
    }
    auth.then(
      (auth) => {
        if (auth !== null) req.mpauthx = auth
        next()
      },
      (err) => {
        let answer
        try {
          answer = failureAnswer(err, failureBody)
        } catch (shapeError) {
          return next(shapeError)
        }
        if (!answer || res.headersSent) return next(err)
        res.statusCode = answer.httpStatus
        for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value)
        res.setHeader('Content-Type', JSON_TYPE)
        res.end(JSON.stringify(answer.body))
      },
    )
  }
}

/**
 * A Koa middleware: `async (ctx, next)`. Its `match` and `ignore` test `ctx.path` as Egg's
 * own do, so that a request Egg lets through to it is never skipped again.
 * @param {object} integration as for `connectMiddleware`; `authenticate` gives
 *   `ctx.state.mpauthx`
 */
function koaMiddleware({ authenticate, failureBody, what, match, ignore }) {
  const checks = requestFilter(what, match, ignore, koaPath)
  return async function mpauthxKoaMiddleware(ctx, next) {
    if (checks !== null && !checks(ctx)) return next()
    let auth = authenticate(ctx)
    try {
      if (auth instanceof Promise) auth = await auth
    } catch (err) {
      const answer = failureAnswer(err, failureBody)
      if (!answer) throw err
      ctx.status = answer.httpStatus
      ctx.set(answer.headers)
      ctx.type = JSON_TYPE
      ctx.body = JSON.stringify(answer.body)
      return
    }
    if (auth !== null) ctx.state.mpauthx = auth
    await next()
  }
}

// Which plugin's `onRequest` hook admitted a request with a token, so that `mpauthxGuard`
// does not check it twice; a request decorator, so that requests keep one shape.
const ADMITTED_BY = Symbol('mpauthx.admittedBy')

/**
 * What a route's config says (`{ config: { mpauthx } }`): `undefined`, `false` (no check)
 * or `{ optional }`. Fastify 5 has it in `request.routeOptions.config`, Fastify 4 also in
 * `request.routeConfig`.
 */
function routeSetting(request) {
  const config = routeContextOf(request)?.config ?? request.routeOptions?.config ?? request.routeConfig
  return config == null ? undefined : config.mpauthx
}

// The route's context that Fastify keeps on each request, under a symbol of its own
// (`Symbol('fastify.context')`), found once. `request.routeOptions` gives the same `config`,
// but its getter builds and freezes a new object of a dozen fields on every call, about a
// thousand instructions per request under the bench's callgrind count; where the symbol is
// not found (another Fastify), the public getter is read instead.
let routeContextSymbol
function routeContextOf(request) {
  if (routeContextSymbol === undefined) {
    routeContextSymbol = Object.getOwnPropertySymbols(request).find((symbol) => symbol.description === 'fastify.context') ?? null
  }
  return routeContextSymbol === null ? undefined : request[routeContextSymbol]
}

/** Refuses, when a route is added, a `config.mpauthx` that is not `false` or `{ optional?: boolean }`. */
function checkRouteSetting(routeOptions) {
  const setting = routeOptions.config?.mpauthx
  if (setting === undefined || setting === false) return
  const valid =
    setting !== null &&
    typeof setting === 'object' &&
    Object.keys(setting).every((key) => key === 'optional') &&
    (setting.optional === undefined || typeof setting.optional === 'boolean')
  if (!valid) {
    throw new TypeError(
      `route ${routeOptions.method} ${routeOptions.url}: config.mpauthx must be false (no check) or ` +
        `{ optional?: boolean }, got ${setting === null ? 'null' : typeof setting === 'object' ? JSON.stringify(setting) : typeof setting}`,
    )
  }
}

/**
 * A Fastify plugin adding an `onRequest` check to the routes of the instance it is registered
 * on and of its children, those added after it included, but those that `match`/`ignore`
 * leave out and those whose config says `mpauthx: false`; `mpauthx: { optional: true }` makes
 * a route's check optional. Marked as fastify-plugin marks its plugins (`skip-override`), so
 * it is not encapsulated in a context of its own: it decorates the instance it is registered
 * on with `mpauthxGuard`, a hook that checks a request whatever `match`/`ignore` say.
 * @param {object} integration as for `connectMiddleware`; `authenticate` gives
 *   `request.mpauthx`, and `authenticateOptional` is the same check made optional
 * @param {(request: object) => object | null | Promise<object | null>} integration.authenticateOptional
 */
function fastifyPlugin({ authenticate, authenticateOptional, failureBody, what, match, ignore }) {
  const checks = requestFilter(what, match, ignore, fastifyPath)

  function reject(err, reply, done) {
    let answer
    try {
      answer = failureAnswer(err, failureBody)
    } catch (shapeError) {
      return done(shapeError)
    }
    if (!answer) return done(err)
    reply.code(answer.httpStatus).headers(answer.headers).type(JSON_TYPE).send(JSON.stringify(answer.body))
  }

  function admit(request, auth) {
    request.mpauthx = auth
    if (auth !== null) request[ADMITTED_BY] = mpauthxPlugin
  }

  function check(request, reply, done, setting) {
    const auth = setting?.optional === true ? authenticateOptional(request) : authenticate(request)
    if (!(auth instanceof Promise)) {
      admit(request, auth)
      return done()
    }
    auth.then(
      (auth) => {
        admit(request, auth)
        done()
      },
      (err) => reject(err, reply, done),
    )
  }

  function onRequest(request, reply, done) {
    const setting = routeSetting(request)
    if (setting === false) return done()
    // A route's own setting is more specific than the plugin's paths: it is always checked.
    if (setting === undefined && passedOver(checks, request, done)) return
    check(request, reply, done, setting)
  }

  /** `onRequest: [fastify.mpauthxGuard]`: checks the request whatever `match`/`ignore` say. */
  function mpauthxGuard(request, reply, done) {
    if (request[ADMITTED_BY] === mpauthxPlugin) return done()
    const setting = routeSetting(request)
    check(request, reply, done, setting === false ? undefined : setting)
  }

  function mpauthxPlugin(fastify, _options, done) {
    if (Object.hasOwn(fastify, 'mpauthxGuard')) {
      return done(
        new Error(
          'an mpauthx Fastify plugin is already registered in this context (it decorated fastify.mpauthxGuard): ' +
            'register one per encapsulated context; two skus (or two sets of options) need two contexts, e.g. ' +
            'app.register(async (api) => { await api.register(auth.fastifyPlugin()); api.get(...) })',
        ),
      )
    }
    // Declared once per app, so requests keep one shape (Fastify's advice for decorators).
    if (!fastify.hasRequestDecorator('mpauthx')) fastify.decorateRequest('mpauthx', null)
    if (!fastify.hasRequestDecorator(ADMITTED_BY)) fastify.decorateRequest(ADMITTED_BY, null)
    fastify.decorate('mpauthxGuard', mpauthxGuard)
    fastify.addHook('onRoute', checkRouteSetting)
    fastify.addHook('onRequest', onRequest)
    done()
  }
  mpauthxPlugin[Symbol.for('skip-override')] = true
  mpauthxPlugin[Symbol.for('fastify.display-name')] = 'mpauthx'
  mpauthxPlugin[Symbol.for('plugin-meta')] = { name: 'mpauthx', fastify: '>=4' }
  return mpauthxPlugin
}

module.exports = { connectMiddleware, koaMiddleware, fastifyPlugin }
