'use strict'

// An Express backend for a mini-program: `POST /login` trades wx.login's code (and, from apps
// that still receive them, wx.getUserInfo's encryptedData and iv) for a token, `GET /me` needs
// that token.
//
//   APP_ID=wx... APP_SECRET=... SKU=myapp node examples/express-server.js
//
// Redis: MPAUTHX_REDIS_URL (default redis://127.0.0.1:6379); users: the SQLite file DB
// (default users.db, its `user` table is created when missing). PORT defaults to 3000.

const express = require('express')
const mpauthx = require('..') // in your project: require('mpauthx')

const { APP_ID, APP_SECRET, SKU = 'myapp', DB = 'users.db', PORT = '3000' } = process.env
if (!APP_ID || !APP_SECRET) {
  console.error("set APP_ID and APP_SECRET to your mini-program's AppID and AppSecret")
  process.exit(1)
}

const auth = mpauthx(APP_ID, APP_SECRET, SKU, DB, process.env.REDIS_PASS ?? null, 259200)

const app = express()

app.post('/login', express.json(), async (req, res, next) => {
  const { code, encryptedData, iv } = req.body ?? {}
  try {
    // The code alone since WeChat restricted getUserInfo; the profile too when it is sent.
    const { response: token } =
      encryptedData === undefined && iv === undefined ? await auth.login(code) : await auth.authorize(code, encryptedData, iv)
    res.json({ token })
  } catch (err) {
    if (!(err instanceof mpauthx.MpauthxError)) return next(err)
    // err.status: 400 for the client's mistake, 502 when WeChat fails, 503 when the stores
    // do; err.expose says whether the message is for the client (else it is for the logs).
    if (!err.expose) console.error(err)
    res.status(err.status).json({ status_code: err.code, status_message: err.expose ? err.message : 'try again later' })
  }
})

// Every route below needs `Authorization: Bearer <token>`; 401 or 503 otherwise.
app.use(auth.middleware())

app.get('/me', (req, res) => {
  res.json({ openId: req.mpauthx.openId, sku: req.mpauthx.sku })
})

const server = app.listen(Number(PORT), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})

process.on('SIGTERM', () => server.close(() => auth.close()))
