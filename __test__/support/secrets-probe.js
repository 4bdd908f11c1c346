'use strict'

// Run by reliability.test.js in a child process: drives every outcome of the API with known
// secrets and writes { secrets, messages } as JSON to a file; the test checks no secret reaches any
// output, diagnostics included (it runs with DEBUG=*).

const { startWeChat } = require('./wechat')
const mpauthx = require('../..')

const fs = require('node:fs')

const [redisUrl, dbFile, reportFile] = process.argv.slice(2)
const APP_ID = 'wxSecretsProbe'
const APP_SECRET = 'probe-app-secret-7f3a9c'

async function main() {
  const wechat = await startWeChat({ appId: APP_ID, appSecret: APP_SECRET })
  const auth = mpauthx(APP_ID, APP_SECRET, 'probe', dbFile, null, 60, { redisUrl, wechatApiBase: wechat.base })
  const secrets = [APP_SECRET]
  const messages = []
  const record = (promise) =>
    promise.then(
      () => {},
      (err) => messages.push(err.message),
    )
  const profile = { nickName: 'ProbeNick-91ac', city: 'ProbeCity-5e2d' }
  secrets.push(profile.nickName, profile.city)

  const ok = wechat.login({ openId: 'oProbe', ...profile })
  secrets.push(ok.sessionKey.toString('base64'), ok.encryptedData, ok.code)
  const { response: token } = await auth.authorize(ok.code, ok.encryptedData, ok.iv)
  secrets.push(token.split('|')[2])
  await auth.isTokenValid(token)

  const logins = [
    wechat.login({ openId: 'oProbe', ...profile, watermarkAppId: 'wxOther' }),
    wechat.login({ openId: 'oProbe', ...profile, replyOpenId: 'oElse' }),
    wechat.login({ openId: 'oProbe', plaintext: Buffer.from(`not json ${profile.nickName}`) }),
  ]
  for (const login of logins) {
    secrets.push(login.sessionKey.toString('base64'), login.encryptedData)
    await record(auth.authorize(login.code, login.encryptedData, login.iv))
  }
  const bad = wechat.login({ openId: 'oProbe', ...profile })
  await record(auth.authorize(bad.code, ok.encryptedData, bad.iv))
  await record(auth.authorize('unknown-code', ok.encryptedData, ok.iv))
  await record(
    auth.authorize(
      wechat.reply((req, res) => res.writeHead(500).end()),
      ok.encryptedData,
      ok.iv,
    ),
  )
  await record(auth.authorize(ok.code, `${ok.encryptedData}!`, ok.iv))
  await record(auth.refreshToken('oNobody'))
  await record(auth.isTokenValid('oProbe|probe|0'))
  const offline = mpauthx(APP_ID, APP_SECRET, 'probe', dbFile, 'redis-pass-2b8e', 60, {
    redisUrl: 'redis://:url-pass-44d1@127.0.0.1:1',
    wechatApiBase: 'http://127.0.0.1:1',
  })
  secrets.push('redis-pass-2b8e', 'url-pass-44d1')
  await record(offline.isTokenValid('oProbe|probe|0'))
  await record(offline.authorize('c', ok.encryptedData, ok.iv))
  await Promise.all([auth.close(), offline.close(), wechat.stop()])
  for (const message of messages) {
    for (const secret of secrets) if (message.includes(secret)) throw new Error('a message contains a secret')
  }
  fs.writeFileSync(reportFile, JSON.stringify({ secrets, messages }))
}

main().catch((err) => {
  console.error(String(err))
  process.exitCode = 1
})
