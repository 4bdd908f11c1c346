'use strict'

// OpenTelemetry spans from mpauthx's `node:diagnostics_channel` events. Copy this file into
// your project and call `instrumentMpauthx(trace.getTracer('mpauthx'))` once, after your
// tracer provider is set up:
//
// - a span `mpauthx <method>` per call, a child of the span active when it started (your HTTP
//   server's, with a context manager such as the one NodeSDK registers), ended with its status
//   code as `mpauthx.code`, and the status ERROR when it failed;
// - a child span per WeChat request (`mpauthx wechat /sns/jscode2session`) and per store round
//   trip (`mpauthx redis EVALSHA`, `mpauthx sqlite statements`), timed as they happened;
// - span events for the validation cache (`cache.hit`, `cache.miss`, …) and for connections
//   found up or down (`connection.down`).
//
// mpauthx's events never carry a secret, a login code, a user id or a token, and neither do
// these spans: only the method, the sku, status codes and timings.

const diagnosticsChannel = require('node:diagnostics_channel')
const { context, trace, SpanKind, SpanStatusCode } = require('@opentelemetry/api')
// The channels' names; in your project: require('mpauthx').channels
const { channels: names } = require('../..')

// Times on the clock mpauthx times its events with (ms since the epoch, fractional). Left to
// itself, the SDK would start a span at Date.now(), whole ms of the wall clock, and the call's
// WeChat and store spans could show up to a ms outside it.
const now = () => performance.timeOrigin + performance.now()

/** Subscribes to mpauthx's channels; returns a function that unsubscribes. */
function instrumentMpauthx(tracer) {
  // The span of each call in progress and when it started, by the context object that every
  // event of the call (and its WeChat, store and cache events) carries. Weak, so that a call
  // whose last event never comes (the instrumentation removed meanwhile) leaves nothing behind.
  const calls = new WeakMap()
  const spanOf = (ctx) => calls.get(ctx)?.span

  function finish(ctx) {
    const span = spanOf(ctx)
    if (span === undefined) return
    calls.delete(ctx)
    if (ctx.code !== undefined) span.setAttribute('mpauthx.code', ctx.code)
    // Set at the end: a check that admits any sku learns the token's sku during the call.
    span.setAttribute('mpauthx.sku', ctx.sku)
    span.end(now())
  }

  const callHandlers = {
    start(ctx) {
      const start = now()
      calls.set(ctx, {
        span: tracer.startSpan(`mpauthx ${ctx.method}`, { kind: SpanKind.INTERNAL, startTime: start }, context.active()),
        start,
      })
    },
    // The synchronous part returned. A call answered within it (`authenticate` from the
    // validation cache) has its code already, and no asyncStart/asyncEnd follow.
    end(ctx) {
      if (ctx.code !== undefined) finish(ctx)
    },
    error(ctx) {
      const span = spanOf(ctx)
      if (span === undefined) return
      // The code and message only: the stack says nothing about the request, and an error's
      // other fields are left to the application's own logs.
      const { code, message } = ctx.error ?? {}
      span.recordException({ code: String(code ?? ctx.code), message }, now())
      span.setStatus({ code: SpanStatusCode.ERROR, message })
    },
    asyncEnd: finish,
  }

  // A child span of the call for something that happened during it, timed by the event
  // (ms since the epoch), since mpauthx publishes these when the call ends.
  function childSpan(name, event, attributes) {
    const call = calls.get(event.context)
    if (call === undefined) return
    // Kept within the call's span, as trace viewers expect, should the two clocks' readings
    // differ by a rounding.
    const startTime = Math.max(event.start, call.start)
    const span = tracer.startSpan(
      name,
      { kind: SpanKind.CLIENT, startTime, attributes: withoutNulls(attributes) },
      trace.setSpan(context.active(), call.span),
    )
    if (event.outcome !== 'ok') span.setStatus({ code: SpanStatusCode.ERROR, message: event.outcome })
    span.end(Math.max(event.end, startTime))
  }

  // A connection found up or down during a call: an event on the call's span.
  function connectionChange(event, connection) {
    const attributes = withoutNulls({ 'mpauthx.connection': connection, 'mpauthx.error': event.error })
    spanOf(event.context)?.addEvent(`connection.${event.state}`, attributes, now())
  }

  const onWechat = (event) => {
    if (event.state !== undefined) return connectionChange(event, 'wechat')
    childSpan(`mpauthx wechat ${event.endpoint}`, event, {
      'mpauthx.outcome': event.outcome,
      'http.response.status_code': event.httpStatus,
      'mpauthx.wechat.errcode': event.errcode,
    })
  }
  const onStore = (event) => {
    if (event.state !== undefined) return connectionChange(event, event.backend)
    childSpan(`mpauthx ${event.backend} ${event.operation}`, event, {
      'mpauthx.outcome': event.outcome,
      'db.system.name': event.backend,
      'db.operation.name': event.operation,
    })
  }
  const onCache = (event) => {
    spanOf(event.context)?.addEvent(event.state === 'off' ? 'cache.off' : `cache.${event.outcome}`, undefined, now())
  }

  const channels = Object.values(names.calls).map((name) => diagnosticsChannel.tracingChannel(name))
  for (const channel of channels) channel.subscribe(callHandlers)
  diagnosticsChannel.subscribe(names.wechat, onWechat)
  diagnosticsChannel.subscribe(names.store, onStore)
  diagnosticsChannel.subscribe(names.cache, onCache)

  return function uninstrument() {
    for (const channel of channels) channel.unsubscribe(callHandlers)
    diagnosticsChannel.unsubscribe(names.wechat, onWechat)
    diagnosticsChannel.unsubscribe(names.store, onStore)
    diagnosticsChannel.unsubscribe(names.cache, onCache)
  }
}

// OpenTelemetry drops (and warns about) null attribute values: WeChat's errcode is null on
// success, its HTTP status null when no answer came.
function withoutNulls(attributes) {
  return Object.fromEntries(Object.entries(attributes).filter(([, value]) => value !== null && value !== undefined))
}

module.exports = { instrumentMpauthx }
