'use strict'

// The spans of a login and a failed login, printed as a tree: a tracer provider, the
// instrumentation of tracing.js, and mpauthx against a loopback stand-in for WeChat with the
// embedded SQLite token store (no Redis needed).
//
//   node examples/opentelemetry/demo.js

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base')
const mpauthx = require('../..') // in your project: require('mpauthx')
const { startWeChat } = require('../../__test__/support/wechat')
const { instrumentMpauthx } = require('./tracing')

async function main() {
  // In production: your exporter (OTLP) behind a BatchSpanProcessor, usually through NodeSDK,
  // and `trace.getTracer('mpauthx')`.
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const uninstrument = instrumentMpauthx(provider.getTracer('mpauthx'))

  const wechat = await startWeChat({ appId: 'wxdemo0000000000', appSecret: 'demo-secret' })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpauthx-otel-'))
  const auth = mpauthx('wxdemo0000000000', 'demo-secret', 'demo', path.join(dir, 'users.db'), null, 3600, {
    wechatApiBase: wechat.base,
    tokenStore: 'sqlite',
  })
  try {
    const { code, encryptedData, iv } = wechat.login({ openId: 'oDemoUser' })
    const { response: token } = await auth.authorize(code, encryptedData, iv)
    await auth.isTokenValid(token)
    await auth.login('made-up-code').catch(() => {})
  } finally {
    uninstrument()
    await auth.close()
    await wechat.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  printTree(exporter.getFinishedSpans())
  await provider.shutdown()
}

/** Each span under its parent: name, duration, status code or outcome, events. */
function printTree(spans) {
  const ms = ([seconds, nanos]) => seconds * 1e3 + nanos / 1e6
  const children = (parentId) => spans.filter((span) => span.parentSpanContext?.spanId === parentId)
  const print = (span, depth) => {
    const { attributes: a, events } = span
    const named = events.map((e) => [e.name, e.attributes?.['mpauthx.connection']].filter(Boolean).join(' '))
    const what = [a['mpauthx.code'] !== undefined ? `code ${a['mpauthx.code']}` : a['mpauthx.outcome'], ...named]
    console.log(`${'  '.repeat(depth)}${span.name}  ${ms(span.duration).toFixed(1)} ms  ${what.filter(Boolean).join(', ')}`)
    for (const child of children(span.spanContext().spanId)) print(child, depth + 1)
  }
  for (const root of children(undefined)) print(root, 0)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
