'use strict'

// What an operator sees of an instance (docs/operating.md):
//
// - one `node:diagnostics_channel` TracingChannel per public asynchronous call
//   (`mpauthx:authorize` …, `mpauthx:authenticate` for the integrations' check), published
//   through its individual events: the context carries the method, the sku, the outcome's
//   code and the error, never a result, so `tracePromise` (which stores the result) is not used;
// - the plain channels `mpauthx:wechat`, `mpauthx:store` and `mpauthx:cache`: what happened
//   inside a call, published when it ends with its context, collected by the native side only
//   while someone subscribes (`native.observe`);
// - `stats()` and `health()`, read without I/O.
//
// With nobody subscribed a call costs a few `hasSubscribers` reads and a counter.

const diagnosticsChannel = require('node:diagnostics_channel')
const { constants } = require('./constants.js')
const { extractSku } = require('./token.js')

const SUCCESS = constants.statusCode.success

// The contexts whose call's synchronous part runs: `true`, or what to publish after `end` for a
// call that settled meanwhile. Kept apart, so that subscribers never see it on the context.
const synchronousPart = new WeakMap()

/** Every traced method: the public asynchronous calls and the integrations' check. */
const METHODS = Object.freeze([
  'ready',
  'authorize',
  'login',
  'refreshToken',
  'isTokenValid',
  'verifyToken',
  'revokeToken',
  'revokeUser',
  'getAccessToken',
  'getPhoneNumber',
  'decryptData',
  'checkSignature',
  'authenticate',
])

/** The channels' names, as the module exports them (`mpauthx.channels`). */
const CHANNELS = Object.freeze({
  calls: Object.freeze(Object.fromEntries(METHODS.map((method) => [method, `mpauthx:${method}`]))),
  wechat: 'mpauthx:wechat',
  store: 'mpauthx:store',
  cache: 'mpauthx:cache',
})

// Channels are global by name: every instance publishes on the same ones.
const tracing = Object.fromEntries(METHODS.map((method) => [method, diagnosticsChannel.tracingChannel(CHANNELS.calls[method])]))
const channels = {
  wechat: diagnosticsChannel.channel(CHANNELS.wechat),
  store: diagnosticsChannel.channel(CHANNELS.store),
  cache: diagnosticsChannel.channel(CHANNELS.cache),
}

// Whether a TracingChannel has a subscriber, checked per event: `TracingChannel#hasSubscribers`
// needs Node 20.13.
const traced = (channel) =>
  channel.start.hasSubscribers ||
  channel.end.hasSubscribers ||
  channel.asyncStart.hasSubscribers ||
  channel.asyncEnd.hasSubscribers ||
  channel.error.hasSubscribers

/**
 * The telemetry of an instance of `appId` and `sku`: the calls' counters and the channels.
 * @param {object} native the binding's instance
 * @param {{ enabled: boolean, outcome: string, counts: { hits: number, misses: number } }} validationCache
 */
function createTelemetry(native, appId, sku, validationCache) {
  const cacheCounts = validationCache.counts
  const calls = Object.fromEntries(METHODS.map((method) => [method, { calls: 0, failures: {} }]))
  // What the native side was last told: whether it collects events.
  let observed = false

  // Whether anyone listens to what happens inside calls; tells the native side on a change.
  function observing() {
    const now = channels.wechat.hasSubscribers || channels.store.hasSubscribers || channels.cache.hasSubscribers
    if (now !== observed) {
      observed = now
      native.observe(now)
    }
    return now
  }

  // Each method's channel and counters, found once: the calls on the check path hold theirs.
  const probes = Object.fromEntries(
    METHODS.map((method) => [method, Object.freeze({ method, channel: tracing[method], counts: calls[method] })]),
  )
  // The test suite's calls: neither traced nor counted.
  const untraced = Object.freeze({ method: null, channel: null, counts: null })

  const telemetry = {
    /** The probe of `method`, which `context` and `settled` take. */
    probe: (method) => probes[method] ?? untraced,

    /**
     * The context of a call about to start (`probe` says of which method), or `undefined`
     * when nobody listens (then the call publishes nothing, and only counts).
     */
    context(probe) {
      // Both checks run, so that the native side learns of subscribers on every call.
      const listening = observing()
      const channel = probe.channel
      return channel !== null && (listening || traced(channel)) ? { method: probe.method, sku } : undefined
    },

    /**
     * Runs `body`, the synchronous part of the call of `ctx`, between its `start` and `end`
     * events, as `traceSync` does (an exception is published on `error`, and thrown); then
     * the events of a call that settled within it (an answer from memory), so that they come
     * in the standard order.
     */
    run(ctx, body) {
      if (ctx === undefined) return body()
      const channel = tracing[ctx.method]
      synchronousPart.set(ctx, true)
      try {
        return channel.start.runStores(ctx, body)
      } catch (error) {
        ctx.error = error
        channel.error.publish(ctx)
        throw error
      } finally {
        const settledMeanwhile = synchronousPart.get(ctx)
        synchronousPart.delete(ctx)
        channel.end.publish(ctx)
        if (typeof settledMeanwhile === 'function') settledMeanwhile()
      }
    },

    /**
     * A call (of `probe`'s method) ended with `code` (and `error` unless it succeeded): counted, and
     * with a context, what the native side saw (`events`, timed from `nativeStart`, a
     * `performance.now()`) is published, then `error`, `asyncStart` and `asyncEnd`.
     */
    settled(probe, ctx, code, error, events, nativeStart) {
      const counts = probe.counts
      if (counts === null) return
      counts.calls++
      if (code !== SUCCESS) counts.failures[code] = (counts.failures[code] ?? 0) + 1
      if (ctx !== undefined) publishSettled(ctx, code, error, events, nativeStart)
    },

    /**
     * A check answered synchronously (`authenticate` from memory, or no token where it is
     * optional): its `end` is its last event, as with `traceSync`.
     */
    settledSync(probe, ctx) {
      probe.counts.calls++
      if (ctx !== undefined) ctx.code = SUCCESS
    },

    /** The check of `ctx` has just asked the validation cache: how it answered. */
    cacheLookup(ctx) {
      if (ctx === undefined || !validationCache.enabled || !channels.cache.hasSubscribers) return
      channels.cache.publish({ context: ctx, outcome: validationCache.outcome })
    },

    /** A check that admits any sku found `token` live: its sku is the context's. */
    liveToken(ctx, token) {
      if (ctx !== undefined) ctx.sku = extractSku(token)
    },

    stats() {
      const numbers = native.stats()
      const cache = numbers.cache
      return {
        appId,
        sku,
        calls: Object.fromEntries(
          METHODS.map((method) => [method, { calls: calls[method].calls, failures: { ...calls[method].failures } }]),
        ),
        wechat: {
          requests: Object.fromEntries(numbers.wechatRequests.map(({ name, count }) => [name, count])),
          latencyMs: {
            le: numbers.latencyBoundsMs,
            counts: numbers.latencyCounts,
            count: numbers.latencyCount,
            sum: numbers.latencySumMs,
          },
        },
        store: Object.fromEntries(
          numbers.stores.map(({ backend, roundTrips, retries, failures }) => [backend, { roundTrips, retries, failures }]),
        ),
        validationCache: {
          on: cache?.on ?? false,
          entries: cache?.entries ?? 0,
          hits: cacheCounts.hits,
          misses: cacheCounts.misses,
          invalidations: cache?.invalidations ?? 0,
        },
        connections: { reconnects: numbers.reconnects, lastFailure: numbers.lastFailure ?? null },
        appToken: { fetches: numbers.accessTokenFetches, lockWaits: numbers.lockWaits },
      }
    },

    health() {
      const { connections, cacheOn } = native.health()
      return {
        connections: Object.fromEntries(
          connections.map(({ connection, state, since, lastError }) => [
            connection,
            { state, since: since ?? null, lastError: lastError ?? null },
          ]),
        ),
        validationCache: cacheOn === null || cacheOn === undefined ? null : { on: cacheOn },
      }
    },
  }
  return telemetry
}

/**
 * Publishes the end of the call of `ctx`: what the native side saw, then `error`, `asyncStart`
 * and `asyncEnd`; after `end` when the call settled within its synchronous part.
 */
function publishSettled(ctx, code, error, events, nativeStart) {
  const publish = () => {
    if (events) publishEvents(ctx, events, nativeStart)
    ctx.code = code
    const channel = tracing[ctx.method]
    if (error !== undefined) {
      ctx.error = error
      channel.error.publish(ctx)
    }
    channel.asyncStart.publish(ctx)
    channel.asyncEnd.publish(ctx)
  }
  if (synchronousPart.get(ctx) === true) synchronousPart.set(ctx, publish)
  else publish()
}

/** Publishes what the native side saw during the call of `context`. */
function publishEvents(context, events, nativeStart) {
  const origin = performance.timeOrigin + nativeStart
  for (const event of events) {
    const channel = channels[event.channel]
    if (!channel.hasSubscribers) continue
    channel.publish(describe(context, event, origin))
  }
}

// The public shape of a native event (index.d.ts: WechatEvent, StoreEvent, CacheEvent).
function describe(context, event, origin) {
  if (event.state != null) {
    // A change of state, found during this call.
    if (event.channel === 'cache') return { context, state: event.state }
    if (event.channel === 'store') return { context, backend: event.backend, state: event.state, error: event.error ?? null }
    return { context, state: event.state, error: event.error ?? null }
  }
  const start = origin + event.startMs
  const timing = { start, end: start + event.durationMs, durationMs: event.durationMs }
  if (event.channel === 'wechat') {
    return {
      context,
      endpoint: event.name,
      outcome: event.outcome,
      httpStatus: event.httpStatus ?? null,
      errcode: event.errcode ?? null,
      ...timing,
    }
  }
  return { context, backend: event.backend, operation: event.name, outcome: event.outcome, ...timing }
}

module.exports = { createTelemetry, CHANNELS }
