'use strict'

// The check every integration shares: where a request's token is read from (`tokenFrom`),
// and `authenticate`, which checks it and gives what lands on `req.mpauthx`. The framework
// adapters over it are in middleware.js.

const { constants, MpauthxError } = require('./constants.js')
const { reportCall } = require('./diagnostics.js')
const { describe, readOptions, stringOrUndefined, middlewareOptions } = require('./options.js')
const { CACHED, notThisSku } = require('./replies.js')
const { extractSku } = require('./token.js')

/**
 * Where a request's token is read from, in order; the first found wins. `Authorization:
 * Bearer <token>` comes first unless `tokenFrom.bearer` is false; then the sources of
 * `tokenFrom` in the order its keys were written, or the `x-access-token` header (1.3.2's
 * name for it: "access token" was its word for the token) when `tokenFrom` is not given.
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
 * The authentication of an instance of `sku`: `authenticate(request, options)` and
 * `integration(what, options, types)`, the options an adapter of middleware.js takes.
 * `verify` and `verifyInStore` are the instance's token checks (token-checks.js).
 */
function createAuthentication(validationCache, observer, sku, { verify, verifyInStore }) {
  const { log, telemetry } = observer
  const checks = telemetry.probe('authenticate')
  // What `authenticate` resolves with and the integrations put on the request, returned at
  // once when the validation cache answers for `Bearer <token>` (no promise, so the request
  // goes on in the same callback), else a promise; `null` when `optional` and no token was
  // sent. It rejects like `isTokenValid`, with 6007 for a missing token and, unless `anySku`,
  // for a token of another sku. Traced as `authenticate`, once: the check it makes is part
  // of it, not a call of its own.
  const authenticator = ({ anySku, optional, tokenFrom }) => {
    const sources = tokenSources(tokenFrom)
    const missing = `token is missing: send ${sources.described}`
    const refuse = (ctx, error) => {
      telemetry.settled(checks, ctx, error.code, error)
      return Promise.reject(error)
    }
    const check = (request, ctx) => {
      const headers = request.headers
      // The token the validation cache was asked about, and did not answer for.
      let missed
      // What nearly every request is: `Bearer <token>` with a token the cache remembers. A
      // remembered token has no whitespace, so the header needs no further parsing.
      if (sources.bearerFirst) {
        const authorization = headers.authorization
        if (typeof authorization === 'string' && authorization.startsWith('Bearer ')) {
          const cached = validationCache.lookupBearer(authorization)
          if (ctx !== undefined) telemetry.cacheLookup(ctx)
          if (cached !== undefined && (anySku || cached.sku === sku)) {
            if (log) reportCall(log, 'authenticate', performance.now(), CACHED)
            if (ctx !== undefined) ctx.sku = cached.sku
            telemetry.settledSync(checks, ctx)
            return { token: cached.token, openId: cached.userId, sku: cached.sku, expiresIn: validationCache.secondsLeft(cached) }
          }
          missed = authorization.slice(7)
        }
      }
      const token = sources.read(request)
      if (token === undefined) {
        if (optional) {
          telemetry.settledSync(checks, ctx)
          return null
        }
        return refuse(ctx, new MpauthxError(constants.statusCode.invalidAccessToken, missing))
      }
      if (!anySku && extractSku(token) !== sku) return refuse(ctx, notThisSku())
      const verified = token === missed ? verifyInStore(checks, token, ctx) : verify(checks, token, ctx)
      return verified.then(({ response }) => ({
        token,
        openId: response.openId,
        sku: response.sku,
        expiresIn: response.expiresIn,
      }))
    }
    return (request) => {
      const ctx = telemetry.context(checks)
      if (ctx === undefined) return check(request, undefined)
      return telemetry.run(ctx, () => check(request, ctx))
    }
  }

  // Authenticators by their options object, so that `authenticate(req, options)` with the same
  // options reads them once.
  const authenticators = new WeakMap()
  const defaultAuthenticator = authenticator(readOptions('options', undefined, middlewareOptions))
  const authenticate = (request, options) => {
    if (request === null || typeof request !== 'object') {
      return Promise.reject(new TypeError(`request must be a request or a headers object, got ${describe(request)}`))
    }
    let check = defaultAuthenticator
    if (options !== undefined && options !== null) {
      check = authenticators.get(options)
      if (check === undefined) {
        try {
          // The integrations' options are welcome; `failureBody` shapes no reply here.
          check = authenticator(readOptions('authenticate options', options, middlewareOptions))
        } catch (err) {
          return Promise.reject(err)
        }
        authenticators.set(options, check)
      }
    }
    // A request (Node, Express, Koa, Fastify, NestJS) has `headers`; else `request` is them.
    const isRequest = typeof request.headers === 'object' && request.headers !== null
    try {
      return Promise.resolve(check(isRequest ? request : { headers: request }))
    } catch (err) {
      // A headers object of the wrong shape (a token that is no string): a rejection too.
      return Promise.reject(err)
    }
  }

  // The options of an integration: those of `authenticate`, how it shapes failures, and which
  // requests it checks (`match`, `ignore`).
  const integration = (what, options, types) => {
    const { failureBody, match, ignore, ...rest } = readOptions(what, options, types)
    return {
      authenticate: authenticator(rest),
      authenticateOptional: authenticator({ ...rest, optional: true }),
      failureBody,
      what,
      match,
      ignore,
    }
  }

  return { authenticate, integration }
}

module.exports = { createAuthentication }
