'use strict'

// mpauthx's `stats()` and `health()` as Prometheus metrics, with prom-client 15. Copy this file
// into your project:
//
//   const { Registry } = require('prom-client')
//   const registry = new Registry()
//   registerMpauthxMetrics(auth, registry)
//   app.get('/metrics', async (req, res) => res.type(registry.contentType).send(await registry.metrics()))
//
// Nothing is counted twice: the numbers are the instance's own, read when Prometheus scrapes
// (collect callbacks), so the metrics cost nothing between scrapes. Every sample is labelled
// with `app_id` and `sku`; several instances (one per sku) can share a registry.

const { Counter, Gauge } = require('prom-client')

// The instances exported through each registry: a registry's metrics are registered once.
const exported = new WeakMap()

/**
 * Exports `auth` (an mpauthx instance) through `registry`. Returns a function that stops
 * exporting it, for an instance closed while the process goes on.
 */
function registerMpauthxMetrics(auth, registry) {
  let instances = exported.get(registry)
  if (instances === undefined) {
    instances = new Set()
    exported.set(registry, instances)
    defineMetrics(registry, instances)
  }
  instances.add(auth)
  return () => instances.delete(auth)
}

function defineMetrics(registry, instances) {
  // One snapshot per scrape, so that the metrics of one scrape agree with each other (the
  // histogram's count with the request counters): `registry.metrics()` calls every collect in
  // the same synchronous pass, and the snapshot is dropped right after it.
  let snapshot
  function read() {
    if (snapshot === undefined) {
      snapshot = [...instances].map((auth) => {
        const stats = auth.stats()
        return { labels: { app_id: stats.appId, sku: stats.sku }, stats, health: auth.health() }
      })
      queueMicrotask(() => (snapshot = undefined))
    }
    return snapshot
  }

  // A metric of `kind` whose samples `samples({ labels, stats, health })` lists as
  // [labels, value] pairs; prom-client's counters only grow by `inc`, so they are reset and
  // set to the instance's count on each scrape.
  function define(Kind, name, help, labelNames, samples) {
    return new Kind({
      name,
      help,
      labelNames: ['app_id', 'sku', ...labelNames],
      registers: [registry],
      collect() {
        this.reset()
        for (const instance of read()) {
          for (const [labels, value] of samples(instance)) {
            const all = { ...instance.labels, ...labels }
            if (Kind === Counter) this.inc(all, value)
            else this.set(all, value)
          }
        }
      },
    })
  }
  const counter = (name, help, labelNames, samples) => define(Counter, name, help, labelNames, samples)
  const gauge = (name, help, labelNames, samples) => define(Gauge, name, help, labelNames, samples)

  counter('mpauthx_calls_total', 'Calls of each mpauthx method, failed or not', ['method'], ({ stats }) =>
    Object.entries(stats.calls).map(([method, { calls }]) => [{ method }, calls]),
  )
  counter('mpauthx_call_failures_total', 'Failed calls of each mpauthx method, by status code', ['method', 'code'], ({ stats }) =>
    Object.entries(stats.calls).flatMap(([method, { failures }]) =>
      Object.entries(failures).map(([code, count]) => [{ method, code }, count]),
    ),
  )
  counter('mpauthx_wechat_requests_total', 'Requests to the WeChat API, by how they ended', ['outcome'], ({ stats }) =>
    Object.entries(stats.wechat.requests).map(([outcome, count]) => [{ outcome }, count]),
  )
  registerLatencyHistogram(registry, read)

  const STORE = { roundTrips: 'round_trips', retries: 'retries', failures: 'failures' }
  const STORE_HELP = {
    roundTrips: 'Round trips to each store',
    retries: 'Store operations run again after a dead connection',
    failures: 'Store round trips that failed',
  }
  for (const [field, suffix] of Object.entries(STORE)) {
    counter(`mpauthx_store_${suffix}_total`, STORE_HELP[field], ['backend'], ({ stats }) =>
      Object.entries(stats.store).map(([backend, numbers]) => [{ backend }, numbers[field]]),
    )
  }

  gauge('mpauthx_validation_cache_on', 'Whether the validation cache answers checks (1) or not (0)', [], ({ stats }) => [
    [{}, stats.validationCache.on ? 1 : 0],
  ])
  gauge('mpauthx_validation_cache_entries', 'Live tokens the validation cache holds', [], ({ stats }) => [
    [{}, stats.validationCache.entries],
  ])
  counter('mpauthx_validation_cache_hits_total', 'Lookups the validation cache answered from memory', [], ({ stats }) => [
    [{}, stats.validationCache.hits],
  ])
  counter('mpauthx_validation_cache_misses_total', 'Lookups the validation cache could not answer', [], ({ stats }) => [
    [{}, stats.validationCache.misses],
  ])
  counter('mpauthx_validation_cache_invalidations_total', 'Cached tokens Redis said changed', [], ({ stats }) => [
    [{}, stats.validationCache.invalidations],
  ])
  counter('mpauthx_reconnects_total', "Times the token store's Redis connection came back after it was down", [], ({ stats }) => [
    [{}, stats.connections.reconnects],
  ])
  counter('mpauthx_access_token_fetches_total', 'Access tokens fetched from WeChat', [], ({ stats }) => [[{}, stats.appToken.fetches]])
  counter('mpauthx_access_token_lock_waits_total', 'Waits for another process fetching the access token', [], ({ stats }) => [
    [{}, stats.appToken.lockWaits],
  ])
  // `unknown` (not used yet) counts as not up: alert on it only after traffic.
  gauge(
    'mpauthx_connection_up',
    'Whether each connection was up (1) or down or not used yet (0) when last used',
    ['connection'],
    ({ health }) => Object.entries(health.connections).map(([connection, { state }]) => [{ connection }, state === 'up' ? 1 : 0]),
  )
}

// The WeChat latency histogram. mpauthx keeps it (cumulative bucket counts in ms), and a
// prom-client Histogram can only be fed one observation at a time, so this is a metric object
// of its own: the registry renders whatever `get()` returns, `metricName` naming each sample
// (`_bucket` with `le`, `_sum`, `_count`), as prom-client's Histogram does.
function registerLatencyHistogram(registry, read) {
  const name = 'mpauthx_wechat_request_duration_seconds'
  const help = 'How long requests to the WeChat API took'
  const get = async () => {
    const values = []
    for (const { labels, stats } of read()) {
      const { le, counts, count, sum } = stats.wechat.latencyMs
      le.forEach((bound, i) => values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: bound / 1000 }, value: counts[i] }))
      values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: count })
      values.push({ metricName: `${name}_sum`, labels, value: sum / 1000 })
      values.push({ metricName: `${name}_count`, labels, value: count })
    }
    // `aggregator` for prom-client's AggregatorRegistry (cluster mode): buckets add up.
    return { name, help, type: 'histogram', values, aggregator: 'sum' }
  }
  // `reset` for `registry.resetMetrics()`: there is nothing of its own to reset.
  registry.registerMetric({ name, help, type: 'histogram', aggregator: 'sum', get, reset() {} })
}

module.exports = { registerMpauthxMetrics }
