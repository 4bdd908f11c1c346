'use strict'

// A backend process for the access-token test: asks for the app's access token `count`
// times at once (settings as JSON on stdin) and prints the tokens it got as JSON.

const mpauthx = require('../..')

async function main() {
  let input = ''
  for await (const chunk of process.stdin) input += chunk
  const { appId, appSecret, sku, dbFile, options, count } = JSON.parse(input)
  const auth = mpauthx(appId, appSecret, sku, dbFile, null, 3600, options)
  try {
    const replies = await Promise.all(Array.from({ length: count }, () => auth.getAccessToken()))
    process.stdout.write(JSON.stringify(replies.map((reply) => reply.response.accessToken)))
  } finally {
    await auth.close()
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
