'use strict'

// examples/prometheus and examples/opentelemetry: what a Prometheus scrape and a trace show of
// a user's login and requests, run against this suite's Redis and WeChat stand-in.

const assert = require('node:assert/strict')
const { AsyncLocalStorage } = require('node:async_hooks')
const { execFile } = require('node:child_process')
const path = require('node:path')
const { promisify } = require('node:util')
const { after, before, beforeEach, describe, test } = require('node:test')

const { context, trace, ROOT_CONTEXT, SpanKind, SpanStatusCode } = require('@opentelemetry/api')
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base')

const { useHarness, rejection, APP_ID, APP_SECRET, SKU } = require('./support/harness')
const { useExample } = require('./support/example-server')
const { waitUntil } = require('./support/redis')
const { instrumentMpauthx } = require('../examples/opentelemetry/tracing')

const EXAMPLES = path.join(__dirname, '..', 'examples')

/** The samples of a Prometheus text exposition: `{ name, labels, value }`. */
function parseScrape(text) {
  const samples = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const [, name, labelText = '', value] = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line) ?? assert.fail(`not a sample: ${line}`)
    const labels = {}
    for (const [, label, raw] of labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[label] = raw.replace(/\\(.)/g, '$1')
    samples.push({ name, labels, value: value === '+Inf' ? Infinity : Number(value) })
  }
  return samples
}

/** The value of the one sample named `name` whose labels include `labels`. */
function sampleValue(samples, name, labels = {}) {
  const matching = samples.filter((s) => s.name === name && Object.entries(labels).every(([key, value]) => s.labels[key] === value))
  assert.equal(matching.length, 1, `${name}${JSON.stringify(labels)}: ${JSON.stringify(matching)}`)
  return matching[0].value
}

/** Fails when `text` contains any of `secrets`. */
function assertNothingSecret(text, secrets) {
  for (const secret of secrets) assert.ok(!text.includes(secret), `found ${secret.slice(0, 12)}… in ${text.slice(0, 200)}…`)
}

describe('examples/prometheus/server.js', () => {
  const h = useHarness()
  const sku = 'promsku'
  const server = useExample(h, path.join(EXAMPLES, 'prometheus', 'server.js'), { SKU: sku })
  const labels = { app_id: APP_ID, sku }

  async function scrape() {
    const reply = await server.get('/metrics')
    assert.equal(reply.status, 200)
    assert.match(reply.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
    const text = await reply.text()
    return { text, samples: parseScrape(text) }
  }

  test('a login and a request show in /metrics, labelled with the app and sku, with nothing secret', async () => {
    const { code } = h.wechat.login({ openId: 'oPrometheus' })
    const login = await server.post('/login', { code })
    assert.equal(login.status, 200)
    const { token } = await login.json()
    const me = await server.get('/me', { authorization: `Bearer ${token}` })
    assert.equal(me.status, 200)

    const { text, samples } = await scrape()
    assert.equal(sampleValue(samples, 'mpauthx_calls_total', { ...labels, method: 'login' }), 1)
    assert.equal(sampleValue(samples, 'mpauthx_calls_total', { ...labels, method: 'authenticate' }), 1, 'the middleware checked GET /me')
    assert.equal(sampleValue(samples, 'mpauthx_calls_total', { ...labels, method: 'authorize' }), 0)
    assert.equal(sampleValue(samples, 'mpauthx_wechat_requests_total', { ...labels, outcome: 'ok' }), 1)
    assert.equal(sampleValue(samples, 'mpauthx_connection_up', { ...labels, connection: 'redis' }), 1)
    assert.equal(sampleValue(samples, 'mpauthx_connection_up', { ...labels, connection: 'wechat' }), 1)
    assert.ok(sampleValue(samples, 'mpauthx_store_round_trips_total', { ...labels, backend: 'redis' }) > 0)
    assert.equal(sampleValue(samples, 'mpauthx_validation_cache_on', labels), 1)

    // The WeChat latency histogram, in seconds, as Prometheus's histogram_quantile reads it.
    assert.match(text, /^# TYPE mpauthx_wechat_request_duration_seconds histogram$/m)
    assert.equal(sampleValue(samples, 'mpauthx_wechat_request_duration_seconds_count', labels), 1)
    assert.equal(sampleValue(samples, 'mpauthx_wechat_request_duration_seconds_bucket', { ...labels, le: '+Inf' }), 1)
    const sum = sampleValue(samples, 'mpauthx_wechat_request_duration_seconds_sum', labels)
    assert.ok(sum > 0 && sum < 10, `a loopback request takes well under 10 s, not ${sum}`)
    const buckets = samples.filter((s) => s.name === 'mpauthx_wechat_request_duration_seconds_bucket')
    assert.deepEqual(
      buckets.map((s) => s.labels.le),
      ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf'],
    )
    assert.ok(
      buckets.every((s, i) => i === 0 || s.value >= buckets[i - 1].value),
      'cumulative',
    )

    for (const sample of samples.filter((s) => s.name.startsWith('mpauthx_'))) {
      assert.equal(sample.labels.app_id, APP_ID, sample.name)
      assert.equal(sample.labels.sku, sku, sample.name)
    }
    assertNothingSecret(text, [APP_SECRET, token, 'oPrometheus', code])
  })

  test('a login WeChat refuses counts as a failure by status code and a WeChat errcode', async () => {
    const refused = await server.post('/login', { code: h.wechat.replyJson({ errcode: 40029, errmsg: 'invalid code' }) })
    assert.equal(refused.status, 502)
    const { samples } = await scrape()
    assert.equal(sampleValue(samples, 'mpauthx_calls_total', { ...labels, method: 'login' }), 2)
    assert.equal(sampleValue(samples, 'mpauthx_call_failures_total', { ...labels, method: 'login', code: '6008' }), 1)
    assert.equal(sampleValue(samples, 'mpauthx_wechat_requests_total', { ...labels, outcome: 'errcode' }), 1)
    assert.equal(sampleValue(samples, 'mpauthx_wechat_request_duration_seconds_count', labels), 2)
  })

  test('stops cleanly on SIGTERM', async () => {
    assert.deepEqual(await server.stop(), { code: 0, signal: null })
  })
})

// A context manager on AsyncLocalStorage, as NodeSDK registers one: what makes the span active
// around a call (an HTTP server's) the parent of mpauthx's.
class AsyncLocalStorageContextManager {
  #storage = new AsyncLocalStorage()
  active() {
    return this.#storage.getStore() ?? ROOT_CONTEXT
  }
  with(ctx, fn, thisArg, ...args) {
    return this.#storage.run(ctx, () => fn.apply(thisArg, args))
  }
  bind(ctx, target) {
    return typeof target === 'function' ? (...args) => this.with(ctx, target, undefined, ...args) : target
  }
  enable() {
    return this
  }
  disable() {
    this.#storage.disable()
    return this
  }
}

describe('examples/opentelemetry/tracing.js', () => {
  const h = useHarness()
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const tracer = provider.getTracer('operating-examples')
  let uninstrument
  before(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager())
    uninstrument = instrumentMpauthx(tracer)
  })
  after(async () => {
    uninstrument()
    context.disable()
    await provider.shutdown()
  })
  beforeEach(() => exporter.reset())

  const spanId = (span) => span.spanContext().spanId
  const nanos = ([seconds, nanoseconds]) => BigInt(seconds) * 1_000_000_000n + BigInt(nanoseconds)
  const childrenOf = (spans, parent) => spans.filter((span) => span.parentSpanContext?.spanId === spanId(parent))
  function onlySpan(spans, name) {
    const named = spans.filter((span) => span.name === name)
    assert.equal(named.length, 1, `${name} in ${spans.map((span) => span.name)}`)
    return named[0]
  }
  // Everything a span shows: its name, attributes, status and events.
  const shown = (spans) =>
    JSON.stringify(spans.map((span) => [span.name, span.attributes, span.status, span.events.map((e) => [e.name, e.attributes])]))

  test("a login: the call's span under the request's, with its WeChat request and store round trips", async () => {
    const auth = h.create()
    const login = h.wechat.login({ openId: 'oTraced', unionId: 'uTraced' })
    const request = tracer.startSpan('GET /login')
    const { response: token } = await context.with(trace.setSpan(context.active(), request), () =>
      auth.authorize(login.code, login.encryptedData, login.iv),
    )
    request.end()

    const spans = exporter.getFinishedSpans()
    const call = onlySpan(spans, 'mpauthx authorize')
    assert.equal(call.kind, SpanKind.INTERNAL)
    assert.equal(call.parentSpanContext?.spanId, spanId(request), 'a child of the span active when it was called')
    assert.equal(call.attributes['mpauthx.code'], 1)
    assert.equal(call.attributes['mpauthx.sku'], SKU)
    assert.equal(call.status.code, SpanStatusCode.UNSET)

    const children = childrenOf(spans, call)
    const wechat = onlySpan(children, 'mpauthx wechat /sns/jscode2session')
    assert.equal(wechat.kind, SpanKind.CLIENT)
    assert.equal(wechat.attributes['http.response.status_code'], 200)
    assert.equal(wechat.attributes['mpauthx.outcome'], 'ok')
    assert.equal(wechat.attributes['mpauthx.wechat.errcode'], undefined, 'no errcode on success')
    const names = children.map((span) => span.name)
    assert.ok(
      names.some((name) => /^mpauthx redis [A-Za-z]+$/.test(name)),
      names.join(),
    )
    assert.ok(
      names.some((name) => /^mpauthx sqlite [A-Za-z]+$/.test(name)),
      names.join(),
    )
    for (const child of children) {
      assert.equal(child.spanContext().traceId, call.spanContext().traceId)
      assert.equal(child.spanContext().traceId, request.spanContext().traceId)
      assert.equal(child.attributes['mpauthx.outcome'], 'ok', child.name)
      assert.ok(nanos(child.startTime) >= nanos(call.startTime), `${child.name} starts within the call`)
      assert.ok(nanos(child.endTime) <= nanos(call.endTime), `${child.name} ends within the call`)
      assert.ok(nanos(child.endTime) >= nanos(child.startTime), `${child.name} ends after it starts`)
    }
    assertNothingSecret(shown(spans), [APP_SECRET, token, 'oTraced', 'uTraced', login.code, login.encryptedData, login.iv])
  })

  test('a login WeChat refuses: status ERROR, code 6008 and the exception, nothing else of the error', async () => {
    const auth = h.create()
    const refused = h.wechat.replyJson({ errcode: 40029, errmsg: 'invalid code' })
    const err = await rejection(auth.login(refused))
    assert.equal(err.code, 6008)

    const spans = exporter.getFinishedSpans()
    const call = onlySpan(spans, 'mpauthx login')
    assert.equal(call.parentSpanContext, undefined, 'a root span: no span was active')
    assert.equal(call.status.code, SpanStatusCode.ERROR)
    assert.equal(call.status.message, err.message)
    assert.equal(call.attributes['mpauthx.code'], 6008)
    const exceptions = call.events.filter((event) => event.name === 'exception')
    assert.deepEqual(
      exceptions.map((event) => event.attributes),
      [{ 'exception.type': '6008', 'exception.message': err.message }],
      'no stack, no detail',
    )
    // WeChat answered, with an errcode: no connection changed state (a first answer is no change).
    assert.deepEqual(
      call.events.filter((event) => event.name.startsWith('connection.')),
      [],
    )

    const wechat = onlySpan(childrenOf(spans, call), 'mpauthx wechat /sns/jscode2session')
    assert.equal(wechat.attributes['mpauthx.outcome'], 'errcode')
    assert.equal(wechat.attributes['mpauthx.wechat.errcode'], 40029)
    assert.equal(wechat.status.code, SpanStatusCode.ERROR)
    assertNothingSecret(shown(spans), [APP_SECRET, refused])
  })

  test('a check the validation cache answers in the same tick: its span ends at once, with the hit', async () => {
    const auth = h.create()
    const { response: token } = await h.login({ openId: 'oCachedSpan' }, auth)
    await waitUntil(async () => (await auth.verifyToken(token), auth.stats().validationCache.hits > 0), 'a check from memory')
    exporter.reset()

    let nextCalled = false
    auth.middleware()({ headers: { authorization: `Bearer ${token}` } }, {}, () => (nextCalled = true))
    assert.equal(nextCalled, true, 'answered synchronously')
    // No await: the span is finished before the middleware returns.
    const call = onlySpan(exporter.getFinishedSpans(), 'mpauthx authenticate')
    assert.equal(call.attributes['mpauthx.code'], 1)
    assert.deepEqual(
      call.events.map((event) => event.name),
      ['cache.hit'],
    )
    assert.deepEqual(childrenOf(exporter.getFinishedSpans(), call), [], 'no round trip')
    assertNothingSecret(shown(exporter.getFinishedSpans()), [token, 'oCachedSpan'])
  })

  test('uninstrument() stops the spans', async () => {
    const auth = h.create()
    uninstrument()
    await h.login({ openId: 'oUntraced' }, auth)
    assert.deepEqual(exporter.getFinishedSpans(), [])
  })
})

describe('examples/opentelemetry/demo.js', () => {
  test('prints the spans of a login and of a refused login as a tree', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(EXAMPLES, 'opentelemetry', 'demo.js')], {
      env: { ...process.env, MPAUTHX_REDIS_URL: 'redis://127.0.0.1:1' },
      timeout: 30_000,
    })
    assert.match(stdout, /^mpauthx authorize +[\d.]+ ms +code 1$/m)
    assert.match(stdout, /^ {2}mpauthx wechat \/sns\/jscode2session +[\d.]+ ms +ok$/m)
    assert.match(stdout, /^ {2}mpauthx sqlite \w+ +[\d.]+ ms +ok$/m)
    assert.match(stdout, /^mpauthx isTokenValid +[\d.]+ ms +code 1$/m)
    assert.match(stdout, /^mpauthx login +[\d.]+ ms +code 6008, exception$/m)
    assert.doesNotMatch(stdout, /oDemoUser|demo-secret/)
  })
})
