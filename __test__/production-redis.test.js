'use strict'

// Production Redis: errors that name the server and say what went wrong, least-privilege
// ACL users, and connections that servers and proxies drop while the app is idle.

const assert = require('node:assert/strict')
const http = require('node:http')
const { after, before, describe, test } = require('node:test')

const { startHarness, rejection } = require('./support/harness')
const { freePort } = require('./support/redis')
const { startTcpProxy } = require('./support/tcp-proxy')

const SECRET = 'hunter2-do-not-print'
const A_TOKEN = `1|testsku|${'a'.repeat(64)}`

describe('Redis errors say in their detail which server and what went wrong, never a password', () => {
  const env = {}
  before(async () => {
    env.harness = await startHarness({ password: SECRET })
    env.web = http.createServer((request, response) => response.end('hello'))
    await new Promise((resolve) => env.web.listen(0, '127.0.0.1', resolve))
    env.dead = await freePort()
  })
  after(async () => {
    env.web.close()
    await env.harness.stop()
  })

  const failure = async (options, redisPass = null) => {
    const auth = env.harness.create({ redisPass, options: { validationCacheSize: 0, ...options } })
    const err = await rejection(auth.isTokenValid(A_TOKEN))
    assert.equal(err.code, 6000)
    for (const text of [err.message, err.detail, err.stack, String(err.cause ?? '')]) assert.ok(!text.includes(SECRET), text)
    // What clients may see names no server; where and what failed is the detail, for logs.
    assert.match(err.message, /^store error: Redis (is unavailable|refused a command)$/)
    return err.detail
  }

  test('connection refused', async () => {
    const port = env.dead
    assert.match(
      await failure({ redisUrl: `redis://:${SECRET}@127.0.0.1:${port}` }),
      new RegExp(`Redis at 127\\.0\\.0\\.1:${port}: connection refused`),
    )
  })

  test('not a Redis server', async () => {
    const { port } = env.web.address()
    assert.match(
      await failure({ redisUrl: `redis://127.0.0.1:${port}` }),
      new RegExp(`Redis at 127\\.0\\.0\\.1:${port}: not a Redis server`),
    )
  })

  test('a wrong password, a wrong user, and no password where one is required', async () => {
    const { port } = env.harness.redis
    const at = `Redis at 127\\.0\\.0\\.1:${port}: `
    assert.match(await failure({ redisUrl: `redis://127.0.0.1:${port}` }, 'wrong-password'), new RegExp(`${at}authentication failed`))
    assert.match(await failure({ redisUrl: `redis://nobody:${SECRET}@127.0.0.1:${port}` }), new RegExp(`${at}authentication failed`))
    assert.match(await failure({ redisUrl: `redis://127.0.0.1:${port}` }), new RegExp(`${at}the server requires a password`))
  })

  test('a cluster whose nodes refuse names the nodes it was given', async () => {
    const port = env.dead
    assert.match(
      await failure({ redisUrl: undefined, redisClusterNodes: [`redis://:${SECRET}@127.0.0.1:${port}`] }),
      new RegExp(`Redis Cluster at 127\\.0\\.0\\.1:${port}: connection refused`),
    )
  })
})

// The narrowest ACL the README recommends, as `ACL SETUSER` arguments after the user name.
const NARROW_ACL = [
  'resetkeys',
  '~mpauthx|*',
  '~*|*|*',
  'resetchannels',
  '-@all',
  '+hello',
  '+auth',
  '+ping',
  '+select',
  '+client|setname',
  '+client|tracking',
  '+client|caching',
  '+get',
  '+set',
  '+del',
  '+exists',
  '+expire',
  '+ttl',
  '+pttl',
  '+hget',
  '+hset',
  '+hexists',
  '+hmget',
  '+eval',
  '+evalsha',
  '+script|load',
]

describe('least-privilege Redis users', () => {
  const env = {}
  before(async () => {
    env.harness = await startHarness()
    const { cli } = env.harness.redis
    cli('ACL', 'SETUSER', 'broad', 'on', '>broad-password', '~*', '&*', '+@all', '-@dangerous')
    cli('ACL', 'SETUSER', 'narrow', 'on', '>narrow-password', ...NARROW_ACL)
  })
  after(() => env.harness.stop())

  /** Every call that touches Redis, as a backend makes them; resolves when all succeeded. */
  async function wholeApi(auth, events, openId) {
    const { harness } = env
    const login = harness.wechat.login({ openId })
    const { response: token } = await auth.authorize(login.code, login.encryptedData, login.iv)
    const again = harness.wechat.login({ openId, sessionKey: login.sessionKey })
    const { response: sameToken } = await auth.login(again.code)
    assert.equal(sameToken, token, 'a returning login gets the live token back')
    await auth.isTokenValid(token)
    const { warmToken } = require('./support/checks')
    await warmToken(auth, events, token)
    assert.equal((await auth.verifyToken(token)).response.openId, openId)
    const { response: refreshed } = await auth.refreshToken(token.split('|')[0])
    assert.equal((await rejection(auth.isTokenValid(token))).code, 6007)
    assert.ok((await auth.getAccessToken()).response.accessToken)
    assert.equal((await auth.revokeToken(refreshed)).response, true)
    assert.equal((await rejection(auth.isTokenValid(refreshed))).code, 6007)
  }

  for (const [user, password] of [
    ['broad', 'broad-password'],
    ['narrow', 'narrow-password'],
  ]) {
    test(`a user '${user}' (${user === 'broad' ? '+@all -@dangerous' : "the README's ACL"}) runs the whole API, checks answered from memory included`, async () => {
      const { harness } = env
      harness.redis.cli('ACL', 'LOG', 'RESET')
      const events = []
      const auth = harness.create({
        options: { redisUrl: `redis://${user}:${password}@127.0.0.1:${harness.redis.port}`, logger: (event) => events.push(event) },
      })
      try {
        await wholeApi(auth, events, `oAcl-${user}`)
      } finally {
        // Redis 7.2+ also logs the client library's CLIENT SETINFO, which it may refuse.
        const log = harness.redis.cli('ACL', 'LOG').split('\n')
        const denied = log.filter((line, i) => log[i - 1] === 'object' && line !== 'client|setinfo')
        assert.deepEqual(denied, [], 'no command the library needs was denied')
      }
    })
  }

  test('a command the user is denied is an error (6000, saying so), never taken for a missing token', async () => {
    const { harness } = env
    const { cli, port } = harness.redis
    cli('ACL', 'SETUSER', 'nohexists', 'on', '>nohexists-password', ...NARROW_ACL, '-hexists')
    const auth = harness.create({
      options: { redisUrl: `redis://nohexists:nohexists-password@127.0.0.1:${port}` },
    })
    const login = harness.wechat.login({ openId: 'oDenied' })
    const { response: token } = await auth.authorize(login.code, login.encryptedData, login.iv)
    const err = await rejection(auth.revokeToken(token))
    assert.equal(err.code, 6000)
    assert.match(err.detail, new RegExp(`Redis at 127\\.0\\.0\\.1:${port}: the Redis user is not allowed`))
    assert.equal(cli('EXISTS', token), '1', 'the token is still there')
  })
})

describe('connections that Redis, a proxy or a restart dropped while the app was idle', () => {
  const env = {}
  before(async () => {
    env.harness = await startHarness()
    env.proxy = await startTcpProxy(env.harness.redis.port)
  })
  after(async () => {
    await env.proxy.stop()
    await env.harness.stop()
  })

  let users = 0
  /** An instance through `port` with `count` logged-in users: { auth, tokens }. */
  async function loggedIn(port, count = 20, options = {}) {
    const { harness } = env
    const auth = harness.create({ options: { redisUrl: `redis://127.0.0.1:${port}`, ...options } })
    const tokens = []
    for (let i = 0; i < count; i++) tokens.push((await harness.login({ openId: `oIdle${users++}` }, auth)).response)
    await Promise.all(tokens.map((token) => auth.isTokenValid(token)))
    return { auth, tokens }
  }

  /** One of every call after the drop; resolves with the codes of those that rejected. */
  async function callsAfterTheDrop({ auth, tokens }) {
    const { harness } = env
    // The last user's token is refreshed, so it is not among the checks it would race.
    const calls = [
      ...tokens.slice(0, -1).map((token) => auth.isTokenValid(token)), // one batch: all in this tick
      harness.login({ openId: `oIdle${users++}` }, auth),
      auth.refreshToken(tokens.at(-1).split('|')[0]),
      auth.verifyToken(tokens[1]),
    ]
    const outcomes = await Promise.allSettled(calls)
    return outcomes.filter((outcome) => outcome.status === 'rejected').map((outcome) => outcome.reason.code)
  }

  const clients = () => Number(/connected_clients:(\d+)/.exec(env.harness.redis.cli('INFO', 'clients'))[1])
  const { waitUntil } = require('./support/redis')

  test('after CLIENT KILL TYPE normal: no call fails', async () => {
    const instance = await loggedIn(env.harness.redis.port)
    env.harness.redis.cli('CLIENT', 'KILL', 'TYPE', 'normal')
    assert.deepEqual(await callsAfterTheDrop(instance), [])
  })

  test("after the server's idle timeout closed the connection: no call fails", async () => {
    const { redis } = env.harness
    const instance = await loggedIn(redis.port)
    const before = clients()
    redis.cli('CONFIG', 'SET', 'timeout', '1')
    try {
      // The heartbeat keeps the tracking connection busy; the command connection goes idle.
      await waitUntil(() => clients() < before, 'Redis to close the idle connection')
      assert.deepEqual(await callsAfterTheDrop(instance), [])
    } finally {
      redis.cli('CONFIG', 'SET', 'timeout', '0')
    }
  })

  test('after a proxy reset every connection while idle: no call fails', async () => {
    const instance = await loggedIn(env.proxy.port)
    env.proxy.resetAll()
    assert.deepEqual(await callsAfterTheDrop(instance), [])
  })

  test('a connection reset in the middle of a reply: the read is retried and succeeds', async () => {
    // Without the validation cache, no heartbeat shares the proxy: the next reply is the check's.
    const { auth, tokens } = await loggedIn(env.proxy.port, 3, { validationCacheSize: 0 })
    const resets = env.proxy.midReplyResets
    env.proxy.resetMidReply()
    assert.equal((await auth.verifyToken(tokens[0])).response.openId, tokens[0].split('|')[0])
    assert.equal(env.proxy.midReplyResets, resets + 1, 'the reply was cut')
    env.proxy.resetMidReply()
    await Promise.all(tokens.map((token) => auth.isTokenValid(token)))
    assert.equal(env.proxy.midReplyResets, resets + 2, 'the reply was cut')
  })

  test('after Redis restarted while idle: no call fails with 6000 (its tokens are gone: 6007)', async () => {
    const { redis } = env.harness
    const instance = await loggedIn(redis.port)
    await redis.stop()
    await redis.start()
    const codes = await callsAfterTheDrop(instance)
    assert.ok(!codes.includes(6000), `codes: ${codes}`)
    assert.ok(
      codes.every((code) => code === 6007),
      `codes: ${codes}`,
    )
  })
})
