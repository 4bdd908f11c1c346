'use strict'

// Redis over TLS (`rediss://` and options.redisTls) against redis-server TLS ports started
// here, with certificates this file makes with openssl.

const assert = require('node:assert/strict')
const { after, before, describe, test } = require('node:test')

const { startHarness, useCluster, rejection } = require('./support/harness')
const { freePort } = require('./support/redis')
const { makeCertificates, tlsArgs } = require('./support/tls')

let certificates
before(() => {
  certificates = makeCertificates()
})
after(() => certificates.remove())

/** A harness whose Redis also listens with TLS; `url` is its rediss:// address. */
function useTlsRedis({ authClients = false } = {}) {
  const env = {}
  before(async () => {
    const tlsPort = await freePort()
    // Also on 127.0.0.2, an address the server's certificate does not name.
    const redisArgs = [...tlsArgs(certificates, tlsPort, { authClients }), '--bind', '127.0.0.1', '127.0.0.2']
    env.harness = await startHarness({ redisArgs })
    env.tlsPort = tlsPort
    env.url = `rediss://localhost:${tlsPort}`
  })
  after(() => env.harness.stop())
  return env
}

describe('Redis over TLS', () => {
  const env = useTlsRedis()

  test('a whole login flow over rediss:// with the CA given in redisTls.ca', async () => {
    const { harness, url } = env
    const auth = harness.create({ options: { redisUrl: url, redisTls: { ca: certificates.ca } } })
    const { response: token } = await harness.login({ openId: 'oTls' }, auth)
    await auth.isTokenValid(token)
    assert.equal((await auth.verifyToken(token)).response.openId, 'oTls')
    const { response: refreshed } = await auth.refreshToken(token.split('|')[0])
    await auth.isTokenValid(refreshed)
    assert.equal((await auth.revokeToken(refreshed)).response, true)
    // What went over TLS is in the same Redis: the refreshed token is gone from it.
    assert.equal(harness.redis.cli('EXISTS', refreshed), '0')
  })

  test('a server whose certificate no trusted CA signed is refused with 6000, saying why', async () => {
    const { harness, url } = env
    for (const redisTls of [undefined, { ca: certificates.otherCa }]) {
      const auth = harness.create({ options: { redisUrl: url, redisTls, validationCacheSize: 0 } })
      const started = Date.now()
      const err = await rejection(auth.isTokenValid('1|testsku|' + 'a'.repeat(64)))
      assert.equal(err.code, 6000)
      assert.match(err.detail, /Redis at localhost:\d+: TLS: the server's certificate is not accepted/)
      assert.ok(Date.now() - started < 5000, 'refused within a few seconds')
    }
  })

  test('a certificate for another host name is refused with 6000, saying why', async () => {
    const { harness, tlsPort } = env
    const auth = harness.create({
      options: { redisUrl: `rediss://127.0.0.2:${tlsPort}`, redisTls: { ca: certificates.ca }, validationCacheSize: 0 },
    })
    const err = await rejection(auth.isTokenValid('1|testsku|' + 'a'.repeat(64)))
    assert.equal(err.code, 6000)
    assert.match(
      err.detail,
      new RegExp(`Redis at 127\\.0\\.0\\.2:${tlsPort}: TLS: the server's certificate is not accepted .*not valid for name`),
    )
  })

  test('rejectUnauthorized: false connects to a server no trusted CA signed (unsafe, never the default)', async () => {
    const { harness, url } = env
    const auth = harness.create({ options: { redisUrl: url, redisTls: { rejectUnauthorized: false } } })
    const { response: token } = await harness.login({ openId: 'oInsecure' }, auth)
    await auth.isTokenValid(token)
  })

  test('redisTls with a plain redis:// URL, half a client certificate or text that is not PEM is refused at creation', () => {
    const { harness } = env
    const create = (options) => () => harness.create({ options })
    assert.throws(create({ redisTls: { ca: certificates.ca } }), { name: 'RangeError', message: /rediss:\/\// })
    assert.throws(create({ redisUrl: env.url, redisTls: { cert: certificates.client.cert } }), {
      name: 'TypeError',
      message: /cert and options\.redisTls\.key/,
    })
    assert.throws(create({ redisUrl: env.url, redisTls: { ca: 'not a certificate' } }), {
      name: 'RangeError',
      message: /PEM/,
    })
    assert.throws(create({ redisUrl: env.url, redisTls: { colour: 'blue' } }), { name: 'TypeError', message: /colour/ })
  })
})

describe('Redis over mutual TLS', () => {
  const env = useTlsRedis({ authClients: true })

  test('with the client certificate and key, a whole login flow works', async () => {
    const { harness, url } = env
    const auth = harness.create({
      options: { redisUrl: url, redisTls: { ca: certificates.ca, ...certificates.client } },
    })
    const { response: token } = await harness.login({ openId: 'oMutual' }, auth)
    await auth.isTokenValid(token)
  })

  test('without a client certificate, the server refuses and calls reject with 6000', async () => {
    const { harness, url } = env
    const auth = harness.create({ options: { redisUrl: url, redisTls: { ca: certificates.ca }, validationCacheSize: 0 } })
    const err = await rejection(auth.isTokenValid('1|testsku|' + 'a'.repeat(64)))
    assert.equal(err.code, 6000)
  })
})

describe('Redis Cluster over TLS', () => {
  const h = useCluster(() => ({ certificates }))

  test('a whole login flow over rediss:// cluster nodes, the rest discovered over TLS', async () => {
    const auth = h.create({ options: { redisClusterNodes: h.cluster.urls.slice(0, 1), redisTls: { ca: certificates.ca } } })
    const tokens = []
    for (let i = 0; i < 6; i++) tokens.push((await h.login({ openId: `oTlsCluster${i}` }, auth)).response)
    await Promise.all(tokens.map((token) => auth.isTokenValid(token)))
    assert.equal((await auth.verifyToken(tokens[0])).response.openId, 'oTlsCluster0')
    assert.equal((await auth.revokeToken(tokens[1])).response, true)
    assert.equal((await rejection(auth.isTokenValid(tokens[1]))).code, 6007)
  })

  test('cluster nodes whose certificates no trusted CA signed are refused with 6000', async () => {
    const auth = h.create({ options: { redisClusterNodes: h.cluster.urls.slice(0, 1), validationCacheSize: 0 } })
    const err = await rejection(auth.isTokenValid('1|testsku|' + 'a'.repeat(64)))
    assert.equal(err.code, 6000)
  })
})
