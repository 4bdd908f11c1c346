'use strict'

// A backend process for the multi-process test: logs in every login it is given on stdin
// (JSON: { redisUrl, wechatApiBase, dbFile, appId, appSecret, sku, logins: [{ code, encryptedData, iv }] }),
// all at once, and prints each outcome as JSON: the token, or the error code and message.

const mpauthx = require('../..')

async function main() {
  let input = ''
  for await (const chunk of process.stdin) input += chunk
  const { redisUrl, wechatApiBase, dbFile, appId, appSecret, sku, logins } = JSON.parse(input)
  const auth = mpauthx(appId, appSecret, sku, dbFile, null, 3600, { redisUrl, wechatApiBase })
  const outcomes = await Promise.all(
    logins.map(({ code, encryptedData, iv }) =>
      auth.authorize(code, encryptedData, iv).then(
        ({ response }) => ({ token: response }),
        (err) => ({ code: err.code, message: err.message }),
      ),
    ),
  )
  await auth.close()
  process.stdout.write(JSON.stringify(outcomes))
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
