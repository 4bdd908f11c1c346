'use strict'

// A loopback stand-in for WeChat's jscode2session API, run by the test suite itself.
// `login(user)` plays the mini-program: it registers a one-time code and returns the
// code, encryptedData and iv that wx.login + wx.getUserInfo would hand to a backend.

const crypto = require('node:crypto')
const http = require('node:http')

function encrypt(sessionKey, iv, plaintext) {
  const cipher = crypto.createCipheriv('aes-128-cbc', sessionKey, iv)
  return Buffer.concat([cipher.update(plaintext), cipher.final()]).toString('base64')
}

/**
 * Starts the stand-in for one app. Returns { base, login, reply, replyJson, requests,
 * accessTokens, phoneCode, stop }.
 */
async function startWeChat({ appId, appSecret }) {
  const sessions = new Map() // code -> jscode2session reply or a custom behaviour
  const requests = []
  let next = 0

  // The access tokens handed out by stable_token, and the ones still accepted.
  // `refuseNext` makes the next stable_token request fail with that errcode; `holdNext()`
  // keeps the next one unanswered until the function it returns is called.
  let held = null
  const accessTokens = {
    issued: [],
    valid: new Set(),
    delayMs: 0,
    refuseNext: 0,
    holdNext() {
      let release
      held = new Promise((resolve) => (release = resolve))
      return release
    },
  }
  const phoneCodes = new Map() // getPhoneNumber code -> phone_info

  const json = (res, body) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))

  async function readJson(req) {
    let text = ''
    for await (const chunk of req) text += chunk
    return JSON.parse(text)
  }

  async function stableToken(req, res) {
    const body = await readJson(req)
    if (body.appid !== appId || body.secret !== appSecret || body.grant_type !== 'client_credential') {
      return json(res, { errcode: 40125, errmsg: 'invalid appsecret' })
    }
    await new Promise((resolve) => setTimeout(resolve, accessTokens.delayMs))
    if (held) {
      const hold = held
      held = null
      await hold
    }
    if (accessTokens.refuseNext) {
      const errcode = accessTokens.refuseNext
      accessTokens.refuseNext = 0
      return json(res, { errcode, errmsg: 'system error' })
    }
    const token = `ACCESS-${accessTokens.issued.length + 1}-${crypto.randomBytes(6).toString('hex')}`
    accessTokens.issued.push({ token, forceRefresh: body.force_refresh === true })
    accessTokens.valid.add(token)
    json(res, { access_token: token, expires_in: 7200 })
  }

  async function phoneNumber(req, res, url) {
    const { code } = await readJson(req)
    if (!accessTokens.valid.has(url.searchParams.get('access_token'))) {
      return json(res, { errcode: 40001, errmsg: 'invalid credential, access_token is invalid or not latest' })
    }
    const info = phoneCodes.get(code)
    if (!info) return json(res, { errcode: 40029, errmsg: 'invalid code' })
    json(res, { errcode: 0, errmsg: 'ok', phone_info: info })
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost')
    requests.push(url)
    if (req.method === 'POST' && url.pathname === '/cgi-bin/stable_token') return void stableToken(req, res)
    if (req.method === 'POST' && url.pathname === '/wxa/business/getuserphonenumber') {
      return void phoneNumber(req, res, url)
    }
    if (url.pathname !== '/sns/jscode2session') {
      res.writeHead(404).end()
      return
    }
    const code = url.searchParams.get('js_code')
    const entry = sessions.get(code)
    if (typeof entry === 'function') {
      entry(req, res)
      return
    }
    let body
    if (url.searchParams.get('appid') !== appId || url.searchParams.get('secret') !== appSecret) {
      body = { errcode: 40125, errmsg: 'invalid appsecret' }
    } else if (url.searchParams.get('grant_type') !== 'authorization_code') {
      body = { errcode: 40002, errmsg: 'invalid grant_type' }
    } else if (entry === undefined) {
      body = { errcode: 40029, errmsg: 'invalid code' }
    } else if (entry.used) {
      body = { errcode: 40163, errmsg: 'code been used' }
    } else {
      entry.used = true
      body = entry.reply
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${server.address().port}`

  const newCode = () => `code-${++next}-${crypto.randomBytes(4).toString('hex')}`

  /**
   * A user logging in: `openId` (required), `unionId`, more profile fields, and overrides:
   * `watermarkAppId`, `replyOpenId` (what jscode2session says), `plaintext` (raw bytes to encrypt).
   */
  function login({
    openId,
    unionId,
    watermarkAppId = appId,
    replyOpenId = openId,
    plaintext,
    sessionKey = crypto.randomBytes(16),
    ...profile
  }) {
    const iv = crypto.randomBytes(16)
    const userInfo = { openId, nickName: 'Band', gender: 1, language: 'zh_CN', ...profile }
    if (unionId !== undefined) userInfo.unionId = unionId
    userInfo.watermark = { timestamp: Math.floor(Date.now() / 1000), appid: watermarkAppId }
    const code = newCode()
    const reply = { openid: replyOpenId, session_key: sessionKey.toString('base64') }
    if (unionId !== undefined) reply.unionid = unionId
    sessions.set(code, { reply, used: false })
    const data = plaintext ?? Buffer.from(JSON.stringify(userInfo))
    return { code, encryptedData: encrypt(sessionKey, iv, data), iv: iv.toString('base64'), sessionKey }
  }

  /** Registers a code answered by `handler(req, res)`, for broken or slow replies. */
  function reply(handler) {
    const code = newCode()
    sessions.set(code, handler)
    return code
  }

  /** Registers a code answered with a fixed jscode2session reply body. */
  function replyJson(body) {
    const code = newCode()
    sessions.set(code, { reply: body, used: false })
    return code
  }

  /** Registers a getPhoneNumber code for a phone number; `watermarkAppId` overrides the app. */
  function phoneCode({ phoneNumber, countryCode = '86', watermarkAppId = appId }) {
    const code = newCode()
    phoneCodes.set(code, {
      phoneNumber: `+${countryCode} ${phoneNumber}`,
      purePhoneNumber: phoneNumber,
      countryCode,
      watermark: { timestamp: Math.floor(Date.now() / 1000), appid: watermarkAppId },
    })
    return code
  }

  function stop() {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  }

  return { base, login, reply, replyJson, requests, accessTokens, phoneCode, stop }
}

module.exports = { startWeChat, encrypt }
