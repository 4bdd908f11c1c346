'use strict'

// HTTP integrations over an instance's `authenticate`: Express/Connect (and plain `http`),
// Koa (and Egg, Midway) and Fastify. A missing or dead token answers 401, a store failure 503,
// both with the JSON body `{ status_code, status_message }` (or `failureBody(err)`); any other
// failure goes to the framework's error handling.

const { statusCode } = require('./constants.js')

/**
 * How each handled status code answers. The body's message is fixed per code: what went wrong
 * inside (which server, which file) is for the server's logs and diagnostics, not the client.
 */
const answers = {
  [statusCode.invalidAccessToken]: {
    httpStatus: 401,
    headers: { 'WWW-Authenticate': 'Bearer realm="mpauthx"' },
    message: 'token is missing, invalid or expired',
  },
  [statusCode.databaseRelatedError]: {
    httpStatus: 503,
    headers: { 'Retry-After': '1' },
    message: 'authentication is temporarily unavailable, try again',
  },
}

const JSON_TYPE = 'application/json; charset=utf-8'

/**
 * Where a request's token is read from, in order; the first found wins. `Authorization:
 * Bearer <token>` comes first unless `tokenFrom.bearer` is false; then the sources of
 * `tokenFrom` in the order its keys were written, or the `x-access-token` header when
 * `tokenFrom` is not given.
 * @param {{ bearer?: boolean, header?: string, cookie?: string, query?: string } | undefined} tokenFrom
 * @returns {{ read: (request: object) => string | undefined, bearerFirst: boolean, described: string }}
 */
function tokenSources(tokenFrom) {
  const bearerFirst = tokenFrom?.bearer !== false
  const named = tokenFrom === undefined ? [['header', 'x-access-token']] : Object.entries(tokenFrom)
  const sources = bearerFirst ? [{ read: bearerToken, described: '"Authorization: Bearer <token>"' }] : []
  for (const [kind, name] of named) {
    if (kind !== 'bearer' && name !== undefined) sources.push(sourceReaders[kind](name))
  }
  if (sources.length === 0) throw new TypeError('tokenFrom names no source of the token')
  return {
    bearerFirst,
    described: sources.map((source) => source.described).join(' or '),
    read(request) {
      for (const source of sources) {
        const token = source.read(request)
        if (token) return token
      }
      return undefined
    },
  }
}

function bearerToken(request) {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(headerValue(request.headers, 'authorization') ?? '')
  return match ? match[1] : undefined
}

// Readers of a named header, cookie or query parameter.
const sourceReaders = {
  header(name) {
    const lower = name.toLowerCase()
    return { read: (request) => headerValue(request.headers, lower)?.trim(), described: `the "${name}" header` }
  },
  cookie(name) {
    return {
      // Parsed by cookie-parser or @fastify/cookie, else read from the Cookie header.
      read: (request) => stringOrUndefined(request.cookies?.[name]) ?? cookieValue(headerValue(request.headers, 'cookie'), name),
      described: `the "${name}" cookie`,
    }
  },
  query(name) {
    return {
      // Parsed by the framework (Express, Koa, Fastify), else read from the URL.
      read: (request) => {
        const value = request.query?.[name]
        if (value !== undefined) return Array.isArray(value) ? stringOrUndefined(value[0]) : stringOrUndefined(value)
        return queryValue(request.url, name)
      },
      described: `the "${name}" query parameter`,
    }
  },
}

// A header of Node's lower-cased headers object, or of a Fetch `Headers`.
function headerValue(headers, lowerName) {
  const value = typeof headers.get === 'function' ? headers.get(lowerName) : headers[lowerName]
  return Array.isArray(value) ? value[0] : (value ?? undefined)
}

function stringOrUndefined(value) {
  return typeof value === 'string' ? value : undefined
}

function cookieValue(header, name) {
  if (typeof header !== 'string') return undefined
  for (const pair of header.split(';')) {
    const equals = pair.indexOf('=')
    if (equals < 0 || pair.slice(0, equals).trim() !== name) continue
    let value = pair.slice(equals + 1).trim()
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    try {
      return decodeURIComponent(value)
    } catch {
      return value
    }
  }
  return undefined
}

function queryValue(url, name) {
  if (typeof url !== 'string') return undefined
  const start = url.indexOf('?')
  if (start < 0) return undefined
  return new URLSearchParams(url.slice(start + 1)).get(name) ?? undefined
}

/**
 * The answer to send for a failed authentication, or `undefined` for a failure that is not
 * the client's or the store's (it goes to the framework).
 * @param {object} err the rejection
 * @param {((err: object) => unknown) | undefined} failureBody shapes the JSON body
 */
function failureAnswer(err, failureBody) {
  const answer = answers[err?.code]
  if (!answer) return undefined
  const body = failureBody ? failureBody(err) : { status_code: err.code, status_message: answer.message }
  return { httpStatus: answer.httpStatus, headers: answer.headers, body }
}

/**
 * An Express/Connect middleware: `(req, res, next)`.
 * @param {(request: object) => object | null | Promise<object | null>} authenticate gives
 *   `req.mpauthx`, at once when it can, else as a promise; `null` when optional and absent
 * @param {((err: object) => unknown) | undefined} failureBody
 */
function connectMiddleware(authenticate, failureBody) {
  return function mpauthxMiddleware(req, res, next) {
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
 * A Koa middleware: `async (ctx, next)`.
 * @param {(request: object) => object | null | Promise<object | null>} authenticate gives
 *   `ctx.state.mpauthx`, at once when it can, else as a promise
 * @param {((err: object) => unknown) | undefined} failureBody
 */
function koaMiddleware(authenticate, failureBody) {
  return async function mpauthxKoaMiddleware(ctx, next) {
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

/**
 * A Fastify plugin adding an `onRequest` check to the routes of the instance it is registered
 * on and of its children, those added after it included. Marked as fastify-plugin marks its
 * plugins (`skip-override`), so it is not encapsulated in a context of its own.
 * @param {(request: object) => object | null | Promise<object | null>} authenticate gives
 *   `request.mpauthx`, at once when it can, else as a promise
 * @param {((err: object) => unknown) | undefined} failureBody
 */
function fastifyPlugin(authenticate, failureBody) {
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

  function onRequest(request, reply, done) {
    const auth = authenticate(request)
    if (!(auth instanceof Promise)) {
      request.mpauthx = auth
      return done()
    }
    auth.then(
      (auth) => {
        request.mpauthx = auth
        done()
      },
      (err) => reject(err, reply, done),
    )
  }

  function mpauthxPlugin(fastify, _options, done) {
    // Declared once per app, so requests keep one shape (Fastify's advice for decorators).
    if (!fastify.hasRequestDecorator('mpauthx')) fastify.decorateRequest('mpauthx', null)
    fastify.addHook('onRequest', onRequest)
    done()
  }
  mpauthxPlugin[Symbol.for('skip-override')] = true
  mpauthxPlugin[Symbol.for('fastify.display-name')] = 'mpauthx'
  mpauthxPlugin[Symbol.for('plugin-meta')] = { name: 'mpauthx', fastify: '>=4' }
  return mpauthxPlugin
}

module.exports = { connectMiddleware, koaMiddleware, fastifyPlugin, tokenSources }
