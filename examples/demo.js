'use strict'

// A whole login flow on this machine with nothing else installed: a loopback stand-in for
// WeChat's jscode2session, a temporary SQLite file, and the embedded SQLite token store (no
// Redis). Run it with `npm run demo`.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const mpauthx = require('..')
const { startWeChat } = require('../__test__/support/wechat')

const APP_ID = 'wxdemo0000000000'
const APP_SECRET = 'demo-secret'

const short = (token) => token.replace(/[0-9a-f]{56}$/, '…')

async function main() {
  const wechat = await startWeChat({ appId: APP_ID, appSecret: APP_SECRET })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-demo-'))
  const db = path.join(dir, 'users.db')
  console.log(`WeChat stand-in on ${wechat.base}, users and tokens in ${db}`)

  const auth = mpauthx(APP_ID, APP_SECRET, 'demo', db, null, 3600, {
    wechatApiBase: wechat.base,
    tokenStore: 'sqlite',
  })
  try {
    // What the mini-program sends after wx.login() and wx.getUserInfo().
    const first = wechat.login({ openId: 'oDemoUser', nickName: 'Band' })
    const { response: token } = await auth.authorize(first.code, first.encryptedData, first.iv)
    console.log(`1. authorize            -> ${short(token)}`)
    await auth.isTokenValid(token)
    console.log(`2. isTokenValid         -> valid (user ${auth.extractOpenId(token)}, sku ${auth.extractSku(token)})`)

    // A code-only login (wx.login alone) finds the same live session.
    const { response: reused } = await auth.login(wechat.login({ openId: 'oDemoUser' }).code)
    console.log(`3. login(code)          -> ${reused === token ? 'the same live token' : 'a different token?!'}`)

    const { response: fresh } = await auth.refreshToken('oDemoUser')
    console.log(`4. refreshToken         -> ${short(fresh)}`)
    await auth.isTokenValid(token).then(
      () => console.log('5. old token            -> still valid?!'),
      (err) => console.log(`5. old token            -> rejected with code ${err.code}`),
    )
    const { response: claims } = await auth.verifyToken(fresh)
    console.log(`6. verifyToken          -> ${claims.openId}, ${claims.sku}, ${claims.expiresIn} s left`)
    const { response: revoked } = await auth.revokeToken(fresh)
    console.log(`7. revokeToken          -> ${revoked ? 'logged out' : 'nothing to revoke?!'}`)
    await auth
      .authorize('made-up-code', first.encryptedData, first.iv)
      .catch((err) => console.log(`8. authorize a bad code -> code ${err.code}: ${err.message}`))
    console.log('Login flow complete.')
  } finally {
    await auth.close()
    await wechat.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
