'use strict'

// Everything a test file needs to use mpauthx as a backend would: a private redis-server,
// the WeChat stand-in, a temporary SQLite file, and instances pointed at them.

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { after, before } = require('node:test')

const mpauthx = require('../..')
const { startRedis } = require('./redis')
const { startWeChat } = require('./wechat')

const APP_ID = 'wx0123456789abcdef'
const APP_SECRET = 'test-app-secret-do-not-log'
const SKU = 'testsku'

/** Runs SQL against a SQLite file with the sqlite3 command-line shell. */
function sql(file, statement) {
  return execFileSync('sqlite3', ['-cmd', '.timeout 5000', file, statement], { encoding: 'utf8' }).trim()
}

async function startHarness({ password, appId = APP_ID, appSecret = APP_SECRET, redisArgs } = {}) {
  const redis = await startRedis({ password, args: redisArgs })
  const wechat = await startWeChat({ appId, appSecret })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-test-'))
  const dbFile = path.join(dir, 'users.db')
  const instances = []
  // The table mpauthx 1.3.2's README asks applications to create.
  sql(
    dbFile,
    'CREATE TABLE user(openId text primary key not null, city text, country text, gender integer, ' +
      'language text, nickName text, province text)',
  )

  /** An instance with the harness defaults; any factory argument can be overridden. */
  function create({
    sku = SKU,
    db = dbFile,
    redisPass = password ?? null,
    ttl = 3600,
    options = {},
  } = {}) {
    const instance = mpauthx(appId, appSecret, sku, db, redisPass, ttl, {
      redisUrl: redis.url,
      wechatApiBase: wechat.base,
      httpTimeoutMs: 2000,
      ...options,
    })
    instances.push(instance)
    return instance
  }

  /** A user logging in on `instance`: the mini-program's login data, then `authorize`. */
  function login(user, instance) {
    const { code, encryptedData, iv } = wechat.login(user)
    return instance.authorize(code, encryptedData, iv)
  }

  async function stop() {
    await Promise.all(instances.map((instance) => instance.close()))
    await wechat.stop()
    await redis.stop()
    fs.rmSync(dir, { recursive: true, force: true })
    fs.rmSync(redis.dir, { recursive: true, force: true })
  }

  return { redis, wechat, dbFile, dir, create, login, stop, sql: (statement) => sql(dbFile, statement) }
}

/** A harness started before the enclosing suite's tests and stopped after them. */
function useHarness(options) {
  const h = {}
  before(async () => Object.assign(h, await startHarness(options)))
  after(() => h.stop())
  return h
}

/** Resolves with the rejection of `promise`, failing when it resolves instead. */
async function rejection(promise) {
  try {
    await promise
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection, but the promise resolved')
}

module.exports = { startHarness, useHarness, rejection, sql, APP_ID, APP_SECRET, SKU }
