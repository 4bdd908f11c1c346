'use strict'

// A whole login flow on this machine: a private redis-server, a loopback stand-in for
// WeChat's jscode2session, and a temporary SQLite file. Run it with `npm run demo`.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const mpauthx = require('..')
const { startRedis } = require('../__test__/support/redis')
const { startWeChat } = require('../__test__/support/wechat')

const APP_ID = 'wxdemo0000000000'
const APP_SECRET = 'demo-secret'

const short = (token) => token.replace(/[0-9a-f]{56}$/, '…')

async function main() {
  const redis = await startRedis()
  const wechat = await startWeChat({ appId: APP_ID, appSecret: APP_SECRET })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-demo-'))
  const db = path.join(dir, 'users.db')
  console.log(`redis-server on ${redis.url}, WeChat stand-in on ${wechat.base}, SQLite at ${db}`)

  const auth = mpauthx(APP_ID, APP_SECRET, 'demo', db, null, 3600, {
    redisUrl: redis.url,
    wechatApiBase: wechat.base,
  })
  try {
    // What the mini-program sends after wx.login() and wx.getUserInfo().
    const first = wechat.login({ openId: 'oDemoUser', nickName: 'Band' })
    const { response: token } = await auth.authorize(first.code, first.encryptedData, first.iv)
    console.log(`1. authorize            -> ${short(token)}`)
    await auth.isTokenValid(token)
    console.log(`2. isTokenValid         -> valid (user ${auth.extractOpenId(token)}, sku ${auth.extractSku(token)})`)

    const again = wechat.login({ openId: 'oDemoUser' })
    const { response: reused } = await auth.authorize(again.code, again.encryptedData, again.iv)
    console.log(`3. authorize again      -> ${reused === token ? 'the same live token' : 'a different token?!'}`)

    const { response: fresh } = await auth.refreshToken('oDemoUser')
    console.log(`4. refreshToken         -> ${short(fresh)}`)
    await auth.isTokenValid(token).then(
      () => console.log('5. old token            -> still valid?!'),
      (err) => console.log(`5. old token            -> rejected with code ${err.code}`),
    )
    await auth.authorize('made-up-code', first.encryptedData, first.iv).catch((err) =>
      console.log(`6. authorize a bad code -> code ${err.code}: ${err.message}`),
    )
    console.log('Login flow complete.')
  } finally {
    await auth.close()
    await wechat.stop()
    await redis.stop()
    fs.rmSync(dir, { recursive: true, force: true })
    fs.rmSync(redis.dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
