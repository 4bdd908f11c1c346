'use strict'

// WeChat's server-side identity API beyond login: session keys kept with the session,
// decryption of any payload, the rawData signature, the shared access token, phone numbers.

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { describe, test } = require('node:test')

const { useHarness, runWorker, rejection, APP_ID, SKU } = require('./support/harness')
const { encrypt } = require('./support/wechat')

/** An encrypted payload of the session, as wx.getWeRunData would hand it over. */
function payload(sessionKey, data, appid = APP_ID) {
  const iv = crypto.randomBytes(16)
  const plaintext = JSON.stringify({ ...data, watermark: { timestamp: 1700000000, appid } })
  return { encryptedData: encrypt(sessionKey, iv, plaintext), iv: iv.toString('base64') }
}

for (const tokenStore of ['redis', 'sqlite']) {
  describe(`session keys in ${tokenStore}`, () => {
    const h = useHarness()
    const create = () => h.create({ options: { tokenStore } })

    async function loginWith(auth, openId, sessionKey = crypto.randomBytes(16)) {
      const login = h.wechat.login({ openId, sessionKey })
      const { response } = await auth.authorize(login.code, login.encryptedData, login.iv)
      return { token: response, sessionKey }
    }

    test('decryptData opens any payload of the latest session, and only for a live token', async () => {
      const events = []
      const auth = h.create({ options: { tokenStore, logger: (event) => events.push(event) } })
      const { token, sessionKey } = await loginWith(auth, 'oWeRun')
      const steps = { stepInfoList: [{ timestamp: 1700000000, step: 4321 }] }
      const werun = payload(sessionKey, steps)
      const { status_code, response } = await auth.decryptData(token, werun.encryptedData, werun.iv)
      assert.equal(status_code, 1)
      assert.deepEqual(response.stepInfoList, steps.stepInfoList)

      const foreign = payload(sessionKey, steps, 'wxAnotherApp')
      assert.equal((await rejection(auth.decryptData(token, foreign.encryptedData, foreign.iv))).code, 6011)
      assert.equal((await rejection(auth.decryptData(token, 'garbage!', werun.iv))).code, 6011)
      assert.equal((await rejection(auth.decryptData(token, '', werun.iv))).code, 6001)

      // A second login brings a new session key; the live token keeps the latest one.
      const { token: same, sessionKey: newer } = await loginWith(auth, 'oWeRun')
      assert.equal(same, token)
      assert.equal((await rejection(auth.decryptData(token, werun.encryptedData, werun.iv))).code, 6011)
      const fresh = payload(newer, steps)
      assert.deepEqual((await auth.decryptData(token, fresh.encryptedData, fresh.iv)).response.stepInfoList, steps.stepInfoList)

      // A refresh keeps the session key with the new token; a revoke drops it.
      const { response: refreshed } = await auth.refreshToken('oWeRun')
      assert.equal((await rejection(auth.decryptData(token, fresh.encryptedData, fresh.iv))).code, 6007)
      await auth.decryptData(refreshed, fresh.encryptedData, fresh.iv)
      await auth.revokeToken(refreshed)
      assert.equal((await rejection(auth.decryptData(refreshed, fresh.encryptedData, fresh.iv))).code, 6007)

      // The session key never reaches JavaScript, not even through diagnostics.
      const seen = JSON.stringify(events)
      for (const key of [sessionKey, newer]) assert.ok(!seen.includes(key.toString('base64')))
    })

    test('checkSignature matches the official vector in constant time', async () => {
      const auth = create()
      const { token } = await loginWith(auth, 'oSigned', Buffer.from('HyVFkGl5F5OQWJZZaNzBBg==', 'base64'))
      const rawData =
        '{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}'
      const signature = '75e81ceda165f4ffa64f4068af58c64b8f54b88c'
      assert.deepEqual(await auth.checkSignature(token, rawData, signature), {
        status_code: 1,
        status_message: 'OK',
        response: true,
      })
      assert.equal((await auth.checkSignature(token, rawData.replace('Band', 'Bond'), signature)).response, false)
      assert.equal((await auth.checkSignature(token, rawData, '0'.repeat(40))).response, false)
      assert.equal((await rejection(auth.checkSignature(`oSigned|${SKU}|${'0'.repeat(64)}`, rawData, signature))).code, 6007)
      assert.equal((await rejection(auth.checkSignature(token, rawData, ''))).code, 6001)
    })

    test('getAccessToken: one request to WeChat for 100 concurrent callers, then the cache', async () => {
      const auth = create()
      const before = h.wechat.accessTokens.issued.length
      h.wechat.accessTokens.delayMs = 100
      try {
        const replies = await Promise.all(Array.from({ length: 100 }, () => auth.getAccessToken()))
        const tokens = new Set(replies.map((reply) => reply.response.accessToken))
        assert.equal(tokens.size, 1)
        assert.equal(h.wechat.accessTokens.issued.length, before + 1)
        const { response } = await create().getAccessToken()
        assert.equal(response.accessToken, [...tokens][0], 'another instance shares the cached token')
        assert.ok(response.expiresIn > 6000 && response.expiresIn <= 7200, String(response.expiresIn))
        assert.equal(h.wechat.accessTokens.issued.length, before + 1)
      } finally {
        h.wechat.accessTokens.delayMs = 0
      }
    })

    test('a failed fetch rejects with 6008, and the next call fetches again', async () => {
      const auth = create()
      h.redis.cli('DEL', `mpauthx|access_token|${APP_ID}|current`)
      if (tokenStore === 'sqlite') h.sql('DELETE FROM mpauthx_access_token')
      h.wechat.accessTokens.refuseNext = -1
      const err = await rejection(auth.getAccessToken())
      assert.equal(err.code, 6008)
      assert.match(err.message, /stable_token request failed: WeChat errcode -1/)
      const { response } = await auth.getAccessToken()
      assert.equal(response.accessToken, h.wechat.accessTokens.issued.at(-1).token)
    })

    test('getPhoneNumber returns the number, retries once with a fresh access token, and names errcodes', async () => {
      const auth = create()
      const code = h.wechat.phoneCode({ phoneNumber: '13800138000' })
      const { status_code, response } = await auth.getPhoneNumber(code)
      assert.equal(status_code, 1)
      assert.deepEqual(response, { phoneNumber: '+86 13800138000', purePhoneNumber: '13800138000', countryCode: '86' })

      // WeChat stops accepting the cached token (40001): one fresh token, one retry.
      const issued = h.wechat.accessTokens.issued.length
      h.wechat.accessTokens.valid.clear()
      const again = await auth.getPhoneNumber(h.wechat.phoneCode({ phoneNumber: '13900139000' }))
      assert.equal(again.response.purePhoneNumber, '13900139000')
      assert.equal(h.wechat.accessTokens.issued.length, issued + 1)
      assert.equal(h.wechat.accessTokens.issued.at(-1).forceRefresh, true)

      const unknown = await rejection(auth.getPhoneNumber('never-issued'))
      assert.equal(unknown.code, 6008)
      assert.match(unknown.message, /40029/)
      const foreign = await rejection(auth.getPhoneNumber(h.wechat.phoneCode({ phoneNumber: '1', watermarkAppId: 'wxOther' })))
      assert.equal(foreign.code, 6008)
      for (const bad of [undefined, '', 5]) assert.equal((await rejection(auth.getPhoneNumber(bad))).code, 6001)
    })
  })
}

describe('the access token across processes', () => {
  const h = useHarness()

  const worker = (options, count) => runWorker('access-token', { dbFile: h.dbFile, options, count })

  for (const tokenStore of ['redis', 'sqlite']) {
    test(`two processes on the ${tokenStore} store share one token fetched once`, async () => {
      h.redis.cli('FLUSHALL')
      h.sql('DROP TABLE IF EXISTS mpauthx_access_token')
      const before = h.wechat.accessTokens.issued.length
      h.wechat.accessTokens.delayMs = 200
      try {
        const options = { redisUrl: h.redis.url, wechatApiBase: h.wechat.base, tokenStore }
        const [first, second] = await Promise.all([worker(options, 50), worker(options, 50)])
        assert.equal(new Set([...first, ...second]).size, 1)
        assert.equal(h.wechat.accessTokens.issued.length, before + 1)
      } finally {
        h.wechat.accessTokens.delayMs = 0
      }
    })
  }
})
