'use strict'

// examples/nestjs: the TypeScript app compiled with the repository's tsc and run as its
// README says, against this suite's Redis and WeChat stand-in.

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { before, describe, test } = require('node:test')

const { useHarness } = require('./support/harness')
const { waitUntil } = require('./support/redis')
const { useExample } = require('./support/example-server')

const example = path.join(__dirname, '..', 'examples', 'nestjs')
const SKU = 'nestsku'
const UNAUTHORIZED = { status_code: 6007, status_message: 'token is missing, invalid or expired' }

describe('examples/nestjs', () => {
  const h = useHarness()
  let compiled
  before(() => {
    // tsc emits even when the types do not check, so that the app's behaviour is tested
    // apart from its typings; the first test reports the type check.
    const tsc = path.join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc')
    compiled = spawnSync(process.execPath, [tsc, '-p', example], { encoding: 'utf8', timeout: 60_000 })
  })
  const server = useExample(h, path.join(example, 'dist', 'main.js'), { SKU })

  const login = (code) => server.post('/login', { code })
  const me = (token) => server.get('/me', token ? { authorization: `Bearer ${token}` } : {})

  test('type-checks with the repository tsc (experimentalDecorators, emitDecoratorMetadata)', () => {
    assert.equal(compiled.status, 0, compiled.stdout + compiled.stderr)
  })

  test('POST /login trades a wx.login code for a token that GET /me admits', async () => {
    const { code } = h.wechat.login({ openId: 'oNest' })
    const answer = await login(code)
    assert.equal(answer.status, 200)
    const { token } = await answer.json()
    assert.match(token, /^oNest\|nestsku\|[0-9a-f]{64}$/)
    const reply = await me(token)
    assert.equal(reply.status, 200)
    assert.deepEqual(await reply.json(), { openId: 'oNest', sku: SKU })
  })

  test('the guard answers 401 with the public body for a missing, unknown or other-sku token', async () => {
    const other = h.create({ sku: 'othersku' })
    const { response: otherToken } = await h.login({ openId: 'oNest' }, other)
    for (const token of [undefined, 'oNest|nestsku|' + '0'.repeat(64), otherToken]) {
      const reply = await me(token)
      assert.equal(reply.status, 401, `token ${token}`)
      assert.equal(reply.headers.get('www-authenticate'), 'Bearer realm="mpauthx"')
      assert.deepEqual(await reply.json(), UNAUTHORIZED)
    }
  })

  test('a login WeChat refuses answers 502, a missing code 400', async () => {
    const refused = await login('never-issued')
    assert.equal(refused.status, 502)
    assert.equal((await refused.json()).status_code, 6008)
    const missing = await login(undefined)
    assert.equal(missing.status, 400)
    assert.equal((await missing.json()).status_code, 6001)
  })

  test('the guard answers 503 without the internal detail while Redis is down', async () => {
    // A token the server has never checked, so that its answer must come from Redis.
    const { response: token } = await h.login({ openId: 'oNestDown' }, h.create({ sku: SKU }))
    await h.redis.stop()
    try {
      let reply
      await waitUntil(async () => {
        reply = await me(token)
        return reply.status !== 200
      }, 'the guard to notice that Redis is down')
      assert.equal(reply.status, 503)
      assert.equal(reply.headers.get('retry-after'), '1')
      const body = await reply.json()
      assert.deepEqual(body, {
        status_code: 6000,
        status_message: 'authentication is temporarily unavailable, try again',
      })
      assert.doesNotMatch(JSON.stringify(body), new RegExp(String(h.redis.port)))
    } finally {
      await h.redis.start()
    }
    // The restarted Redis is empty (no persistence): a new login's token is admitted again.
    let fresh
    await waitUntil(async () => {
      fresh = await login(h.wechat.login({ openId: 'oNestDown' }).code)
      return fresh.status === 200
    }, 'logins to work again')
    const { token: renewed } = await fresh.json()
    assert.equal((await me(renewed)).status, 200)
  })

  test('stops cleanly on SIGTERM (Nest shutdown hook closes mpauthx)', async () => {
    assert.deepEqual(await server.stop(), { code: 0, signal: null }, server.output())
  })
})
