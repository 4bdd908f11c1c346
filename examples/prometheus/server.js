'use strict'

// examples/express-server.js with a Prometheus endpoint: `POST /login` trades wx.login's code
// for a token, `GET /me` needs that token, `GET /metrics` is for Prometheus to scrape.
//
//   APP_ID=wx... APP_SECRET=... SKU=myapp node examples/prometheus/server.js
//
// Redis: MPAUTHX_REDIS_URL (default redis://127.0.0.1:6379); users: the SQLite file DB
// (default users.db). PORT defaults to 3000.

const express = require('express')
const { Registry, collectDefaultMetrics } = require('prom-client')
const mpauthx = require('../..') // in your project: require('mpauthx')
const { registerMpauthxMetrics } = require('./metrics')

const { APP_ID, APP_SECRET, SKU = 'myapp', DB = 'users.db', PORT = '3000' } = process.env
if (!APP_ID || !APP_SECRET) {
  console.error("set APP_ID and APP_SECRET to your mini-program's AppID and AppSecret")
  process.exit(1)
}

const auth = mpauthx(APP_ID, APP_SECRET, SKU, DB, process.env.REDIS_PASS ?? null, 259200)

// A registry of the app's own rather than prom-client's global one, so that nothing else
// registered in the process lands in this scrape unasked.
const registry = new Registry()
collectDefaultMetrics({ register: registry })
registerMpauthxMetrics(auth, registry)

const app = express()

// Before the token check: Prometheus sends no user token. In production, serve it only where
// the scraper can reach it (another port, or a network policy).
app.get('/metrics', async (req, res, next) => {
  try {
    res.type(registry.contentType).send(await registry.metrics())
  } catch (err) {
    next(err)
  }
})

app.post('/login', express.json(), async (req, res, next) => {
  try {
    const { response: token } = await auth.login(req.body?.code)
    res.json({ token })
  } catch (err) {
    if (!(err instanceof mpauthx.MpauthxError)) return next(err)
    // 400 for the client's mistake, 502 when WeChat fails, 503 when the stores do.
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
