'use strict'

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const path = require('node:path')
const { describe, test } = require('node:test')

const { useHarness, rejection, APP_SECRET } = require('./support/harness')
const { debugEnabled } = require('../diagnostics')

describe('options.logger', () => {
  const h = useHarness()

  function recorded() {
    const events = []
    const instance = h.create({ options: { logger: (event) => events.push(event) } })
    return { events, instance }
  }

  test('reports each step of a first login, in order, with timings and the outcome', async () => {
    const { events, instance } = recorded()
    const login = h.wechat.login({ openId: 'oDiagnosed' })
    const { response: token } = await instance.authorize(login.code, login.encryptedData, login.iv)
    assert.deepEqual(
      events.map((event) => [event.method, event.step]),
      [
        // The instance's first login checks its stores before WeChat is asked.
        ['authorize', 'stores.ready'],
        ['authorize', 'wechat.request'],
        ['authorize', 'wechat.response'],
        ['authorize', 'wechat.body'],
        ['authorize', 'user_data.decrypted'],
        ['authorize', 'user.registered'],
        ['authorize', 'token.issued'],
        ['authorize', 'done'],
      ],
    )
    assert.equal(events[2].detail, 'HTTP 200')
    assert.equal(events[5].detail, 'new user added')
    assert.deepEqual(events.at(-1).statusCode, 1)
    const times = events.map((event) => event.elapsedMs)
    assert.ok(
      times.every((ms) => typeof ms === 'number' && ms >= 0),
      String(times),
    )
    assert.deepEqual(
      times,
      [...times].sort((a, b) => a - b),
      'steps in time order, done last',
    )
    const now = Date.now()
    assert.ok(
      events.every((event) => event.time <= now && event.time > now - 10000),
      'time is when the step happened',
    )

    const text = JSON.stringify(events)
    for (const secret of [APP_SECRET, token, 'oDiagnosed', login.code, login.encryptedData, login.iv]) {
      assert.ok(!text.includes(secret), `an event contains ${secret.slice(0, 12)}…`)
    }
  })

  test('reports a reused session, a check and a failure with its status code', async () => {
    const { events, instance } = recorded()
    const { response: token } = await h.login({ openId: 'oDiagnosed2' }, instance)
    events.length = 0
    await h.login({ openId: 'oDiagnosed2' }, instance)
    assert.ok(events.some((event) => event.step === 'token.reused'))

    events.length = 0
    await instance.isTokenValid(token)
    assert.deepEqual(
      events.map((event) => [event.method, event.step, event.detail]),
      [
        ['isTokenValid', 'token.checked', '1 of 1 tokens live, one round trip'],
        ['isTokenValid', 'done', 'OK'],
      ],
    )

    events.length = 0
    const code = h.wechat.replyJson({ errcode: 40029, errmsg: 'invalid code' })
    const block = Buffer.alloc(16).toString('base64') // could be valid: the code goes to WeChat
    const err = await rejection(instance.authorize(code, block, block))
    assert.equal(err.code, 6008)
    const done = events.at(-1)
    assert.equal(done.step, 'done')
    assert.equal(done.statusCode, 6008)
    assert.equal(done.detail, err.message)
  })

  test('a logger that throws never changes an outcome', async () => {
    const instance = h.create({
      options: {
        logger: () => {
          throw new Error('broken logger')
        },
      },
    })
    const { response: token } = await h.login({ openId: 'oBrokenLogger' }, instance)
    await instance.isTokenValid(token)
    assert.equal((await rejection(instance.isTokenValid(`${token}0`))).code, 6007)
  })

  test('must be a function', () => {
    assert.throws(() => h.create({ options: { logger: 'console' } }), {
      name: 'TypeError',
      message: /options\.logger must be a function/,
    })
  })
})

describe('DEBUG=mpauthx', () => {
  const h = useHarness()

  // A backend process that logs one user in and checks the token; returns its stderr and stdout.
  function runBackend(env) {
    const script = `
      const { startWeChat } = require(${JSON.stringify(path.join(__dirname, 'support', 'wechat'))})
      const mpauthx = require(${JSON.stringify(path.join(__dirname, '..'))})
      ;(async () => {
        const wechat = await startWeChat({ appId: 'wxDebug', appSecret: 'debug-secret' })
        const auth = mpauthx('wxDebug', 'debug-secret', 'sku', ${JSON.stringify(h.dbFile)}, null, 60, {
          redisUrl: ${JSON.stringify(h.redis.url)}, wechatApiBase: wechat.base })
        const login = wechat.login({ openId: 'oDebugUser' })
        const { response: token } = await auth.authorize(login.code, login.encryptedData, login.iv)
        await auth.isTokenValid(token)
        await auth.close()
        await wechat.stop()
      })().catch((err) => { console.error('FAILED', err); process.exitCode = 1 })`
    return new Promise((resolve, reject) =>
      execFile(process.execPath, ['-e', script], { env: { ...process.env, ...env }, timeout: 30000 }, (err, stdout, stderr) =>
        err ? reject(err) : resolve({ stdout, stderr }),
      ),
    )
  }

  test('is silent by default', async () => {
    const { stdout, stderr } = await runBackend({ DEBUG: '' })
    assert.equal(stdout + stderr, '')
  })

  test('writes one line per step to stderr, without secrets', async () => {
    const { stdout, stderr } = await runBackend({ DEBUG: 'express:*,mpauthx' })
    assert.equal(stdout, '')
    const lines = stderr.trim().split('\n')
    assert.match(lines[0], /^\S+Z mpauthx authorize stores\.ready \+[\d.]+ms token store and user registry answer$/)
    assert.match(lines[1], /^\S+Z mpauthx authorize wechat\.request \+[\d.]+ms GET \/sns\/jscode2session$/)
    assert.ok(
      lines.some((line) => /mpauthx authorize done \+[\d.]+ms OK \[1\]$/.test(line)),
      stderr,
    )
    assert.ok(
      lines.some((line) => / isTokenValid token\.checked .* 1 of 1 tokens live/.test(line)),
      stderr,
    )
    assert.ok(!stderr.includes('debug-secret') && !stderr.includes('oDebugUser'))
  })

  test('follows the patterns of the debug package', () => {
    for (const on of ['mpauthx', '*', 'mpauthx*', 'koa,mpauthx', 'koa mpauthx', 'mp*']) {
      assert.equal(debugEnabled('mpauthx', on), true, on)
    }
    for (const off of [undefined, '', 'express:*', 'mpauthx:*', '*,-mpauthx', '-mpauthx,*']) {
      assert.equal(debugEnabled('mpauthx', off), false, off)
    }
  })
})
