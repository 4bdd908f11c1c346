'use strict'

// Copied into an empty project that installed the packed tarballs, and run there: a backend
// doing a whole login with `require('mpauthx')` as a user's code would. Prints a JSON report.

const mpauthx = require('mpauthx')

async function main() {
  const [redisUrl, wechatApiBase, dbFile, appId, appSecret, code, encryptedData, iv] = process.argv.slice(2)
  const auth = mpauthx(appId, appSecret, 'packsku', dbFile, null, 600, { redisUrl, wechatApiBase })
  try {
    const login = await auth.authorize(code, encryptedData, iv)
    const token = login.response
    await auth.isTokenValid(token)
    const refreshed = await auth.refreshToken(auth.extractOpenId(token))
    const oldToken = await auth.isTokenValid(token).then(
      () => 'valid',
      (err) => err.code,
    )
    console.log(
      JSON.stringify({
        login,
        refreshed,
        oldToken,
        openId: auth.extractOpenId(refreshed.response),
        sku: auth.extractSku(refreshed.response),
        invalidAccessToken: mpauthx.constants.statusCode.invalidAccessToken,
        resolvedFrom: require.resolve('mpauthx'),
      }),
    )
  } finally {
    await auth.close()
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
