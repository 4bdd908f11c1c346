'use strict'

// Public routes in every framework (issue 24, point 3): `match` and `ignore` with Egg's
// semantics for middleware(), koaMiddleware() and fastifyPlugin(); Fastify's route config and
// `mpauthxGuard`; the HTTP status of every code; and the README's public-route snippets, run as
// written.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')
const { before, describe, test } = require('node:test')

const pathMatching = require('egg-path-matching')
const express = require('express')
const Fastify = require('fastify')
const Koa = require('koa')

const { useHarness, SKU } = require('./support/harness')
const integrations = require('../middleware.js')
const { MpauthxError, constants } = require('..')

const ROOT = path.join(__dirname, '..')

/** Serves `listener` on loopback; `request()` sends its path exactly as given (no normalizing). */
async function serve(listener) {
  const server = http.createServer(await listener)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  return {
    request({ method = 'GET', path: target = '/', headers = {}, body } = {}) {
      const sent = body === undefined ? undefined : JSON.stringify(body)
      const allHeaders = sent === undefined ? headers : { 'content-type': 'application/json', ...headers }
      return new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method, path: target, headers: allHeaders, agent: false }, (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (chunk) => (text += chunk))
          res.on('end', () => {
            let json
            try {
              json = JSON.parse(text)
            } catch {
              json = undefined
            }
            resolve({ status: res.statusCode, headers: res.headers, body: json, text })
          })
        })
        req.on('error', reject)
        req.end(sent)
      })
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  }
}

// What a pattern function was last given, so that a route can say whether it is its request.
let lastSeen

// One app per framework with the integration in front of a catch-all route, which answers with
// what the integration attached (`null` when nothing) and whether the pattern function was
// given this very request object (Express `req`, Koa `ctx`, Fastify `request`).
const mounts = {
  express(auth, options) {
    const app = express()
    app.use(auth.middleware(options))
    app.use((req, res) => res.json({ auth: req.mpauthx ?? null, seen: lastSeen === req }))
    return app
  },
  koa(auth, options) {
    const app = new Koa()
    app.use(auth.koaMiddleware(options))
    app.use((ctx) => {
      ctx.body = { auth: ctx.state.mpauthx ?? null, seen: lastSeen === ctx }
    })
    return app.callback()
  },
  async fastify(auth, options) {
    const app = Fastify()
    await app.register(auth.fastifyPlugin(options))
    app.all('/*', async (request) => ({ auth: request.mpauthx, seen: lastSeen === request }))
    await app.ready()
    return (req, res) => app.routing(req, res)
  },
}

for (const [name, mount] of Object.entries(mounts)) {
  describe(`match and ignore with ${name}`, () => {
    const h = useHarness()
    let auth
    let token
    before(async () => {
      auth = h.create()
      token = (await h.login({ openId: 'oPublic' }, auth)).response
    })

    /** Serves `options`; resolves with `{ path: status }` for each path without a token. */
    async function statuses(options, paths, headers = {}) {
      const server = await serve(mount(auth, options))
      try {
        const answers = {}
        for (const target of paths) answers[target] = (await server.request({ path: target, headers })).status
        return answers
      } finally {
        await server.close()
      }
    }

    test("ignore '/login': that path and those under it go on unchecked, without mpauthx; the rest is guarded", async () => {
      const server = await serve(mount(auth, { ignore: '/login' }))
      try {
        for (const target of ['/login', '/login/', '/login/wechat', '/login?next=/me', '/LOGIN']) {
          const reply = await server.request({ path: target })
          assert.equal(reply.status, 200, target)
          assert.equal(reply.body.auth, null, target)
        }
        // A live token changes nothing on an ignored path: the request is not checked.
        const withToken = await server.request({ path: '/login', headers: { authorization: `Bearer ${token}` } })
        assert.deepEqual(withToken.body.auth, null)
        for (const target of ['/me', '/loginx', '/login.json', '/api/login', '/me?then=/login', '/%6Cogin']) {
          const reply = await server.request({ path: target })
          assert.equal(reply.status, 401, target)
          assert.equal(reply.body.status_code, 6007, target)
        }
        const me = await server.request({ path: '/me', headers: { authorization: `Bearer ${token}` } })
        assert.equal(me.status, 200)
        assert.equal(me.body.auth.openId, 'oPublic')
      } finally {
        await server.close()
      }
    })

    test('a RegExp is tested on the path without the query', async () => {
      assert.deepEqual(await statuses({ ignore: /^\/public\// }, ['/public/a.css', '/public/', '/publicx', '/me?x=/public/']), {
        '/public/a.css': 200,
        '/public/': 200,
        '/publicx': 401,
        '/me?x=/public/': 401,
      })
    })

    test("a function gets the framework's own request and matches when it returns truthy", async () => {
      const isProbe = (request) => {
        lastSeen = request
        return request.headers['x-probe'] === '1' ? 'yes' : 0
      }
      const server = await serve(mount(auth, { ignore: isProbe }))
      try {
        const probe = await server.request({ path: '/health', headers: { 'x-probe': '1' } })
        assert.equal(probe.status, 200)
        assert.equal(probe.body.seen, true, 'the function was given the request the route sees')
        assert.equal((await server.request({ path: '/health' })).status, 401)
      } finally {
        await server.close()
      }
    })

    test('an array matches when one of its items does', async () => {
      const options = { ignore: ['/login', [/^\/public\//, (request) => request.headers['x-probe'] === '1']] }
      assert.deepEqual(await statuses(options, ['/login/x', '/public/a', '/me']), { '/login/x': 200, '/public/a': 200, '/me': 401 })
      assert.deepEqual(await statuses(options, ['/me'], { 'x-probe': '1' }), { '/me': 200 })
    })

    test('match checks only the requests it names; the others go on without mpauthx, even with a token', async () => {
      const server = await serve(mount(auth, { match: ['/api', '/users/:id/orders'] }))
      try {
        assert.equal((await server.request({ path: '/api/me' })).status, 401)
        assert.equal((await server.request({ path: '/users/42/orders/7' })).status, 401)
        const admitted = await server.request({ path: '/api/me', headers: { authorization: `Bearer ${token}` } })
        assert.equal(admitted.status, 200)
        assert.equal(admitted.body.auth.openId, 'oPublic')
        for (const target of ['/me', '/apix', '/users/42']) {
          const open = await server.request({ path: target, headers: { authorization: `Bearer ${token}` } })
          assert.equal(open.status, 200, target)
          assert.equal(open.body.auth, null, target)
        }
      } finally {
        await server.close()
      }
    })

    test('a path a router may read otherwise is checked unless every reading is skipped', async () => {
      // Fastify's router sends /%61pi/me and /x/../api/me to /api/me: no spelling gets past match.
      assert.deepEqual(await statuses({ match: '/api' }, ['/%61pi/me', '/x/../api/me', '//api/me', '/%2561pi/me']), {
        '/%61pi/me': 401,
        '/x/../api/me': 401,
        '//api/me': 401,
        '/%2561pi/me': 200, // decoded once it is /%61pi/me, which no router reads as /api
      })
      assert.deepEqual(await statuses({ ignore: '/login' }, ['/login/../me', '/login/%2e%2e/me', '//login', '/%6Cogin']), {
        '/login/../me': 401,
        '/login/%2e%2e/me': 401,
        '//login': 401, // as sent, it is not /login
        '/%6Cogin': 401,
      })
    })

    test('match: [] checks nothing; an empty ignore, as in Egg, restricts nothing', async () => {
      assert.deepEqual(await statuses({ match: [] }, ['/me', '/login']), { '/me': 200, '/login': 200 })
      assert.deepEqual(await statuses({ ignore: '' }, ['/me', '/login']), { '/me': 401, '/login': 401 })
      assert.deepEqual(await statuses({ ignore: [] }, ['/me']), { '/me': 401 })
    })
  })
}

describe('match and ignore: options', () => {
  const h = useHarness()

  test('both given, or a pattern of another type, throw a TypeError when the integration is made', () => {
    const auth = h.create()
    for (const make of [(o) => auth.middleware(o), (o) => auth.koaMiddleware(o), (o) => auth.fastifyPlugin(o)]) {
      assert.throws(() => make({ match: '/api', ignore: '/login' }), { name: 'TypeError', message: /match and .*ignore are both given/ })
      assert.throws(() => make({ match: [], ignore: [] }), { name: 'TypeError', message: /both given/ })
      assert.throws(() => make({ ignore: 5 }), { name: 'TypeError', message: /ignore must be a path \(string\), a RegExp, a function/ })
      assert.throws(() => make({ match: ['/api', { path: '/x' }] }), { name: 'TypeError', message: /match\[1\] must be/ })
      assert.throws(() => make({ ignore: [['/a', true]] }), { name: 'TypeError', message: /ignore\[0\]\[1\] must be/ })
      // Left out: undefined, or null.
      assert.equal(typeof make({ match: undefined, ignore: '/login' }), 'function')
      assert.equal(typeof make({ match: null, ignore: null }), 'function')
    }
  })

  test('authenticate is an explicit check: it accepts match and ignore and never consults them', async () => {
    const auth = h.create()
    const token = (await h.login({ openId: 'oExplicit' }, auth)).response
    const shared = { ignore: '/login', failureBody: () => ({}) }
    const refused = await auth.authenticate({ headers: {}, url: '/login' }, shared).catch((err) => err)
    assert.equal(refused.code, 6007)
    const everything = { ignore: () => true }
    assert.equal((await auth.authenticate({ authorization: `Bearer ${token}` }, everything)).openId, 'oExplicit')
    assert.equal((await auth.authenticate({ headers: {} }, { match: [] }).catch((err) => err)).code, 6007)
    assert.equal((await auth.authenticate({}, { ignore: 5 }).catch((err) => err)).name, 'TypeError')
  })

  test('Express: the whole path, wherever the middleware is mounted', async () => {
    const auth = h.create()
    const app = express()
    app.use('/v1', auth.middleware({ ignore: '/v1/login' }))
    app.use((req, res) => res.json({ auth: req.mpauthx ?? null }))
    const server = await serve(app)
    try {
      assert.equal((await server.request({ path: '/v1/login' })).status, 200)
      assert.equal((await server.request({ path: '/v1/me' })).status, 401)
    } finally {
      await server.close()
    }
  })

  test('a pattern function that throws goes to the framework', async () => {
    const auth = h.create()
    const boom = () => {
      throw new Error('pattern failed')
    }
    const app = express()
    app.use(auth.middleware({ match: boom }))
    app.use((err, req, res, _next) => res.status(500).json({ handled: err.message }))
    const server = await serve(app)
    try {
      assert.deepEqual((await server.request({ path: '/me' })).body, { handled: 'pattern failed' })
    } finally {
      await server.close()
    }
  })
})

describe('koaMiddleware and Egg: the same path, the same semantics', () => {
  const h = useHarness()

  // Patterns as Egg configs write them, and paths, some spelt as routers may read otherwise.
  const configs = [
    { ignore: '/login' },
    { ignore: ['/login', /^\/static\//, '/api/:version/public'] },
    { match: '/api' },
    { match: ['/api/:version/users', /\.json$/] },
    { ignore: '/' },
    { match: '/' },
    { ignore: /login/i },
  ]
  const plain = [
    '/',
    '/login',
    '/login/',
    '/login/x',
    '/LOGIN',
    '/loginx',
    '/static/a.js',
    '/api',
    '/api/v1/users',
    '/api/v1/users/3',
    '/api/v2/public/x',
    '/me.json',
    '/me',
  ]
  const spelt = ['/%6Cogin', '//login', '/x/../login', '/%61pi/v1/users', '/static/../me']

  /** Whether the middleware checked a request to `path` (a check without a token answers 401). */
  async function checks(middleware, requestPath) {
    const ctx = { path: requestPath, url: requestPath, method: 'GET', headers: {}, state: {}, set() {} }
    let reached = false
    await middleware(ctx, async () => {
      reached = true
    })
    assert.ok(reached !== (ctx.status === 401), `${requestPath}: either checked and refused, or passed on`)
    return !reached
  }

  test('a request Egg lets through is never skipped again; on plain paths both decide alike', async () => {
    const auth = h.create()
    for (const config of configs) {
      const egg = pathMatching(config)
      const middleware = auth.koaMiddleware(config)
      for (const requestPath of [...plain, ...spelt]) {
        const eggRuns = egg({ path: requestPath })
        const checked = await checks(middleware, requestPath)
        const where = `${JSON.stringify(config, (k, v) => (v instanceof RegExp ? String(v) : v))} on ${requestPath}`
        if (eggRuns) assert.equal(checked, true, where)
        if (plain.includes(requestPath)) assert.equal(checked, eggRuns, where)
      }
    }
  })
})

describe('fastifyPlugin: route config and mpauthxGuard', () => {
  const h = useHarness()
  let auth
  let token
  let events
  before(async () => {
    events = []
    auth = h.create({ options: { logger: (event) => events.push(event) } })
    token = (await h.login({ openId: 'oFastifyRoutes' }, auth)).response
  })
  const bearer = () => ({ authorization: `Bearer ${token}` })

  test('config.mpauthx false: no check, request.mpauthx null; { optional: true }: checked only when a token is sent', async () => {
    const app = Fastify()
    await app.register(auth.fastifyPlugin())
    app.post('/login', { config: { mpauthx: false } }, async (request) => ({ auth: request.mpauthx }))
    app.get('/feed', { config: { mpauthx: { optional: true } } }, async (request) => ({ auth: request.mpauthx }))
    app.get('/me', async (request) => ({ auth: request.mpauthx }))
    const open = await app.inject({ method: 'POST', url: '/login' })
    assert.equal(open.statusCode, 200)
    assert.deepEqual(open.json(), { auth: null })
    assert.deepEqual((await app.inject({ method: 'POST', url: '/login', headers: bearer() })).json(), { auth: null })
    assert.deepEqual((await app.inject({ url: '/feed' })).json(), { auth: null })
    assert.equal((await app.inject({ url: '/feed', headers: bearer() })).json().auth.openId, 'oFastifyRoutes')
    const dead = await app.inject({ url: '/feed', headers: { authorization: `Bearer oFastifyRoutes|${SKU}|${'0'.repeat(64)}` } })
    assert.equal(dead.statusCode, 401)
    assert.equal((await app.inject({ url: '/me' })).statusCode, 401)
    await app.close()
  })

  test('a route config says more than match/ignore; a bad one throws when the route is added', async () => {
    const app = Fastify()
    await app.register(auth.fastifyPlugin({ ignore: '/public' }))
    app.get('/public/feed', { config: { mpauthx: { optional: true } } }, async (request) => ({ auth: request.mpauthx }))
    app.get('/public/page', async (request) => ({ auth: request.mpauthx }))
    for (const setting of [true, 'false', null, { optional: 'yes' }, { optinal: true }]) {
      assert.throws(() => app.get('/bad', { config: { mpauthx: setting } }, async () => ({})), {
        name: 'TypeError',
        message: /config\.mpauthx must be false \(no check\) or \{ optional\?: boolean \}/,
      })
    }
    assert.equal((await app.inject({ url: '/public/feed', headers: bearer() })).json().auth.openId, 'oFastifyRoutes')
    assert.deepEqual((await app.inject({ url: '/public/page', headers: bearer() })).json(), { auth: null })
    await app.close()
  })

  test('mpauthxGuard with match: []: the plugin guards nothing by itself, routes opt in', async () => {
    const app = Fastify()
    await app.register(auth.fastifyPlugin({ match: [] }))
    app.post('/login', async (request) => ({ auth: request.mpauthx }))
    app.get('/me', { onRequest: [app.mpauthxGuard] }, async (request) => ({ auth: request.mpauthx }))
    app.get('/feed', { onRequest: app.mpauthxGuard, config: { mpauthx: { optional: true } } }, async (request) => ({
      auth: request.mpauthx,
    }))
    assert.deepEqual((await app.inject({ method: 'POST', url: '/login', headers: bearer() })).json(), { auth: null })
    const refused = await app.inject({ url: '/me' })
    assert.equal(refused.statusCode, 401)
    assert.equal(refused.json().status_code, 6007)
    assert.equal((await app.inject({ url: '/me', headers: bearer() })).json().auth.openId, 'oFastifyRoutes')
    // The guard honours the route's { optional: true }, whatever match says.
    assert.deepEqual((await app.inject({ url: '/feed' })).json(), { auth: null })
    assert.equal((await app.inject({ url: '/feed', headers: bearer() })).json().auth.openId, 'oFastifyRoutes')
    await app.close()
  })

  test('the guard does not check again a request the plugin already admitted', async () => {
    const app = Fastify()
    await app.register(auth.fastifyPlugin())
    app.get('/me', { onRequest: [app.mpauthxGuard] }, async (request) => ({ auth: request.mpauthx }))
    await app.inject({ url: '/me', headers: bearer() }) // the token is in the validation cache from now on
    events.length = 0
    const reply = await app.inject({ url: '/me', headers: bearer() })
    assert.equal(reply.json().auth.openId, 'oFastifyRoutes')
    const checks = events.filter((event) => event.method === 'authenticate' && event.step === 'done')
    assert.equal(checks.length, 1, JSON.stringify(events))
    await app.close()
  })

  test('a second registration in the same context rejects; two skus take two contexts', async () => {
    const other = h.create({ sku: 'adminsku' })
    const app = Fastify()
    await app.register(auth.fastifyPlugin())
    // Fastify's register returns a thenable, not a promise.
    await assert.rejects(async () => app.register(other.fastifyPlugin()), {
      message: /already registered in this context.*two skus \(or two sets of options\) need two contexts/,
    })
    await app.close()

    const split = Fastify()
    split.get('/login', async () => ({ open: true }))
    await split.register(async (shop) => {
      await shop.register(auth.fastifyPlugin())
      shop.get('/shop/me', async (request) => ({ sku: request.mpauthx.sku }))
    })
    await split.register(async (admin) => {
      await admin.register(other.fastifyPlugin())
      admin.get('/admin/me', async (request) => ({ sku: request.mpauthx.sku }))
    })
    const adminToken = (await h.login({ openId: 'oAdmin' }, other)).response
    assert.equal((await split.inject({ url: '/login' })).statusCode, 200)
    assert.deepEqual((await split.inject({ url: '/shop/me', headers: bearer() })).json(), { sku: SKU })
    assert.equal((await split.inject({ url: '/admin/me', headers: bearer() })).statusCode, 401)
    const admin = await split.inject({ url: '/admin/me', headers: { authorization: `Bearer ${adminToken}` } })
    assert.deepEqual(admin.json(), { sku: 'adminsku' })
    await split.close()
  })
})

describe('HTTP statuses of refusals', () => {
  const codes = Object.entries(constants.statusCode).filter(([, code]) => code !== 1)
  const expected = {
    6000: [503, 'authentication is temporarily unavailable, try again'],
    6001: [400, 'bad request'],
    6002: [502, 'bad gateway'],
    6003: [502, 'bad gateway'],
    6004: [502, 'bad gateway'],
    6005: [502, 'bad gateway'],
    6006: [502, 'bad gateway'],
    6007: [401, 'token is missing, invalid or expired'],
    6008: [502, 'bad gateway'],
    6009: [400, 'bad request'],
    6010: [404, 'not found'],
    6011: [400, 'bad request'],
  }

  // The integrations over a check that fails with `err`, as index.js makes them.
  const failing = (err) => ({
    authenticate: () => Promise.reject(err),
    authenticateOptional: () => Promise.reject(err),
    failureBody: undefined,
    what: 'middlewareOptions',
  })
  const apps = {
    express(err) {
      const app = express()
      app.use(integrations.connectMiddleware(failing(err)))
      app.use((req, res) => res.json({ reached: true }))
      app.use((error, req, res, _next) => res.status(599).json({ handled: error.message }))
      return app
    },
    koa(err) {
      const app = new Koa()
      app.use(async (ctx, next) => {
        try {
          await next()
        } catch (error) {
          ctx.status = 599
          ctx.body = { handled: error.message }
        }
      })
      app.use(integrations.koaMiddleware(failing(err)))
      return app.callback()
    },
    async fastify(err) {
      const app = Fastify()
      await app.register(integrations.fastifyPlugin(failing(err)))
      app.get('/me', async () => ({ reached: true }))
      app.setErrorHandler((error, request, reply) => reply.code(599).send({ handled: error.message }))
      await app.ready()
      return (req, res) => app.routing(req, res)
    },
  }

  for (const [name, make] of Object.entries(apps)) {
    test(`${name}: every MpauthxError answers its status with a fixed public message; a bug (9999) and other errors go to the framework`, async () => {
      for (const [key, code] of codes) {
        if (code === 9999) continue
        const server = await serve(make(new MpauthxError(code, `secret detail of ${key}`)))
        try {
          const reply = await server.request({ path: '/me' })
          const [status, message] = expected[code]
          assert.equal(reply.status, status, key)
          assert.deepEqual(reply.body, { status_code: code, status_message: message }, key)
          assert.match(reply.headers['content-type'], /^application\/json/, key)
          assert.equal(reply.headers['www-authenticate'] !== undefined, code === 6007, key)
          assert.equal(reply.headers['retry-after'] !== undefined, code === 6000, key)
        } finally {
          await server.close()
        }
      }
      for (const bug of [new TypeError('a bug'), new MpauthxError(9999, 'a bug')]) {
        const server = await serve(make(bug))
        try {
          assert.deepEqual((await server.request({ path: '/me' })).body, { handled: 'a bug' })
        } finally {
          await server.close()
        }
      }
    })
  }
})

/** The README's code blocks marked `<!-- public-routes: name -->`, by name. */
function readmeSnippets() {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const snippets = {}
  for (const [, name, code] of readme.matchAll(/<!-- public-routes: ([\w-]+) -->\n```js\n([\s\S]*?)```/g)) snippets[name] = code
  return snippets
}

describe('the README public-route snippets, run as written', () => {
  const h = useHarness()
  const snippets = readmeSnippets()
  const AsyncFunction = (async () => {}).constructor

  test('there is one for Express, Koa, Fastify (both ways) and Egg', () => {
    assert.deepEqual(Object.keys(snippets).sort(), ['egg', 'express', 'fastify', 'fastify-guard', 'koa'])
  })

  // Runs a snippet with `auth` (the instance of the README's Usage) and resolves with a listener.
  const listeners = {
    express: (app) => app,
    koa: (app) => app.callback(),
    fastify: async (app) => {
      await app.ready()
      return (req, res) => app.routing(req, res)
    },
  }
  listeners['fastify-guard'] = listeners.fastify

  for (const [name, listen] of Object.entries(listeners)) {
    test(`${name}: /login answers without a token; /me is 401 without one and 200 with one`, async () => {
      const auth = h.create({ sku: 'readmesku' })
      const app = await new AsyncFunction('require', 'auth', `${snippets[name]}\nreturn app`)(require, auth)
      const server = await serve(listen(app))
      // Koa's snippet reads the code from the query, the others from a JSON body.
      const login = (code) =>
        name === 'koa'
          ? server.request({ method: 'POST', path: `/login${code === undefined ? '' : `?code=${code}`}` })
          : server.request({ method: 'POST', path: '/login', body: code === undefined ? {} : { code } })
      try {
        const loggedIn = await login(h.wechat.login({ openId: `oReadme-${name}` }).code)
        assert.equal(loggedIn.status, 200, loggedIn.text)
        const { token } = loggedIn.body
        assert.match(token, new RegExp(`^oReadme-${name}\\|readmesku\\|[0-9a-f]{64}$`))
        const refused = await server.request({ path: '/me' })
        assert.equal(refused.status, 401)
        assert.equal(refused.body.status_code, 6007)
        const me = await server.request({ path: '/me', headers: { authorization: `Bearer ${token}` } })
        assert.equal(me.status, 200)
        assert.deepEqual(me.body, { openId: `oReadme-${name}` })
        // A login failure answers its err.status through the framework's own error handling.
        assert.equal((await login(undefined)).status, 400)
        assert.equal((await login('never-issued')).status, 502)
      } finally {
        await server.close()
      }
    })
  }

  test("egg: every line of the snippet is in examples/egg's files, which egg.test.js runs", () => {
    let file
    let checked = 0
    for (const line of snippets.egg.split('\n')) {
      const header = /^\/\/ ((?:app|config)\/\S+\.js)/.exec(line)
      if (header) {
        file = fs.readFileSync(path.join(ROOT, 'examples', 'egg', header[1]), 'utf8')
        continue
      }
      if (line.trim() === '') continue
      assert.ok(file, 'the snippet names its file before its code')
      assert.ok(file.split('\n').includes(line), `not in the example as written: ${line}`)
      checked++
    }
    assert.ok(checked >= 3)
  })
})
