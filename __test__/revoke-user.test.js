'use strict'

// `revokeUser` revokes everything the user holds (issue 25, point 4): tokens in mpauthx
// 1.3.2's layout (a hash `{ ctime }` with a TTL and no index) and tokens whose index is gone
// are found by a `SCAN` of the user's keys and revoked and counted; the scan runs under its
// own budget (`revokeUserScanMs`), one deadline per `SCAN` step; and a `refreshToken` racing
// `revokeUser` never leaves a token that `revokeUser` should have revoked.

const assert = require('node:assert/strict')
const { randomBytes } = require('node:crypto')
const net = require('node:net')
const { describe, test } = require('node:test')

const { useCluster, useHarness, rejection, SKU } = require('./support/harness')
const { startTcpProxy } = require('./support/tcp-proxy')
const { validates } = require('./support/checks')

const OTHER_SKU = 'othersku'

/** A token key of `userId` and `sku` with a random part, as mpauthx writes them. */
const tokenKey = (userId, sku = SKU) => `${userId}|${sku}|${randomBytes(32).toString('hex')}`

/**
 * Writes a token as mpauthx 1.3.2 did: a hash `{ ctime }`, a TTL, no index; `cliOf(key)` is
 * the redis-cli of the server (or Cluster node) holding the key.
 */
function legacyToken(cliOf, userId, sku = SKU) {
  const token = tokenKey(userId, sku)
  const cli = cliOf(token)
  cli('HSET', token, 'ctime', Date.now())
  cli('EXPIRE', token, 3600)
  return token
}

/** Parses one RESP2 reply of `buffer` from `at`: `[value, next]`, or null when incomplete. */
function parseReply(buffer, at) {
  const end = buffer.indexOf('\r\n', at)
  if (end < 0) return null
  const line = buffer.toString('utf8', at + 1, end)
  let next = end + 2
  switch (String.fromCharCode(buffer[at])) {
    case '+':
      return [line, next]
    case '-':
      return [new Error(line), next]
    case ':':
      return [Number(line), next]
    case '$': {
      const length = Number(line)
      if (length < 0) return [null, next]
      if (buffer.length < next + length + 2) return null
      return [buffer.toString('utf8', next, next + length), next + length + 2]
    }
    case '*': {
      const count = Number(line)
      if (count < 0) return [null, next]
      const items = []
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, next)
        if (!item) return null
        items.push(item[0])
        next = item[1]
      }
      return [items, next]
    }
    default:
      throw new Error(`unexpected RESP reply ${JSON.stringify(line)}`)
  }
}

/**
 * A bare RESP2 connection to a redis-server on `port`: `command(...args)` resolves with the
 * reply; in subscriber mode, each published message goes to `onMessage(channel, message)`, in
 * the order Redis sent them.
 */
async function rawRedis(port, onMessage = () => {}) {
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  let buffer = Buffer.alloc(0)
  const waiting = []
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk])
    for (let parsed; (parsed = parseReply(buffer, 0));) {
      buffer = buffer.subarray(parsed[1])
      const [reply] = parsed
      if (Array.isArray(reply) && reply[0] === 'message') onMessage(reply[1], reply[2])
      else waiting.shift()(reply)
    }
  })
  return {
    command: (...args) =>
      new Promise((resolve, reject) => {
        waiting.push((reply) => (reply instanceof Error ? reject(reply) : resolve(reply)))
        const parts = args.map(String).map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`)
        socket.write(`*${args.length}\r\n${parts.join('')}`)
      }),
    close: () => socket.destroy(),
  }
}

/** A loopback proxy to `targetPort` that delays every request by `delayMs`, in order: a distant Redis. */
function startSlowProxy(targetPort, delayMs) {
  const sockets = new Set()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1')
    for (const socket of [client, upstream]) sockets.add(socket)
    client.on('data', (chunk) => setTimeout(() => upstream.write(chunk), delayMs))
    upstream.on('data', (chunk) => client.write(chunk))
    const close = () => {
      for (const socket of [client, upstream]) {
        socket.destroy()
        sockets.delete(socket)
      }
    }
    for (const socket of [client, upstream]) socket.on('error', close).on('close', close)
  })
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `redis://127.0.0.1:${server.address().port}`,
        stop() {
          for (const socket of sockets) socket.destroy()
          return new Promise((done) => server.close(done))
        },
      }),
    ),
  )
}

describe('revokeUser finds the tokens the index does not name', () => {
  const h = useHarness()
  const cli = (...args) => h.redis.cli(...args)
  const cliOf = () => cli

  test("tokens in 1.3.2's layout are revoked and counted; other users' keys and non-tokens are untouched", async () => {
    const auth = h.create()
    const other = h.create({ sku: OTHER_SKU })
    // Glob characters in the id: an unescaped pattern would match the bystanders below.
    const userId = 'o*1'
    const indexed = (await h.login({ openId: userId }, auth)).response
    const legacy = [legacyToken(cliOf, userId), legacyToken(cliOf, userId)]
    const legacyOtherSku = legacyToken(cliOf, userId, OTHER_SKU)
    const bystanders = [
      ...['oX1', 'oab1', 'o*', 'o*12', 'o*1x', 'o\\*1'].map((id) => legacyToken(cliOf, id)),
      (await h.login({ openId: 'o*10' }, auth)).response,
      (await h.login({ openId: 'oX1' }, auth)).response,
    ]
    // Keys of the app's that look like the user's tokens but are not tokens.
    const notTokens = {
      string: `${userId}|${SKU}|app-data`,
      hashWithoutCtime: tokenKey(userId),
      fourParts: `${userId}|${SKU}|a|b`,
    }
    cli('SET', notTokens.string, 'keep me')
    cli('HSET', notTokens.hashWithoutCtime, 'name', 'keep me')
    cli('HSET', notTokens.fourParts, 'ctime', Date.now())
    for (const token of [indexed, ...legacy, legacyOtherSku, ...bystanders]) {
      assert.equal(await validates(auth.isTokenValid(token)), true, `${token} is live before`)
    }

    assert.equal((await auth.revokeUser(userId)).response, 3, 'the indexed token and both 1.3.2 tokens')
    for (const token of [indexed, ...legacy]) {
      assert.equal(await validates(auth.isTokenValid(token)), false, `${token} is revoked`)
    }
    assert.equal(await validates(other.isTokenValid(legacyOtherSku)), true, 'another sku is left without allSkus')
    for (const token of bystanders) assert.equal(await validates(auth.isTokenValid(token)), true, `${token} is untouched`)
    for (const key of Object.values(notTokens)) assert.equal(cli('EXISTS', key), '1', `${key} is left alone`)

    assert.equal((await auth.revokeUser(userId, { allSkus: true })).response, 1, "the other sku's 1.3.2 token")
    assert.equal(await validates(other.isTokenValid(legacyOtherSku)), false)
    assert.equal((await auth.revokeUser(userId, { allSkus: true })).response, 0, 'nothing left')
    for (const token of bystanders) assert.equal(await validates(auth.isTokenValid(token)), true, `${token} is untouched`)
  })

  test('a token whose index was deleted is revoked and counted, in this sku and with allSkus', async () => {
    const auth = h.create()
    const other = h.create({ sku: OTHER_SKU })
    const userId = 'oIndexGone'
    const own = (await h.login({ openId: userId }, auth)).response
    const otherSku = (await h.login({ openId: userId }, other)).response
    const bystander = (await h.login({ openId: `${userId}2` }, auth)).response
    cli('DEL', `mpauthx|index|${SKU}|${userId}`, `mpauthx|index|${OTHER_SKU}|${userId}`, `mpauthx|index|${SKU}|${userId}2`)
    // Remembered by the instance: the revocation must reach its cache too.
    for (const token of [own, otherSku, bystander]) assert.equal(await validates(auth.isTokenValid(token)), true)

    assert.equal((await auth.revokeUser(userId)).response, 1)
    assert.equal(await validates(auth.isTokenValid(own)), false)
    assert.equal(await validates(auth.isTokenValid(otherSku)), true, 'another sku is left without allSkus')
    assert.equal((await auth.revokeUser(userId, { allSkus: true })).response, 1)
    assert.equal(await validates(auth.isTokenValid(otherSku)), false)
    assert.equal(await validates(auth.isTokenValid(bystander)), true, 'a user whose id starts with this one is untouched')
    const fresh = (await h.login({ openId: userId }, auth)).response
    assert.notEqual(fresh, own, 'the next login issues a new token')
    assert.equal(await validates(auth.isTokenValid(fresh)), true)
  })
})

describe('revokeUser on a Redis Cluster', () => {
  const h = useCluster()

  test("finds 1.3.2's tokens and unindexed tokens on every master", async () => {
    const skus = ['sku-a', 'sku-b', 'sku-c', 'sku-d', 'sku-e', 'sku-f']
    const userId = 'oCluster*Legacy'
    const auth = h.create({ sku: skus[0] })
    const cliOf = (key) => h.cluster.masterOf(key).cli
    const legacy = skus.map((sku) => legacyToken(cliOf, userId, sku))
    const masters = new Set(legacy.map((token) => h.cluster.masterOf(token).port))
    assert.ok(masters.size >= 2, 'the tokens live on more than one master')
    const indexed = (await h.login({ openId: userId }, auth)).response
    const unindexed = (await h.login({ openId: userId }, h.create({ sku: skus[1] }))).response
    const index = `mpauthx|index|${skus[1]}|${userId}`
    h.cluster.masterOf(index).cli('DEL', index)
    const bystanders = skus.map((sku) => legacyToken(cliOf, 'oClusterXLegacy', sku))
    // 25,000 more keys on each master, so that each master's pass takes several SCAN steps;
    // a script writes them, in the slot of a hash tag served by that master.
    const filled = new Map()
    for (let tag = 0; filled.size < 3; tag++) {
      const node = h.cluster.masterOf(`{t${tag}}`)
      if (filled.has(node.port)) continue
      filled.set(node.port, node)
      node.cli('EVAL', `for i = 1, 25000 do redis.call('SET', '{t${tag}}filler:' .. i, '') end`, '1', `{t${tag}}`)
    }
    const scans = (node) => Number(/cmdstat_scan:calls=(\d+)/.exec(node.cli('INFO', 'commandstats'))?.[1] ?? 0)
    const scansBefore = [...filled.values()].map(scans)

    assert.equal((await auth.revokeUser(userId, { allSkus: true })).response, skus.length + 2)
    for (const token of [...legacy, indexed, unindexed]) assert.equal(await validates(auth.isTokenValid(token)), false, token)
    for (const [i, node] of [...filled.values()].entries()) {
      assert.ok(scans(node) - scansBefore[i] >= 3, `the pass over master ${node.port} took several steps`)
    }
    for (const token of bystanders) assert.equal(await validates(auth.isTokenValid(token)), true, token)
  })
})

describe('revokeUser scans under its own budget (revokeUserScanMs)', () => {
  const h = useHarness()
  /** Keys in the Redis besides the users': enough that one pass takes many SCAN steps. */
  const FILLER = 200_000
  /** Writes the filler keys, once: a script writes them in a fraction of a second. */
  const fill = () => {
    if (h.redis.cli('EXISTS', `filler:${FILLER}`) === '0') {
      h.redis.cli('EVAL', `for i = 1, ${FILLER} do redis.call('SET', 'filler:' .. i, '') end`, '0')
    }
  }

  test('a pass over 200k keys through a slow link outlasts the 1.5 s call deadline and succeeds', async (t) => {
    fill()
    // 80 ms a request: ~27 SCAN steps of 10,000 take over 2 s, each well within its deadline.
    const proxy = await startSlowProxy(h.redis.port, 80)
    t.after(() => proxy.stop())
    const auth = h.create({ options: { redisUrl: proxy.url, validationCacheSize: 0 } })
    const userId = 'oBigKeyspace'
    const indexed = (await h.login({ openId: userId }, auth)).response
    const legacy = legacyToken(() => h.redis.cli, userId, OTHER_SKU)
    const started = Date.now()
    assert.equal((await auth.revokeUser(userId, { allSkus: true })).response, 2)
    t.diagnostic(`revokeUser with allSkus over ${FILLER} keys, 80 ms a round trip: ${Date.now() - started} ms`)
    for (const token of [indexed, legacy]) assert.equal(await validates(auth.isTokenValid(token)), false)
  })

  test('a scan that outlasts revokeUserScanMs rejects 6000 naming the budget; what was revoked stays revoked', async () => {
    fill()
    const auth = h.create({ options: { revokeUserScanMs: 1 } })
    const userId = 'oOutOfBudget'
    const indexed = (await h.login({ openId: userId }, auth)).response
    const err = await rejection(auth.revokeUser(userId, { allSkus: true }))
    assert.equal(err.code, 6000)
    assert.match(err.detail, /did not finish within revokeUserScanMs \(1 ms\)/)
    assert.equal(await validates(auth.isTokenValid(indexed)), false, 'the indexed token was revoked before the scan')
  })

  test('revokeUserScanMs must be a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 40]) {
      assert.throws(() => h.create({ options: { revokeUserScanMs: bad } }), RangeError, String(bad))
    }
    assert.throws(() => h.create({ options: { revokeUserScanMs: '1000' } }), TypeError)
    h.create({ options: { revokeUserScanMs: 10_000 } })
  })
})

describe('revokeUser racing refreshToken', () => {
  const h = useHarness()
  const RACES = 300

  test('an index that keeps changing makes revokeUser reject 6000 after 5 rounds, not loop', async () => {
    const userId = 'oChurning'
    const index = `mpauthx|index|${SKU}|${userId}`
    h.redis.cli('SET', index, '0')
    // Another client changes the index right before each compare-and-delete of revokeUser
    // reaches Redis: the index it read is never the index it deletes.
    let changes = 0
    const proxy = await startTcpProxy(h.redis.port, {
      beforeRequest(text) {
        if (/EVAL/.test(text) && text.includes(index)) {
          h.redis.cli('INCR', index)
          changes++
        }
      },
    })
    try {
      const auth = h.create({ options: { redisUrl: `redis://127.0.0.1:${proxy.port}` } })
      const err = await rejection(auth.revokeUser(userId))
      assert.equal(err.code, 6000, err.message)
      assert.match(err.detail, /the user's token kept changing/)
      assert.ok(changes >= 5, `gave up after ${changes} changes`)
    } finally {
      await proxy.stop()
    }
  })

  // What "no token missed" means: revokeUser deletes the index last, once no token it named
  // is left. A refreshToken whose token is live after both settled must have replaced the
  // index after that deletion (it ran after revokeUser, as far as Redis saw); one that
  // replaced it before must have lost its token. Redis's keyspace notifications, delivered
  // in the order the commands ran, tell which happened.
  test(`${RACES} races leave no token that revokeUser should have revoked`, async (t) => {
    const auth = h.create()
    const userId = 'oRacer'
    const index = `mpauthx|index|${SKU}|${userId}`
    await h.login({ openId: userId }, auth)
    h.redis.cli('CONFIG', 'SET', 'notify-keyspace-events', 'K$g')
    t.after(() => h.redis.cli('CONFIG', 'SET', 'notify-keyspace-events', ''))
    const seen = []
    let markerSeen = null
    const subscriber = await rawRedis(h.redis.port, (channel, message) => {
      if (channel === 'race-marker') markerSeen?.(message)
      else seen.push(message)
    })
    const commands = await rawRedis(h.redis.port)
    t.after(() => {
      subscriber.close()
      commands.close()
    })
    await subscriber.command('SUBSCRIBE', `__keyspace@0__:${index}`)
    await subscriber.command('SUBSCRIBE', 'race-marker')
    /** Waits until every notification of the commands run so far has arrived. */
    const settle = async (name) => {
      const arrived = new Promise((resolve) => (markerSeen = (message) => message === name && resolve()))
      await commands.command('PUBLISH', 'race-marker', name)
      await arrived
    }

    let revokedFirst = 0
    for (let race = 0; race < RACES; race++) {
      const before = (await auth.refreshToken(userId)).response
      await settle(`start ${race}`)
      seen.length = 0
      const [revoked, refreshed] = await Promise.all([auth.revokeUser(userId), auth.refreshToken(userId)])
      await settle(`end ${race}`)
      const events = seen.filter((event) => event === 'set' || event === 'del')
      const live = (await commands.command('KEYS', `${userId}|${SKU}|*`)).sort()
      const token = refreshed.response
      const why = `race ${race}: revokeUser deleted ${revoked.response}, index events ${events.join(' ')}`
      assert.ok(!live.includes(before), `${why}: the token from before the race survived`)
      if (live.length === 0) {
        assert.equal(await commands.command('EXISTS', index), 0, `${why}: no index naming a revoked token`)
        assert.equal(await validates(auth.isTokenValid(token)), false, why)
        continue
      }
      revokedFirst++
      assert.deepEqual(live, [token], `${why}: only the token refreshToken resolved with may be live`)
      assert.equal(await commands.command('GET', index), token, why)
      assert.ok(
        events.lastIndexOf('del') !== -1 && events.lastIndexOf('del') < events.lastIndexOf('set'),
        `${why}: the refreshed token is live, so the index must have been replaced after revokeUser deleted it`,
      )
    }
    t.diagnostic(`${revokedFirst} of ${RACES} refreshes ran after revokeUser; the others' tokens were revoked`)
  })
})
