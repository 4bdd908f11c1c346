'use strict'

// Production Redis: errors that name the server and say what went wrong, least-privilege
// ACL users, and connections that servers and proxies drop while the app is idle.

const assert = require('node:assert/strict')
const http = require('node:http')
const { after, before, describe, test } = require('node:test')

const { startHarness, rejection } = require('./support/harness')
const { freePort } = require('./support/redis')

const SECRET = 'hunter2-do-not-print'
const A_TOKEN = `1|testsku|${'a'.repeat(64)}`

describe('Redis errors say which server and what went wrong, never a password', () => {
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
    for (const text of [err.message, err.stack, String(err.cause ?? '')]) assert.ok(!text.includes(SECRET), text)
    return err.message
  }

  test('connection refused', async () => {
    const port = env.dead
    assert.match(await failure({ redisUrl: `redis://:${SECRET}@127.0.0.1:${port}` }), new RegExp(`Redis at 127\\.0\\.0\\.1:${port}: connection refused`))
  })

  test('not a Redis server', async () => {
    const { port } = env.web.address()
    assert.match(await failure({ redisUrl: `redis://127.0.0.1:${port}` }), new RegExp(`Redis at 127\\.0\\.0\\.1:${port}: not a Redis server`))
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
