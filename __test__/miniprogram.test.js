'use strict'

// examples/miniprogram/auth.js, run in Node with a stand-in `wx` (wx.login gets its codes from
// the WeChat stand-in, wx.request is fetch, storage a Map) against examples/express-server.js.

const assert = require('node:assert/strict')
const path = require('node:path')
const { before, describe, test } = require('node:test')

const { useHarness } = require('./support/harness')
const { waitUntil } = require('./support/redis')
const { useExample } = require('./support/example-server')
const { createAuth } = require('../examples/miniprogram/auth.js')

const SKU = 'mpsku'

/**
 * The part of the mini-program's `wx` that auth.js uses, for one user. `calls` counts logins
 * and records requests; `rewrite(options)` may change a request before it is sent.
 */
function standInWx(wechat, user, rewrite = (options) => options) {
  const storage = new Map()
  const calls = { login: 0, requests: [] }
  return {
    calls,
    storage,
    login({ success }) {
      calls.login++
      const { code } = wechat.login(user)
      setImmediate(() => success({ code, errMsg: 'login:ok' }))
    },
    request(options) {
      const { url, method = 'GET', data, header = {}, success, fail } = rewrite(options)
      calls.requests.push({ url, method, header })
      const json = data !== undefined && method !== 'GET'
      fetch(url, {
        method,
        headers: json ? { 'content-type': 'application/json', ...header } : header,
        body: json ? JSON.stringify(data) : undefined,
      }).then(
        async (res) => {
          const text = await res.text()
          let body = text
          try {
            body = JSON.parse(text)
          } catch {}
          // wx.request calls success for every HTTP status, fail only when nothing came back.
          success({ statusCode: res.status, data: body, header: Object.fromEntries(res.headers), errMsg: 'request:ok' })
        },
        (err) => fail({ errMsg: `request:fail ${err.message}` }),
      )
    },
    getStorageSync: (key) => (storage.has(key) ? storage.get(key) : ''),
    setStorageSync: (key, value) => void storage.set(key, value),
    removeStorageSync: (key) => void storage.delete(key),
  }
}

describe('examples/miniprogram/auth.js against examples/express-server.js', () => {
  const h = useHarness()
  const server = useExample(h, path.join(__dirname, '..', 'examples', 'express-server.js'), { SKU })
  let admin // another instance of the same sku, as a second server would be
  before(() => (admin = h.create({ sku: SKU })))

  const client = (wx) => createAuth({ baseUrl: server.base, wx })
  const meRequests = (wx) => wx.calls.requests.filter((request) => request.url.endsWith('/me'))

  /** Revokes `token`, and waits until the server refuses it. */
  async function revoke(token) {
    assert.equal((await admin.revokeToken(token)).response, true)
    await waitUntil(
      async () => (await server.get('/me', { authorization: `Bearer ${token}` })).status === 401,
      'the server to refuse the revoked token',
    )
  }

  test('the first requests log in once, keep the token and send it as a Bearer token', async () => {
    const wx = standInWx(h.wechat, { openId: 'oMini' })
    const auth = client(wx)
    const replies = await Promise.all([1, 2, 3].map(() => auth.request({ url: '/me' })))
    for (const res of replies) {
      assert.equal(res.statusCode, 200)
      assert.deepEqual(res.data, { openId: 'oMini', sku: SKU })
    }
    assert.equal(wx.calls.login, 1)
    const token = wx.storage.get('mpauthx.token')
    assert.match(token, /^oMini\|mpsku\|[0-9a-f]{64}$/)
    assert.ok(meRequests(wx).every((request) => request.header.Authorization === `Bearer ${token}`))
    assert.equal((await auth.request({ url: '/me' })).statusCode, 200)
    assert.equal(wx.calls.login, 1)
  })

  test('a revoked token makes concurrent requests log in again once, then succeed', async () => {
    const wx = standInWx(h.wechat, { openId: 'oMiniRevoked' })
    const auth = client(wx)
    assert.equal((await auth.request({ url: '/me' })).statusCode, 200)
    const old = wx.storage.get('mpauthx.token')
    await revoke(old)
    const replies = await Promise.all([1, 2, 3].map(() => auth.request({ url: '/me' })))
    for (const res of replies) {
      assert.equal(res.statusCode, 200)
      assert.deepEqual(res.data, { openId: 'oMiniRevoked', sku: SKU })
    }
    assert.equal(wx.calls.login, 2)
    assert.notEqual(wx.storage.get('mpauthx.token'), old)
    assert.equal(meRequests(wx).length, 1 + 3 + 3)
  })

  test('a second refusal is handed back, not retried again', async () => {
    // A server that refuses every token it is sent: each /me carries a token it never issued.
    const unknown = `oMiniNever|${SKU}|${'0'.repeat(64)}`
    const wx = standInWx(h.wechat, { openId: 'oMiniNever' }, (options) =>
      options.url.endsWith('/me') ? { ...options, header: { ...options.header, Authorization: `Bearer ${unknown}` } } : options,
    )
    const res = await client(wx).request({ url: '/me' })
    assert.equal(res.statusCode, 401)
    assert.equal(res.data.status_code, 6007)
    assert.equal(wx.calls.login, 2)
    assert.equal(meRequests(wx).length, 2)
  })

  test('a login the backend refuses rejects with its response', async () => {
    const wx = standInWx(h.wechat, { openId: 'oMiniRefused' })
    wx.login = ({ success }) => setImmediate(() => success({ code: 'never-issued', errMsg: 'login:ok' }))
    const err = await client(wx)
      .request({ url: '/me' })
      .then(
        () => assert.fail('expected a rejection'),
        (err) => err,
      )
    assert.match(err.message, /login failed: HTTP 502/)
    assert.equal(err.response.data.status_code, 6008)
    assert.equal(meRequests(wx).length, 0)
  })
})
