'use strict'

// The examples run as documented, against this suite's Redis and WeChat stand-in.

const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const path = require('node:path')
const { after, before, describe, test } = require('node:test')

const { useHarness, APP_ID, APP_SECRET } = require('./support/harness')

describe('examples/express-server.js', () => {
  const h = useHarness()
  let server
  let base
  before(async () => {
    server = spawn(process.execPath, [path.join(__dirname, '..', 'examples', 'express-server.js')], {
      env: {
        ...process.env,
        APP_ID,
        APP_SECRET,
        SKU: 'expresssku',
        DB: h.dbFile,
        PORT: '0',
        MPAUTHX_REDIS_URL: h.redis.url,
        MPAUTHX_WECHAT_API_BASE: h.wechat.base,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    base = await new Promise((resolve, reject) => {
      let output = ''
      server.stdout.on('data', (chunk) => {
        output += chunk
        const match = /listening on (\S+)/.exec(output)
        if (match) resolve(match[1])
      })
      server.once('exit', (code) => reject(new Error(`the example exited with ${code}: ${output}`)))
    })
  })
  after(() => server.exitCode === null && server.kill('SIGKILL'))

  const post = (body) =>
    fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  test('a user logs in and reaches the protected route with the token', async () => {
    const { code, encryptedData, iv } = h.wechat.login({ openId: 'oExpress' })
    const login = await post({ code, encryptedData, iv })
    assert.equal(login.status, 200)
    const { token } = await login.json()
    assert.match(token, /^oExpress\|expresssku\|[0-9a-f]{64}$/)
    const me = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(me.status, 200)
    assert.deepEqual(await me.json(), { openId: 'oExpress', sku: 'expresssku' })
  })

  test('the code alone logs a user in (login), and gets the same live token next time', async () => {
    const first = await post({ code: h.wechat.login({ openId: 'oCodeOnly' }).code })
    assert.equal(first.status, 200)
    const { token } = await first.json()
    assert.match(token, /^oCodeOnly\|expresssku\|[0-9a-f]{64}$/)
    const again = await post({ code: h.wechat.login({ openId: 'oCodeOnly' }).code })
    assert.equal((await again.json()).token, token)
  })

  test('login failures and missing tokens answer with their status codes', async () => {
    const missing = await post({ encryptedData: 'x', iv: 'y' })
    assert.equal(missing.status, 400)
    assert.equal((await missing.json()).status_code, 6001)
    // No body at all: a 400 naming the missing code, not a TypeError's message.
    const bodiless = await fetch(`${base}/login`, { method: 'POST' })
    assert.equal(bodiless.status, 400)
    const { status_code, status_message } = await bodiless.json()
    assert.equal(status_code, 6001)
    assert.match(status_message, /code/)
    assert.doesNotMatch(status_message, /Cannot read properties/)
    // A payload that could be valid, so that the code goes to WeChat, which refuses it.
    const block = Buffer.alloc(16).toString('base64')
    const unknownCode = await post({ code: 'never-issued', encryptedData: block, iv: block })
    assert.equal(unknownCode.status, 502)
    assert.equal((await unknownCode.json()).status_code, 6008)
    const anonymous = await fetch(`${base}/me`)
    assert.equal(anonymous.status, 401)
    assert.equal((await anonymous.json()).status_code, 6007)
  })

  test('stops cleanly on SIGTERM, leaving nothing open', async () => {
    const exited = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })))
    server.kill('SIGTERM')
    assert.deepEqual(await exited, { code: 0, signal: null })
  })
})

describe('examples/demo.js', () => {
  test('runs the whole login flow with nothing but the addon: no Redis', async () => {
    const { execFile } = require('node:child_process')
    const { promisify } = require('node:util')
    const env = { ...process.env, MPAUTHX_REDIS_URL: 'redis://127.0.0.1:1' }
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(__dirname, '..', 'examples', 'demo.js')], {
      env,
      timeout: 30_000,
    })
    const steps = stdout.split('\n').filter((line) => /^\d\. /.test(line))
    assert.equal(steps.length, 8, stdout)
    assert.match(stdout, /3\. login\(code\) +-> the same live token/)
    assert.match(stdout, /5\. old token +-> rejected with code 6007/)
    assert.match(stdout, /7\. revokeToken +-> logged out/)
    assert.match(stdout, /Login flow complete\./)
  })
})
