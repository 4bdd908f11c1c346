//! The validation cache's connection: token checks read over it with client-side tracking
//! (RESP3), so Redis tells this instance when a token it remembers changes, and a heartbeat
//! proves the connection alive; writes go over the store's other connection.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};

use super::{CachedToken, ValidationCache, Validity, Vouched, LEASE};
use crate::config::{RedisTarget, RedisTls};
use crate::error::{Error, Result};
use crate::store::redis::{per_key, scripts, Redis, RedisConnection};
use crate::telemetry::call;
use crate::token;

/// How often the tracking connection is proven alive (and its invalidations delivered).
const HEARTBEAT: Duration = Duration::from_millis(100);

/// The connection that carries invalidations, and the cache it keeps exact.
pub struct Tracking {
  redis: Redis,
  cache: Arc<ValidationCache>,
  heartbeat: Once,
  /// Tracked reads in a row that the server refused in words (see [`MAX_REFUSALS`]).
  refusals: AtomicU32,
  /// Tracked reads in a row that failed otherwise (a reply timeout, a dropped connection):
  /// the next is tried only after a backoff that grows with them.
  failures: AtomicU32,
  /// Until when tracked reads are not tried: ms since `started`.
  retry_at_ms: AtomicU64,
  started: Instant,
  /// Why the cache was turned off, until a call reports it (once) to diagnostics.
  off_notice: Mutex<Option<String>>,
}

/// Tracked reads the server refused in a row (`NOPERM` for `CLIENT`, an unknown `HELLO` or
/// `CLIENT TRACKING`: a server before 6.0, an ACL without `client`, a proxy without RESP3)
/// after which the instance stops trying: it checks every token with the store. A reply that
/// does not come (a stalled server) or a dropped connection is no refusal: tracked reads
/// resume after a backoff of [`BACKOFF`] doubling up to [`MAX_BACKOFF`].
const MAX_REFUSALS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A token's issue time (ms since the epoch) and `PTTL`, as a read of a live token finds them.
pub type LiveRead = (u64, i64);

/// What a tracked read of a token found.
enum Read {
  /// A live token: issue time (ms since the epoch) and `PTTL`.
  Live(u64, i64),
  NotLive,
  /// Redis refused `CLIENT TRACKING` or `CLIENT CACHING` (an ACL or a proxy without
  /// `CLIENT`): ask again without tracking, and count a refusal.
  Refused,
  /// The tracked read answered otherwise (a redirection inside the pipeline): ask again
  /// without tracking.
  Untracked,
}

impl Tracking {
  /// The tracking connection to `target`, keeping a cache of `capacity` tokens exact;
  /// connected on first use.
  pub fn new(
    target: &RedisTarget, redis_pass: Option<&str>, redis_tls: &RedisTls, capacity: NonZeroUsize,
  ) -> Result<Arc<Self>> {
    let cache = Arc::new(ValidationCache::new(capacity));
    let handler = Arc::clone(&cache);
    let push = Arc::new(move |push: PushInfo| on_push(&handler, push));
    Ok(Arc::new(Tracking {
      redis: Redis::new(target, redis_pass, redis_tls, Some(push))?,
      cache,
      heartbeat: Once::new(),
      refusals: AtomicU32::new(0),
      failures: AtomicU32::new(0),
      retry_at_ms: AtomicU64::new(0),
      started: Instant::now(),
      off_notice: Mutex::new(None),
    }))
  }

  /// What the cache may answer for `token` now, without a round trip.
  pub fn cached(&self, token: &str) -> Option<(CachedToken, Vouched)> {
    self.cache.get(token, Instant::now())
  }

  /// The cache's counters and lease, for JavaScript to read.
  pub fn validity(&self) -> Arc<Validity> {
    self.cache.validity()
  }

  /// Drops a token this instance deleted, replaced or extended, before the call resolves (the
  /// invalidation Redis sends may arrive just after).
  pub fn forget(&self, token: &str) {
    self.cache.invalidate([token.as_bytes()]);
  }

  /// Stops answering anything from memory, while the connection stays open for the calls
  /// still in flight.
  pub fn forget_all(&self) {
    self.cache.clear();
  }

  /// Drops the connection and forgets every cached token.
  pub fn close(&self) {
    self.redis.close();
    self.cache.clear();
  }

  /// `(live entries, invalidations, on)`, for `stats()` and `health()`.
  pub fn stats(&self) -> (usize, u64, bool) {
    (self.cache.len(), self.cache.invalidations(), !self.is_off())
  }

  /// Why the validation cache was just turned off for good, once: for the diagnostics of the
  /// call that finds out.
  pub fn off_notice(&self) -> Option<String> {
    self.off_notice.lock().ok()?.take()
  }

  /// Reads `tokens` over the tracking connection (see [`Tracking::read`]), `store` being the
  /// store's own connection; `None` when the tracked read failed where an untracked one may
  /// not, or is not tried now: the caller then reads without tracking, and after
  /// [`MAX_REFUSALS`] such failures in a row the cache is turned off for good.
  pub async fn try_read(
    self: &Arc<Self>, store: &Redis, tokens: &[&str],
  ) -> Result<Option<Vec<Option<LiveRead>>>> {
    if !self.usable() {
      return Ok(None);
    }
    match self.read(store, tokens).await {
      Ok((reads, refused)) => {
        match refused {
          true => self.refused("Redis refused CLIENT TRACKING or CLIENT CACHING"),
          false => self.answered(),
        }
        Ok(Some(reads))
      }
      Err(err) if err.is_disconnected() => {
        self.forget_master();
        self.failed();
        Err(err)
      }
      Err(err) if err.is_refusal() => {
        // Counted only once the other connection answers: the store itself works.
        let _: Value = redis::cmd("PING")
          .query_async(&mut store.get().await?)
          .await?;
        self.refused("Redis refused the tracking connection (RESP3 or CLIENT)");
        Ok(None)
      }
      Err(_) => {
        self.failed();
        Ok(None)
      }
    }
  }

  /// Reads each token, and remembers the live ones: for each, its issue time (ms since the
  /// epoch) and `PTTL`, or `None` when it is not live. Tokens are first read without
  /// tracking, on the store's connection: a made-up or dead token never enters Redis's
  /// tracking table, which so grows with live tokens only (each entry ends when its token
  /// changes or expires). Only the live ones are read again over the tracking connection,
  /// tracked, and that second answer is the one given and remembered.
  /// Says too whether Redis refused tracking in words.
  async fn read(
    self: &Arc<Self>, store: &Redis, tokens: &[&str],
  ) -> Result<(Vec<Option<LiveRead>>, bool)> {
    let mut reads = vec![None; tokens.len()];
    let candidates = token::well_formed(tokens);
    if candidates.is_empty() {
      return Ok((reads, false));
    }
    let checked: Vec<&str> = candidates.iter().map(|&i| tokens[i]).collect();
    let first: Vec<redis::RedisResult<Value>> =
      per_key(&mut store.get().await?, &checked, |token| {
        scripts::READ_TOKEN.eval(&[token])
      })
      .await?;
    let mut live = Vec::new();
    for (&i, reply) in candidates.iter().zip(first) {
      match parse_read(&reply?) {
        Some(Read::Live(..)) => live.push(i),
        Some(_) => {}
        None => {
          return Err(Error::Store {
            public: "Redis refused a command",
            why: "the token read answered an error".into(),
          })
        }
      }
    }
    if live.is_empty() {
      return Ok((reads, false));
    }
    let mut redis = self.connection().await?;
    let tickets: Vec<_> = live.iter().map(|&i| self.cache.ticket(tokens[i])).collect();
    // Each read is preceded by `CLIENT CACHING YES`, and the pipeline by `CLIENT TRACKING ON
    // OPTIN`, so that a connection the client re-made is tracked again before it reads.
    let tracked_pipe = |tokens: &mut dyn Iterator<Item = &str>| {
      let mut pipe = redis::pipe();
      pipe.cmd("CLIENT").arg("TRACKING").arg("ON").arg("OPTIN");
      for token in tokens {
        pipe.cmd("CLIENT").arg("CACHING").arg("YES");
        pipe.add_command(scripts::READ_TOKEN.eval(&[token]));
      }
      pipe
    };
    let found: Vec<Read> = if redis.is_cluster() {
      // Tokens hash to different slots: one pipeline each, sent to the token's node.
      let reads = live.iter().map(|&i| {
        let mut redis = redis.clone();
        let pipe = tracked_pipe(&mut std::iter::once(tokens[i]));
        async move { redis.pipeline_to_node_of(tokens[i], pipe).await }
      });
      let mut found = Vec::with_capacity(live.len());
      for replies in futures_util::future::join_all(reads).await {
        match replies?.as_slice() {
          [tracking, caching, read] => found.push(tracked_read(tracking, caching, read)),
          _ => found.push(Read::Untracked),
        }
      }
      found
    } else {
      let pipe = tracked_pipe(&mut live.iter().map(|&i| tokens[i]));
      let replies: Vec<Value> = pipe.query_async(&mut redis).await?;
      match replies.split_first() {
        Some((tracking, rest)) if rest.len() == 2 * live.len() => rest
          .chunks(2)
          .map(|pair| tracked_read(tracking, &pair[0], &pair[1]))
          .collect(),
        _ => live.iter().map(|_| Read::Untracked).collect(),
      }
    };
    let mut refused = false;
    for ((&i, ticket), read) in live.iter().zip(tickets).zip(found) {
      reads[i] = match read {
        Read::Live(ctime, pttl) => {
          self.cache.fill(ticket, tokens[i], ctime, pttl);
          Some((ctime, pttl))
        }
        Read::NotLive => None,
        // Read again without tracking, as one command, which follows a redirection (and so
        // teaches a cluster connection where the slot went); the answer is not remembered.
        Read::Refused | Read::Untracked => {
          refused |= matches!(read, Read::Refused);
          read_untracked(&mut redis, tokens[i]).await?
        }
      };
    }
    Ok((reads, refused))
  }

  /// After a lost connection, with Sentinel: the next read asks the sentinels for the master
  /// again, and nothing remembered over the old connection is answered any more.
  fn forget_master(&self) {
    if self.redis.forget_master() {
      self.cache.clear();
    }
  }

  /// Whether the server refused tracking often enough for the cache to be off for good
  /// (see [`MAX_REFUSALS`]).
  pub fn is_off(&self) -> bool {
    self.refusals.load(Ordering::Acquire) >= MAX_REFUSALS
  }

  /// Whether a tracked read is tried now: the cache is on and no backoff runs.
  fn usable(&self) -> bool {
    !self.is_off() && self.elapsed_ms() >= self.retry_at_ms.load(Ordering::Acquire)
  }

  fn elapsed_ms(&self) -> u64 {
    self.started.elapsed().as_millis() as u64
  }

  /// A tracked read answered: refusals and failures start counting again from zero.
  fn answered(&self) {
    self.refusals.store(0, Ordering::Release);
    self.failures.store(0, Ordering::Release);
  }

  /// The server refused tracking in words; the last of [`MAX_REFUSALS`] in a row turns the
  /// cache off, with a notice for diagnostics.
  fn refused(&self, why: &str) {
    if self.refusals.fetch_add(1, Ordering::AcqRel) + 1 == MAX_REFUSALS {
      self.cache.clear();
      call::cache_off();
      if let Ok(mut notice) = self.off_notice.lock() {
        *notice = Some(format!(
          "validation cache off: {why} {MAX_REFUSALS} times in a row; every check goes to Redis"
        ));
      }
    }
  }

  /// A tracked read failed without a refusal (a timeout, a dropped connection): the next is
  /// tried after a backoff.
  fn failed(&self) {
    let failures = self.failures.fetch_add(1, Ordering::AcqRel).min(16);
    let backoff = BACKOFF.saturating_mul(1 << failures).min(MAX_BACKOFF);
    let retry_at = self.elapsed_ms() + backoff.as_millis() as u64;
    self.retry_at_ms.store(retry_at, Ordering::Release);
  }

  /// The tracking connection; the first use starts the heartbeat that lets the cache answer.
  async fn connection(self: &Arc<Self>) -> Result<RedisConnection> {
    let redis = self.redis.get().await?;
    self.heartbeat.call_once(|| {
      tokio::spawn(heartbeat(Arc::downgrade(self)));
    });
    Ok(redis)
  }
}

/// Reads a token without tracking (`read_token.lua`), as one command: its issue time and
/// `PTTL` when it is live.
pub async fn read_untracked(redis: &mut RedisConnection, token: &str) -> Result<Option<LiveRead>> {
  let found: Value = scripts::READ_TOKEN.key(token).invoke_async(redis).await?;
  Ok(parse_read(&found).and_then(Read::live))
}

/// Proves the tracking connection alive every [`HEARTBEAT`]: a PING's reply comes after every
/// invalidation Redis sent before it, so answers from memory stay allowed for a [`LEASE`]
/// from when it was sent. Ends when the store is closed or dropped.
async fn heartbeat(tracking: Weak<Tracking>) {
  loop {
    let Some(current) = tracking.upgrade() else {
      return;
    };
    if current.is_off() {
      return;
    }
    let sent = Instant::now();
    match current.redis.get().await {
      Ok(mut redis) => {
        let ping = redis::cmd("PING");
        match tokio::time::timeout(LEASE, ping.query_async::<Value>(&mut redis)).await {
          Ok(Ok(_)) => current.cache.confirm(sent),
          _ => current.forget_master(),
        }
      }
      Err(Error::Closed) => return,
      Err(_) => {}
    }
    drop(current);
    tokio::time::sleep(HEARTBEAT.saturating_sub(sent.elapsed())).await;
  }
}

/// Applies a push of the tracking connection to the cache: an invalidation drops its keys
/// (a null list, after FLUSHALL or FLUSHDB, drops everything), and a lost connection drops
/// everything, since the invalidations it would have carried are lost with it.
fn on_push(cache: &ValidationCache, push: PushInfo) {
  match push.kind {
    PushKind::Invalidate => match push.data.first() {
      Some(Value::Array(keys)) => cache.invalidate(keys.iter().filter_map(|key| match key {
        Value::BulkString(bytes) => Some(bytes.as_slice()),
        _ => None,
      })),
      _ => cache.clear(),
    },
    PushKind::Disconnection => cache.clear(),
    _ => {}
  }
}

/// Reads the replies of one tracked read: `CLIENT TRACKING`, `CLIENT CACHING`, then the read.
fn tracked_read(tracking: &Value, caching: &Value, read: &Value) -> Read {
  let refused = |value: &Value| matches!(value, Value::ServerError(_));
  if refused(tracking) || refused(caching) {
    return Read::Refused;
  }
  parse_read(read).unwrap_or(Read::Untracked)
}

impl Read {
  /// Issue time and `PTTL` of a live token.
  fn live(self) -> Option<LiveRead> {
    match self {
      Read::Live(ctime, pttl) => Some((ctime, pttl)),
      Read::NotLive | Read::Refused | Read::Untracked => None,
    }
  }
}

/// Reads the reply of `read_token.lua` (RESP2's nil or RESP3's false for a key that is not a
/// token); `None` for an error reply.
fn parse_read(read: &Value) -> Option<Read> {
  match read {
    Value::Array(found) => match found.as_slice() {
      [ctime, Value::Int(pttl)] => {
        match redis::from_redis_value_ref::<String>(ctime).map(|ctime| ctime.parse::<u64>()) {
          Ok(Ok(ctime)) => Some(Read::Live(ctime, *pttl)),
          _ => Some(Read::NotLive),
        }
      }
      _ => Some(Read::NotLive),
    },
    Value::Nil | Value::Boolean(false) => Some(Read::NotLive),
    _ => None,
  }
}
