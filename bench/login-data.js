'use strict'

// What the mini-program sends for a bench user, made for the bench's stateless WeChat
// stand-in: a login code `<openId>.<session key as hex>`, encryptedData and iv.

const crypto = require('node:crypto')

const APP_ID = 'wxbench000000000'

// All bench users of one process share one session key and iv; only the openId differs.
const sessionKey = crypto.randomBytes(16)
const iv = crypto.randomBytes(16)
const ivBase64 = iv.toString('base64')
const code = (openId) => `${openId}.${sessionKey.toString('hex')}`

/** `[code, encryptedData, iv]` for `openId`. */
function loginData(openId) {
  const profile = JSON.stringify({
    openId,
    nickName: 'Bench',
    gender: 1,
    language: 'en',
    city: 'Shenzhen',
    province: 'Guangdong',
    country: 'CN',
    watermark: { appid: APP_ID, timestamp: 1700000000 },
  })
  const cipher = crypto.createCipheriv('aes-128-cbc', sessionKey, iv)
  const encryptedData = Buffer.concat([cipher.update(profile), cipher.final()]).toString('base64')
  return [code(openId), encryptedData, ivBase64]
}

module.exports = { APP_ID, loginData }
