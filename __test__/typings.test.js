'use strict'

// The typings against the code: a TypeScript backend compiles with `tsc --strict --noEmit`,
// and the runtime has exactly the members, options and codes that index.d.ts declares.

const assert = require('node:assert/strict')
const diagnosticsChannel = require('node:diagnostics_channel')
const { execFile } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { describe, test } = require('node:test')
const { promisify } = require('node:util')

const { useHarness } = require('./support/harness')
const checkSurface = require('./types/surface')

const TSC = path.join(path.dirname(require.resolve('typescript/package.json')), 'bin', 'tsc')
const TSCONFIG = path.join(__dirname, 'types', 'tsconfig.json')

/** Runs tsc; resolves with its output whether or not it found errors. */
function tsc(args) {
  return promisify(execFile)(process.execPath, [TSC, ...args], { encoding: 'utf8' }).then(
    ({ stdout }) => ({ ok: true, output: stdout }),
    (err) => ({ ok: false, output: `${err.stdout}${err.stderr}` }),
  )
}

describe('TypeScript typings', () => {
  test('a strict TypeScript backend using every part of the API compiles', async () => {
    const { ok, output } = await tsc(['--strict', '--noEmit', '-p', TSCONFIG])
    assert.ok(ok, output)
  })

  test('the compile fails when the typings drift from the runtime', async () => {
    // A copy of the project's typings with one literal changed: surface.js must reject it.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-typings-'))
    try {
      const root = path.join(__dirname, '..')
      const typings = fs.readFileSync(path.join(root, 'index.d.ts'), 'utf8')
      const drifted = typings.replace('readonly invalidAccessToken: 6007', 'readonly invalidAccessToken: 6077')
      assert.notEqual(drifted, typings)
      const types = path.join(dir, '__test__', 'types')
      fs.mkdirSync(types, { recursive: true })
      fs.writeFileSync(path.join(dir, 'index.d.ts'), drifted)
      fs.writeFileSync(path.join(dir, 'index.js'), '')
      fs.copyFileSync(path.join(__dirname, 'types', 'surface.js'), path.join(types, 'surface.js'))
      fs.writeFileSync(
        path.join(types, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            module: 'nodenext',
            allowJs: true,
            checkJs: true,
            typeRoots: [path.join(root, 'node_modules', '@types')],
            types: ['node'],
          },
          files: ['surface.js'],
        }),
      )
      const { ok, output } = await tsc(['--strict', '--noEmit', '-p', path.join(types, 'tsconfig.json')])
      assert.equal(ok, false)
      assert.match(output, /6007.*6077|6077.*6007/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('runtime against typings', () => {
  const h = useHarness()

  test('the module, an instance, the options and the codes are exactly as typed', () => {
    checkSurface(h.dbFile)
  })

  test('results and the middleware carry exactly the typed keys', async () => {
    const { successKeys, requestAuthKeys, tokenInfoKeys, accessTokenKeys, phoneNumberKeys } = checkSurface(h.dbFile)
    const auth = h.create()
    const reply = await h.login({ openId: 'oTyped' }, auth)
    assert.deepEqual(Object.keys(reply).sort(), successKeys)
    const req = { headers: { authorization: `Bearer ${reply.response}` } }
    await new Promise((resolve, reject) => auth.middleware()(req, {}, (err) => (err ? reject(err) : resolve())))
    assert.deepEqual(Object.keys(req.mpauthx).sort(), requestAuthKeys)
    const { response: info } = await auth.verifyToken(reply.response)
    assert.deepEqual(Object.keys(info).sort(), tokenInfoKeys)
    const { response: accessToken } = await auth.getAccessToken()
    assert.deepEqual(Object.keys(accessToken).sort(), accessTokenKeys)
    const { response: phone } = await auth.getPhoneNumber(h.wechat.phoneCode({ phoneNumber: '13800138000' }))
    assert.deepEqual(Object.keys(phone).sort(), phoneNumberKeys)
  })

  test('stats(), health() and the diagnostics channels carry exactly the typed keys and names', async () => {
    const { operating: typed } = checkSurface(h.dbFile)
    const keys = (object) => Object.keys(object).sort()
    // Everything is seen at least once: a user store, a WeChat refusal, a Redis round trip.
    const auth = h.create({ options: { userStore: { hasUser: async () => true, addUser: async () => true } } })
    const seen = { tracing: [], wechat: [], store: [] }
    const handlers = { start: (c) => seen.tracing.push(c), asyncEnd: (c) => seen.tracing.push(c) }
    const tracing = diagnosticsChannel.tracingChannel('mpauthx:login')
    const onWechat = (event) => seen.wechat.push(event)
    const onStore = (event) => seen.store.push(event)
    tracing.subscribe(handlers)
    diagnosticsChannel.subscribe('mpauthx:wechat', onWechat)
    diagnosticsChannel.subscribe('mpauthx:store', onStore)
    try {
      await h.login({ openId: 'oTypedStats' }, auth)
      await auth.login(h.wechat.replyJson({ errcode: 40029, errmsg: 'invalid code' })).catch(() => {})
    } finally {
      tracing.unsubscribe(handlers)
      diagnosticsChannel.unsubscribe('mpauthx:wechat', onWechat)
      diagnosticsChannel.unsubscribe('mpauthx:store', onStore)
    }
    const stats = auth.stats()
    assert.deepEqual(keys(stats), typed.statsKeys)
    assert.deepEqual(keys(stats.calls), typed.tracedMethods)
    assert.deepEqual(keys(stats.calls.login), typed.methodStatsKeys)
    assert.deepEqual(keys(stats.wechat), ['latencyMs', 'requests'])
    assert.deepEqual(keys(stats.wechat.requests), typed.wechatOutcomes)
    assert.deepEqual(keys(stats.wechat.latencyMs), typed.histogramKeys)
    assert.deepEqual(keys(stats.store), typed.storeBackends)
    assert.deepEqual(keys(stats.store.redis), typed.storeStatsKeys)
    assert.deepEqual(keys(stats.validationCache), typed.validationCacheStatsKeys)
    assert.deepEqual(keys(stats.connections), typed.connectionsStatsKeys)
    assert.deepEqual(keys(stats.connections.lastFailure ?? { connection: 0, kind: 0, at: 0 }), typed.connectionFailureKeys)
    assert.deepEqual(keys(stats.appToken), typed.appTokenStatsKeys)
    const health = auth.health()
    assert.deepEqual(keys(health), typed.healthKeys)
    for (const [name, connection] of Object.entries(health.connections)) {
      assert.ok(typed.connectionNames.includes(name), name)
      assert.deepEqual(keys(connection), typed.connectionHealthKeys)
    }
    assert.deepEqual(
      keys(health.connections),
      ['redis', 'sqlite', 'userStore', 'wechat'].filter((n) => n !== 'sqlite' || h.dbFile),
    )
    const ended = seen.tracing.filter((context) => context.code !== undefined)
    assert.deepEqual(keys(ended.find((context) => context.error)), typed.callContextKeys)
    assert.ok(seen.wechat.length > 0 && seen.store.length > 0)
    for (const event of seen.wechat) {
      const change = typed.connectionChangeKeys.filter((key) => key !== 'backend')
      assert.deepEqual(keys(event), event.state ? change : typed.wechatEventKeys, JSON.stringify(event))
    }
    for (const event of seen.store) {
      assert.deepEqual(keys(event), event.state ? typed.connectionChangeKeys : typed.storeEventKeys, JSON.stringify(event))
    }
    assert.ok(seen.store.some((event) => event.backend === 'userStore'))
  })
})
