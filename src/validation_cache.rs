//! Live tokens remembered in memory, so that most token checks are answered on the Node
//! thread without a round trip. The cache is only ever as fresh as Redis lets it be:
//!
//! - an entry is filled only from a read made over a connection with client-side tracking
//!   (`CLIENT TRACKING ON OPTIN` + `CLIENT CACHING YES`), so Redis sends an invalidation when
//!   the token changes, expires or is deleted, and the entry is dropped on receipt;
//! - a fill that an invalidation may have overtaken is thrown away: each fill carries a
//!   [`Ticket`] taken before the read, and any invalidation of the same shard, or a clear,
//!   since then voids it;
//! - a lost connection clears everything (the invalidations it would have carried are lost);
//! - answers from memory need a recent heartbeat: a PING reply proves every invalidation sent
//!   before it has arrived, and without one for [`LEASE`], nothing is answered from memory
//!   (a network cut that closes nothing);
//! - an entry never outlives the token's TTL, measured from before the read was sent.
//!
//! The counters that void fills (a generation bumped by every clear, a stamp per shard bumped
//! by every invalidation) and the lease live in [`Validity`], memory that JavaScript reads
//! directly: `index.js` remembers each token this cache vouched for together with the
//! counters it was vouched under, and answers from its own memory only while they are
//! unchanged and the lease holds, so that most checks cost no call into the binding at all.
//!
//! [`tracking`] holds the connection that fills the cache and carries the invalidations.

mod tracking;

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

pub use tracking::{read_untracked, Tracking};

/// How long a heartbeat reply lets the cache answer, counted from when the PING was sent.
pub const LEASE: Duration = Duration::from_millis(500);

/// Invalidations are counted per shard of the token space, so that a busy Redis (other users'
/// tokens changing all the time) rarely voids an unrelated fill.
pub const SHARDS: usize = 256;

/// Where JavaScript reads the lease (an `f64`) in [`Validity`]; lib.rs exports it.
pub const LEASE_OFFSET: usize = std::mem::offset_of!(Validity, lease_until);

/// Where JavaScript reads the counters (`u32`s: the generation, then a stamp per shard) in
/// [`Validity`]; lib.rs exports it.
pub const COUNTERS_OFFSET: usize = std::mem::offset_of!(Validity, generation);
const _: () = assert!(std::mem::offset_of!(Validity, stamps) == COUNTERS_OFFSET + 4);

/// The cache's counters and lease, laid out for JavaScript to read without a call:
/// `new Float64Array(buffer, LEASE_OFFSET, 1)` is the lease (on `performance.now()`'s clock)
/// and `new Uint32Array(buffer, COUNTERS_OFFSET, 1 + SHARDS)` the generation followed by the
/// shard stamps (validation-cache.js reads these constants from the binding).
/// Written only under the cache's lock; read by JavaScript at any time.
#[repr(C)]
pub struct Validity {
  /// Until when answers from memory are allowed, on JavaScript's `performance.now()` clock
  /// (monotonic, as `Instant` is: a step of the wall clock never stretches it), as `f64` bits.
  lease_until: AtomicU64,
  generation: AtomicU32,
  stamps: [AtomicU32; SHARDS],
  /// `performance.now()` less the ms since `origin`, measured once (see
  /// [`Validity::calibrate`]), as `f64` bits; NaN before. The two clocks share no epoch.
  js_offset_ms: AtomicU64,
  origin: Instant,
}

impl Validity {
  fn new() -> Self {
    Self {
      lease_until: AtomicU64::new(0f64.to_bits()),
      generation: AtomicU32::new(0),
      stamps: std::array::from_fn(|_| AtomicU32::new(0)),
      js_offset_ms: AtomicU64::new(f64::NAN.to_bits()),
      origin: Instant::now(),
    }
  }

  /// Ties `Instant` to JavaScript's `performance.now()`, read as `js_now_ms` just before;
  /// done once per instance, before anything is answered from memory.
  pub fn calibrate(&self, js_now_ms: f64) {
    let offset = js_now_ms - self.since_origin_ms(Instant::now());
    let unset = f64::NAN.to_bits();
    let _ = self.js_offset_ms.compare_exchange(
      unset,
      offset.to_bits(),
      Ordering::AcqRel,
      Ordering::Acquire,
    );
  }

  /// `at` on JavaScript's `performance.now()` clock; `None` before [`Validity::calibrate`].
  pub fn js_ms(&self, at: Instant) -> Option<f64> {
    let offset = f64::from_bits(self.js_offset_ms.load(Ordering::Acquire));
    (!offset.is_nan()).then(|| offset + self.since_origin_ms(at))
  }

  fn since_origin_ms(&self, at: Instant) -> f64 {
    match at.checked_duration_since(self.origin) {
      Some(after) => after.as_secs_f64() * 1000.0,
      None => -(self.origin - at).as_secs_f64() * 1000.0,
    }
  }
}

/// The counters under which the cache vouched for a token: an answer from memory holds while
/// the generation and the stamp of the token's shard are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vouched {
  pub generation: u32,
  pub shard: usize,
  pub stamp: u32,
}

/// What the cache knows of a live token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedToken {
  /// Issue time, ms since the epoch.
  pub ctime_ms: u64,
  /// When the token expires in Redis, at the latest; `None` for a token without a TTL.
  pub expires_at: Option<Instant>,
}

impl CachedToken {
  /// Whole seconds left at `now`, rounded as Redis's `TTL` rounds.
  #[cfg(test)]
  pub fn expires_in(&self, now: Instant) -> Option<u64> {
    self
      .expires_at
      .map(|at| (at.saturating_duration_since(now).as_millis() as u64 + 500) / 1000)
  }
}

/// Taken before a read is sent; a fill with a voided ticket is dropped.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
  vouched: Vouched,
  sent_at: Instant,
}

pub struct ValidationCache {
  entries: Mutex<LruCache<Box<str>, CachedToken>>,
  validity: Arc<Validity>,
  origin: Instant,
  /// Until when answers from memory are allowed, in ms since `origin` (the lease on the
  /// monotonic clock, for the native side).
  confirmed_until_ms: AtomicU64,
  /// Keys Redis said changed, counted for `stats()`.
  invalidations: AtomicU64,
}

impl ValidationCache {
  /// A cache of at most `capacity` tokens; the least recently checked go first.
  pub fn new(capacity: NonZeroUsize) -> Self {
    Self {
      entries: Mutex::new(LruCache::new(capacity)),
      validity: Arc::new(Validity::new()),
      origin: Instant::now(),
      confirmed_until_ms: AtomicU64::new(0),
      invalidations: AtomicU64::new(0),
    }
  }

  /// The counters and lease, for JavaScript to read.
  pub fn validity(&self) -> Arc<Validity> {
    Arc::clone(&self.validity)
  }

  /// The live token, if the cache may answer for it at `now`, with the counters it is
  /// vouched for under.
  pub fn get(&self, token: &str, now: Instant) -> Option<(CachedToken, Vouched)> {
    if self.ms(now) >= self.confirmed_until_ms.load(Ordering::Acquire) {
      return None;
    }
    let mut entries = self.lock();
    let found = *entries.get(token)?;
    if found.expires_at.is_some_and(|at| now >= at) {
      entries.pop(token);
      return None;
    }
    Some((found, self.vouched(token)))
  }

  /// To be taken before the read of `token` is sent.
  pub fn ticket(&self, token: &str) -> Ticket {
    let _entries = self.lock();
    Ticket {
      vouched: self.vouched(token),
      sent_at: Instant::now(),
    }
  }

  /// The counters of `token`'s shard now; read under the lock.
  fn vouched(&self, token: &str) -> Vouched {
    let shard = shard(token);
    Vouched {
      generation: self.validity.generation.load(Ordering::Acquire),
      shard,
      stamp: self.validity.stamps[shard].load(Ordering::Acquire),
    }
  }

  /// Remembers what a tracked read found, unless something may have changed it since the
  /// ticket was taken. `pttl_ms` is Redis's `PTTL`: -1 for no TTL, -2 for no key.
  pub fn fill(&self, ticket: Ticket, token: &str, ctime_ms: u64, pttl_ms: i64) {
    let expires_at = match pttl_ms {
      -1 => None,
      ms if ms > 0 => Some(ticket.sent_at + Duration::from_millis(ms as u64)),
      _ => return,
    };
    let mut entries = self.lock();
    if self.vouched(token) == ticket.vouched {
      entries.put(
        token.into(),
        CachedToken {
          ctime_ms,
          expires_at,
        },
      );
    }
  }

  /// Drops what Redis says changed (keys that are not UTF-8 are never tokens we keep).
  pub fn invalidate<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
    let mut entries = self.lock();
    for key in keys {
      self.invalidations.fetch_add(1, Ordering::Relaxed);
      if let Ok(token) = std::str::from_utf8(key) {
        entries.pop(token);
        self.validity.stamps[shard(token)].fetch_add(1, Ordering::AcqRel);
      }
    }
  }

  /// Forgets everything, and voids every fill in flight and every answer JavaScript holds.
  pub fn clear(&self) {
    let mut entries = self.lock();
    entries.clear();
    self.validity.generation.fetch_add(1, Ordering::AcqRel);
  }

  /// A heartbeat sent at `sent_at` came back: answers are allowed for [`LEASE`] from then.
  pub fn confirm(&self, sent_at: Instant) {
    let until = self.ms(sent_at + LEASE);
    self.confirmed_until_ms.fetch_max(until, Ordering::AcqRel);
    // JavaScript compares with `performance.now()`. Replaced, not raised to the maximum: the
    // heartbeat confirms in order, and no earlier lease, however it came, outlives this one.
    if let Some(lease_end) = self.validity.js_ms(sent_at + LEASE) {
      self
        .validity
        .lease_until
        .store(lease_end.to_bits(), Ordering::Release);
    }
  }

  /// How many tokens are remembered.
  pub fn len(&self) -> usize {
    self.lock().len()
  }

  /// How many keys Redis said changed since the cache began.
  pub fn invalidations(&self) -> u64 {
    self.invalidations.load(Ordering::Relaxed)
  }

  #[cfg(test)]
  pub fn is_empty(&self) -> bool {
    self.len() == 0
  }

  fn ms(&self, at: Instant) -> u64 {
    at.saturating_duration_since(self.origin).as_millis() as u64 + 1
  }

  fn lock(&self) -> MutexGuard<'_, LruCache<Box<str>, CachedToken>> {
    self.entries.lock().unwrap_or_else(|e| e.into_inner())
  }
}

fn shard(token: &str) -> usize {
  BuildHasherDefault::<DefaultHasher>::default().hash_one(token) as usize % SHARDS
}

#[cfg(test)]
mod tests {
  use super::*;

  fn cache(capacity: usize) -> ValidationCache {
    let cache = ValidationCache::new(NonZeroUsize::new(capacity).unwrap());
    cache.confirm(Instant::now());
    cache
  }

  #[test]
  fn a_filled_token_is_answered_until_its_ttl() {
    let cache = cache(10);
    let ticket = cache.ticket("u|s|t");
    cache.fill(ticket, "u|s|t", 42, 60_000);
    let now = Instant::now();
    assert_eq!(cache.get("u|s|t", now).map(|(t, _)| t.ctime_ms), Some(42));
    assert_eq!(cache.get("u|s|t", now).unwrap().0.expires_in(now), Some(60));
    // Expiry is measured from before the read was sent; checked here within the lease.
    let ticket = cache.ticket("u|s|short");
    cache.fill(ticket, "u|s|short", 42, 100);
    let expiry = ticket.sent_at + Duration::from_millis(100);
    assert!(cache
      .get("u|s|short", expiry - Duration::from_millis(1))
      .is_some());
    assert_eq!(cache.get("u|s|short", expiry), None);
    assert_eq!(cache.len(), 1, "an expired entry is dropped when met");
  }

  #[test]
  fn an_invalidation_drops_the_entry_and_voids_fills_in_flight() {
    let cache = cache(10);
    cache.fill(cache.ticket("a"), "a", 1, -1);
    let in_flight = cache.ticket("b");
    cache.invalidate([&b"a"[..], &b"b"[..]]);
    cache.fill(in_flight, "b", 1, -1);
    let now = Instant::now();
    assert_eq!(cache.get("a", now), None);
    assert_eq!(cache.get("b", now), None);
    cache.fill(cache.ticket("b"), "b", 1, -1);
    assert!(
      cache.get("b", now).is_some(),
      "a fill after the invalidation counts"
    );
  }

  #[test]
  fn an_invalidation_or_a_clear_changes_the_counters_an_answer_was_vouched_under() {
    let cache = cache(10);
    cache.fill(cache.ticket("a"), "a", 1, -1);
    let (_, before) = cache.get("a", Instant::now()).unwrap();
    cache.invalidate([&b"other"[..]]);
    cache.fill(cache.ticket("a"), "a", 1, -1);
    let (_, after) = cache.get("a", Instant::now()).unwrap();
    assert_eq!(before.generation, after.generation);
    cache.invalidate([&b"a"[..]]);
    let stamp = cache.validity.stamps[before.shard].load(Ordering::Acquire);
    assert_ne!(stamp, after.stamp, "JavaScript sees the invalidation");
    cache.clear();
    assert_ne!(
      cache.validity.generation.load(Ordering::Acquire),
      before.generation
    );
  }

  #[test]
  fn the_lease_is_published_on_the_calibrated_monotonic_clock_and_replaced() {
    let cache = ValidationCache::new(NonZeroUsize::new(1).unwrap());
    let lease = || f64::from_bits(cache.validity.lease_until.load(Ordering::Acquire));
    cache.confirm(Instant::now());
    assert_eq!(lease(), 0.0, "nothing is published before calibration");
    // JavaScript's clock reads 1000 ms now (its origin, not the epoch).
    cache.validity.calibrate(1000.0);
    let sent = Instant::now();
    cache.confirm(sent);
    let first = lease();
    assert!(
      first >= 1000.0 + LEASE.as_millis() as f64
        && first < 1000.0 + LEASE.as_millis() as f64 + 50.0
    );
    // A later calibration changes nothing; an earlier heartbeat's lease replaces a later one.
    cache.validity.calibrate(1e9);
    cache.confirm(sent + Duration::from_millis(100));
    cache.confirm(sent);
    assert_eq!(lease(), first);
  }

  #[test]
  fn a_clear_voids_every_fill_in_flight() {
    let cache = cache(10);
    let in_flight = cache.ticket("a");
    cache.clear();
    cache.fill(in_flight, "a", 1, -1);
    assert!(cache.is_empty());
  }

  #[test]
  fn nothing_is_answered_without_a_recent_heartbeat() {
    let cache = ValidationCache::new(NonZeroUsize::new(10).unwrap());
    cache.fill(cache.ticket("a"), "a", 1, -1);
    assert_eq!(cache.get("a", Instant::now()), None, "never confirmed");
    let sent = Instant::now();
    cache.confirm(sent);
    assert!(cache.get("a", sent).is_some());
    assert_eq!(cache.get("a", sent + LEASE), None, "lease over");
  }

  #[test]
  fn the_cache_holds_at_most_its_capacity() {
    let cache = cache(3);
    for i in 0..100 {
      let token = format!("u{i}|s|t");
      cache.fill(cache.ticket(&token), &token, 1, -1);
    }
    assert_eq!(cache.len(), 3);
    assert!(cache.get("u99|s|t", Instant::now()).is_some());
  }

  #[test]
  fn a_missing_key_is_never_cached() {
    let cache = cache(3);
    cache.fill(cache.ticket("a"), "a", 1, -2);
    cache.fill(cache.ticket("b"), "b", 1, 0);
    assert!(cache.is_empty());
  }
}
