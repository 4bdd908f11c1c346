'use strict'

// The Node-thread half of the validation cache (src/validation_cache.rs). It remembers each
// token the native cache vouched for, with the counters it was vouched under, and answers
// from its own memory only while those counters are unchanged, the lease that the heartbeat
// renews holds and the token has time left (with `slidingTtl`, more than half its TTL, so
// that checks of a token in use reach the store, which extends it). The native side bumps
// the counters on every invalidation Redis sends, every token this instance replaces or
// revokes, every lost connection and `close()`; it writes them to memory this side reads
// directly, so an answer from here costs no call into the binding.

// Where that memory (`Validity` in src/validation_cache.rs) keeps the lease and the counters,
// as the native side declares them. binding.js is loaded (index.js loads it first).
const { VALIDITY_LEASE_OFFSET, VALIDITY_COUNTERS_OFFSET, VALIDITY_SHARDS } = require('./binding.js')
const { extractUserId, extractSku } = require('./token.js')

/**
 * Tokens the native cache vouched for, bounded like it: the oldest goes first. `ownSku` is the
 * instance's own, whose tokens checks extend with `slidingTtl`.
 */
function createValidationCache(native, ownSku) {
  // Times cross the boundary on `performance.now()`'s clock, monotonic as the native side's
  // is: a step of the wall clock never stretches how long anything is answered from memory.
  const buffer = native.validity(performance.now())
  // Without a cache nothing is looked up, so nothing is counted.
  const counts = { hits: 0, misses: 0 }
  if (buffer === null) {
    return {
      enabled: false,
      lookup: () => undefined,
      lookupBearer: () => undefined,
      secondsLeft: () => null,
      checkedAt: 0,
      counts,
      outcome: 'miss',
    }
  }
  const capacity = native.validationCacheSize
  // With `slidingTtl`, a token of this sku with less than this left (ms) is not answered from
  // memory, so that its check reaches the store, which gives it its whole TTL back.
  const slidingWindow = native.slidingWindowMs
  // The lease on `performance.now()`'s clock; the generation, then the stamp of each shard.
  const lease = new Float64Array(buffer, VALIDITY_LEASE_OFFSET, 1)
  const counters = new Uint32Array(buffer, VALIDITY_COUNTERS_OFFSET, 1 + VALIDITY_SHARDS)
  // Keyed by `slot(token)`, not by the token: a token comes from a request header as a new
  // string each time, and a Map keyed by strings would hash all of it on every lookup, which
  // costs more than the rest of a check. An entry holds its token, compared in full.
  const entries = new Map()

  // What the native cache vouches for now, remembered here; `undefined` for a token the
  // store must be asked about. Only a vouched token replaces an entry, so a token that
  // merely shares a slot with a remembered one never pushes it out.
  function vouch(token, key, now) {
    // A token with whitespace is never remembered, so that a remembered token can be taken
    // from `Bearer <token>` without parsing the header (see authenticate.js).
    const vouched = WHITESPACE.test(token) ? null : native.cachedToken(token)
    if (vouched === null) return undefined
    const sku = extractSku(token)
    const entry = {
      token,
      // The header that carries it, as one flat string: a header from Node's parser compares
      // with it in a few instructions, where a token sliced out of a header compares through a
      // call into V8's runtime.
      bearer: flat(`Bearer ${token}`),
      userId: extractUserId(token),
      sku,
      ctime: vouched.ctime,
      expiresAt: vouched.expiresAt ?? Infinity,
      // Until when it is answered from memory: its expiry, less the sliding window.
      answerUntil: (vouched.expiresAt ?? Infinity) - (sku === ownSku ? slidingWindow : 0),
      generation: vouched.generation,
      counter: 1 + vouched.shard,
      stamp: vouched.stamp,
    }
    if (now >= entry.answerUntil) return undefined
    entries.delete(key)
    if (entries.size >= capacity) entries.delete(entries.keys().next().value)
    entries.set(key, entry)
    return entry
  }

  const cache = {
    enabled: true,

    /**
     * `{ token, userId, sku, ctime, expiresAt }` of a live token (`expiresAt` on `performance.now()`'s
     * clock, `Infinity` without a TTL), or `undefined` when the store must be asked.
     * @param {string} token
     */
    lookup(token) {
      const now = (cache.checkedAt = performance.now())
      if (now >= lease[0]) return counted(undefined)
      const key = slot(token, 0)
      const entry = entries.get(key)
      if (entry === undefined || entry.token !== token) return counted(vouch(token, key, now))
      return counted(answer(entry, key, now))
    },

    /**
     * `lookup` of the token of an `Authorization` header that starts with `Bearer `.
     * @param {string} authorization
     */
    lookupBearer(authorization) {
      const now = (cache.checkedAt = performance.now())
      if (now >= lease[0]) return counted(undefined)
      const key = slot(authorization, BEARER.length)
      const entry = entries.get(key)
      if (entry === undefined) return counted(vouch(authorization.slice(BEARER.length), key, now))
      if (entry.bearer !== authorization) {
        const token = authorization.slice(BEARER.length)
        if (entry.token !== token) return counted(vouch(token, key, now))
      }
      return counted(answer(entry, key, now))
    },

    /**
     * Whole seconds a remembered token had left when it was looked up, rounded as Redis's TTL
     * rounds them; `null` without a TTL.
     */
    secondsLeft: (entry) => (entry.expiresAt === Infinity ? null : Math.floor((entry.expiresAt - cache.checkedAt + 500) / 1000)),

    /** When the last lookup read the clock (`performance.now()`). */
    checkedAt: 0,

    /** Lookups answered and not, for `stats()`. */
    counts,

    /**
     * How the last lookup ended, for the `mpauthx:cache` channel: `hit`, `miss`, or
     * `invalidated` (the token was remembered, and changed or revoked since).
     */
    outcome: 'miss',
  }

  // Whether the lookup in progress found its remembered entry invalidated.
  let invalidated = false

  // A lookup's answer, counted.
  function counted(entry) {
    if (entry === undefined) {
      counts.misses++
      cache.outcome = invalidated ? 'invalidated' : 'miss'
    } else {
      counts.hits++
      cache.outcome = 'hit'
    }
    invalidated = false
    return entry
  }

  // A remembered entry while it may still be answered for, else what the native cache says.
  function answer(entry, key, now) {
    if (now < entry.answerUntil && counters[0] === entry.generation && counters[entry.counter] === entry.stamp) {
      return entry
    }
    entries.delete(key)
    // Redis (or this instance) changed or revoked it since it was remembered.
    if (counters[0] !== entry.generation || counters[entry.counter] !== entry.stamp) invalidated = true
    return vouch(entry.token, key, now)
  }

  return cache
}

const BEARER = 'Bearer '

// A small integer from the length and the last characters of the token that `string` holds
// from `start` on (its random hex), cheap to compute and to look up; different tokens may
// share one.
function slot(string, start) {
  let key = string.length - start
  for (let i = Math.max(start, string.length - 8); i < string.length; i++) key = (key * 31 + string.charCodeAt(i)) | 0
  return key
}

// `string` as one flat (sequential) string, not a concatenation of two, when it is Latin-1
// (as headers from Node's parser are): a round trip through a Buffer, once per remembered
// token, gives a new sequential string, as `latin1Slice` would, at the same cost (~160 ns).
const flat = (string) => (LATIN1.test(string) ? Buffer.from(string, 'latin1').toString('latin1') : string)
// Every code unit of Latin-1, U+0000 included.
// oxlint-disable-next-line no-control-regex
const LATIN1 = /^[\x00-\xff]*$/

const WHITESPACE = /\s/

module.exports = { createValidationCache }
