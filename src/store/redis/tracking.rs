//! The validation cache's connection: token checks read over it with client-side tracking
//! (RESP3), so Redis tells this instance when a token it remembers changes, and a heartbeat
//! proves the connection alive; writes go over the store's other connection.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};

use super::connection::{Connector, RedisConnection};
use super::{per_token, well_formed, RedisTokens};
use crate::config::{RedisTarget, RedisTls};
use crate::error::{Error, Result};
use crate::validation_cache::{ValidationCache, LEASE};

/// The issue time and TTL in ms of a token, or nothing for a key that is not one. Read over
/// the tracking connection, it also makes Redis track the key for this client.
pub(super) const READ: &str = r"
local ctime = redis.pcall('HGET', KEYS[1], 'ctime')
if type(ctime) == 'table' then
  if string.find(ctime.err, '^WRONGTYPE') then return false end
  return ctime
end
if type(ctime) ~= 'string' then return false end
return {ctime, redis.call('PTTL', KEYS[1])}
";

/// How often the tracking connection is proven alive (and its invalidations delivered).
const HEARTBEAT: Duration = Duration::from_millis(100);

/// The connection that carries invalidations, and the cache it keeps exact.
pub(super) struct Tracking {
  pub(super) redis: Connector,
  pub(super) cache: Arc<ValidationCache>,
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

/// What a tracked read of a token found.
pub(super) enum Read {
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

impl RedisTokens {
  /// Reads `tokens` over the tracking connection (see [`RedisTokens::read_tracked`]);
  /// `None` when there is no cache, or the tracked read failed where an untracked one may
  /// not: the caller then reads without tracking, and after [`MAX_REFUSALS`] such failures
  /// in a row the cache is turned off for good.
  pub(super) async fn try_tracked(
    &self, tokens: &[&str],
  ) -> Result<Option<Vec<Option<(u64, i64)>>>> {
    let Some(tracking) = self.tracking.as_ref().filter(|tracking| tracking.usable()) else {
      return Ok(None);
    };
    match self.read_tracked(tracking, tokens).await {
      Ok((reads, refused)) => {
        match refused {
          true => tracking.refused("Redis refused CLIENT TRACKING or CLIENT CACHING"),
          false => tracking.answered(),
        }
        Ok(Some(reads))
      }
      Err(err) if err.is_disconnected() => {
        tracking.forget_master();
        tracking.failed();
        Err(err)
      }
      Err(err) if err.is_refusal() => {
        // Counted only once the other connection answers: the store itself works.
        let _: Value = redis::cmd("PING")
          .query_async(&mut self.redis.get().await?)
          .await?;
        tracking.refused("Redis refused the tracking connection (RESP3 or CLIENT)");
        Ok(None)
      }
      Err(_) => {
        tracking.failed();
        Ok(None)
      }
    }
  }

  /// Why the validation cache was just turned off for good, once: for the diagnostics of the
  /// call that finds out.
  pub fn cache_off_notice(&self) -> Option<String> {
    self.tracking.as_ref()?.off_notice.lock().ok()?.take()
  }

  /// Reads each token, and remembers the live ones: for each, its issue time (ms since the
  /// epoch) and `PTTL`, or `None` when it is not live. Tokens are first read without
  /// tracking, on the store's connection: a made-up or dead token never enters Redis's
  /// tracking table, which so grows with live tokens only (each entry ends when its token
  /// changes or expires). Only the live ones are read again over the tracking connection,
  /// tracked, and that second answer is the one given and remembered.
  /// Says too whether Redis refused tracking in words.
  async fn read_tracked(
    &self, tracking: &Arc<Tracking>, tokens: &[&str],
  ) -> Result<(Vec<Option<(u64, i64)>>, bool)> {
    let mut reads = vec![None; tokens.len()];
    let candidates = well_formed(tokens);
    if candidates.is_empty() {
      return Ok((reads, false));
    }
    let checked: Vec<&str> = candidates.iter().map(|&i| tokens[i]).collect();
    let first: Vec<redis::RedisResult<Value>> =
      per_token(&mut self.redis.get().await?, &checked, |token| {
        let mut read = redis::cmd("EVAL");
        read.arg(READ).arg(1).arg(token);
        read
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
    let mut redis = tracking.connection().await?;
    let tickets: Vec<_> = live
      .iter()
      .map(|&i| tracking.cache.ticket(tokens[i]))
      .collect();
    // Each read is preceded by `CLIENT CACHING YES`, and the pipeline by `CLIENT TRACKING ON
    // OPTIN`, so that a connection the client re-made is tracked again before it reads.
    let tracked_pipe = |tokens: &mut dyn Iterator<Item = &str>| {
      let mut pipe = redis::pipe();
      pipe.cmd("CLIENT").arg("TRACKING").arg("ON").arg("OPTIN");
      for token in tokens {
        pipe.cmd("CLIENT").arg("CACHING").arg("YES");
        pipe.cmd("EVAL").arg(READ).arg(1).arg(token);
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
          tracking.cache.fill(ticket, tokens[i], ctime, pttl);
          Some((ctime, pttl))
        }
        Read::NotLive => None,
        // Read again without tracking, as one command, which follows a redirection (and so
        // teaches a cluster connection where the slot went); the answer is not remembered.
        Read::Refused | Read::Untracked => {
          refused |= matches!(read, Read::Refused);
          let found: Value = self.read.key(tokens[i]).invoke_async(&mut redis).await?;
          parse_read(&found).and_then(Read::live)
        }
      };
    }
    Ok((reads, refused))
  }
}

impl Tracking {
  /// The tracking connection to `target`, keeping `cache` exact; connected on first use.
  pub(super) fn new(
    target: &RedisTarget, redis_pass: Option<&str>, redis_tls: &RedisTls, cache: ValidationCache,
  ) -> Result<Arc<Self>> {
    let cache = Arc::new(cache);
    let handler = Arc::clone(&cache);
    let push = Arc::new(move |push: PushInfo| on_push(&handler, push));
    Ok(Arc::new(Tracking {
      redis: Connector::new(target, redis_pass, redis_tls, Some(push))?,
      cache,
      heartbeat: Once::new(),
      refusals: AtomicU32::new(0),
      failures: AtomicU32::new(0),
      retry_at_ms: AtomicU64::new(0),
      started: Instant::now(),
      off_notice: Mutex::new(None),
    }))
  }

  /// After a lost connection, with Sentinel: the next read asks the sentinels for the master
  /// again, and nothing remembered over the old connection is answered any more.
  pub(super) fn forget_master(&self) {
    if self.redis.forget_master() {
      self.cache.clear();
    }
  }

  /// Whether the server refused tracking often enough for the cache to be off for good
  /// (see [`MAX_REFUSALS`]).
  fn is_off(&self) -> bool {
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

/// Reads the replies of one tracked read: `CLIENT TRACKING`, `CLIENT CACHING`, then `READ`.
fn tracked_read(tracking: &Value, caching: &Value, read: &Value) -> Read {
  let refused = |value: &Value| matches!(value, Value::ServerError(_));
  if refused(tracking) || refused(caching) {
    return Read::Refused;
  }
  parse_read(read).unwrap_or(Read::Untracked)
}

impl Read {
  /// Issue time and `PTTL` of a live token.
  pub(super) fn live(self) -> Option<(u64, i64)> {
    match self {
      Read::Live(ctime, pttl) => Some((ctime, pttl)),
      Read::NotLive | Read::Refused | Read::Untracked => None,
    }
  }
}
/// Reads the reply of the `READ` script (RESP2's nil or RESP3's false for a key that is not
/// a token); `None` for an error reply.
pub(super) fn parse_read(read: &Value) -> Option<Read> {
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
