'use strict'

// Everything a test file needs to use mpauthx as a backend would: a private redis-server
// (and, when asked, a private Redis Cluster), the WeChat stand-in, a temporary SQLite file,
// instances pointed at them, and backends in other processes on them.

const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { after, before } = require('node:test')

const mpauthx = require('../..')
const { startRedis } = require('./redis')
const { startRedisCluster } = require('./redis-cluster')
const { startWeChat } = require('./wechat')

const APP_ID = 'wx0123456789abcdef'
const APP_SECRET = 'test-app-secret-do-not-log'
const SKU = 'testsku'

/** Runs SQL against a SQLite file with the sqlite3 command-line shell. */
function sql(file, statement) {
  return execFileSync('sqlite3', ['-cmd', '.timeout 5000', file, statement], { encoding: 'utf8' }).trim()
}

/**
 * Starts the harness. With `cluster` (true, or `{ certificates }` for support/redis-cluster.js),
 * a Redis Cluster with the same `password` starts too (`.cluster`), and instances use it unless
 * told otherwise (`options: { redisUrl, redisClusterNodes: undefined }` for the single Redis).
 */
async function startHarness({ password, appId = APP_ID, appSecret = APP_SECRET, redisArgs, cluster: clusterOptions } = {}) {
  const redis = await startRedis({ password, args: redisArgs })
  const cluster = clusterOptions ? await startRedisCluster({ password, ...clusterOptions }) : null
  /** Where instances keep their sessions unless told otherwise. */
  const storeOptions = cluster ? { redisUrl: undefined, redisClusterNodes: cluster.urls.slice(0, 2) } : { redisUrl: redis.url }
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
  function create({ sku = SKU, db = dbFile, redisPass = password ?? null, ttl = 3600, options = {} } = {}) {
    const instance = mpauthx(appId, appSecret, sku, db, redisPass, ttl, {
      ...storeOptions,
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

  /** The live tokens of `userId` (this sku) where instances keep them: the Redis, or every master of the cluster. */
  function tokensOf(userId, sku = SKU) {
    const isMaster = (node) => !node.killed && /role:master/.test(node.cli('INFO', 'replication'))
    const nodes = cluster ? cluster.nodes.filter(isMaster) : [redis]
    return nodes.flatMap((node) => node.cli('KEYS', `${userId}|${sku}|*`).split('\n').filter(Boolean))
  }

  async function stop() {
    await Promise.all(instances.map((instance) => instance.close()))
    await wechat.stop()
    await redis.stop()
    await cluster?.stop()
    fs.rmSync(dir, { recursive: true, force: true })
    fs.rmSync(redis.dir, { recursive: true, force: true })
  }

  return {
    redis,
    cluster,
    wechat,
    dbFile,
    dir,
    storeOptions,
    create,
    login,
    tokensOf,
    stop,
    sql: (statement) => sql(dbFile, statement),
  }
}

/**
 * A harness started before the enclosing suite's tests and stopped after them; `options` (or
 * a function giving them, when they are only known once earlier hooks ran) go to `startHarness`.
 */
function useHarness(options) {
  const h = {}
  before(async () => Object.assign(h, await startHarness(typeof options === 'function' ? options() : options)))
  after(() => h.stop())
  return h
}

/** A harness with a Redis Cluster (see `startHarness`); `options` as for `useHarness`, plus `certificates`. */
function useCluster(options = {}) {
  return useHarness(() => {
    const { password, ...clusterOptions } = typeof options === 'function' ? options() : options
    return { password, cluster: clusterOptions }
  })
}

/**
 * Runs `node support/<name>-worker.js` with `input` as JSON on its stdin (the app, secret and
 * sku of the harness unless given); resolves with what it prints, parsed as JSON.
 */
function runWorker(name, input) {
  const child = spawn(process.execPath, [path.join(__dirname, `${name}-worker.js`)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  child.stdin.end(JSON.stringify({ appId: APP_ID, appSecret: APP_SECRET, sku: SKU, ...input }))
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(output)) : reject(new Error(`${name} worker exited ${code}`)))),
  )
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

module.exports = { startHarness, useHarness, useCluster, runWorker, rejection, sql, APP_ID, APP_SECRET, SKU }
