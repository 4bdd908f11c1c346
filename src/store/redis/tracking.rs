//! The validation cache's connection: token checks read over it with client-side tracking
//! (RESP3), so Redis tells this instance when a token it remembers changes, and a heartbeat
//! proves the connection alive; writes go over the store's other connection.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};

use super::connection::{Connector, RedisConnection};
use super::{well_formed, RedisTokens};
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
  /// Tracked reads that failed in a row where an untracked read then worked.
  refusals: AtomicU32,
}

/// Tracked reads refused in a row (a server before 6.0, or a proxy without RESP3 or client
/// tracking) after which the instance stops trying: it checks every token with the store.
const MAX_REFUSALS: u32 = 3;

/// What a tracked read of a token found.
pub(super) enum Read {
  /// A live token: issue time (ms since the epoch) and `PTTL`.
  Live(u64, i64),
  NotLive,
  /// Redis refused the tracked read (a proxy or ACL without `CLIENT`, a redirection inside
  /// the pipeline): ask again without tracking.
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
      Ok(reads) => {
        tracking.refusals.store(0, Ordering::Release);
        Ok(Some(reads))
      }
      Err(err) if err.is_disconnected() => {
        tracking.forget_master();
        Err(err)
      }
      Err(_) => {
        // Counted only once the other connection answers: the store itself works.
        let _: Value = redis::cmd("PING")
          .query_async(&mut self.redis.get().await?)
          .await?;
        if tracking.refusals.fetch_add(1, Ordering::AcqRel) + 1 >= MAX_REFUSALS {
          tracking.cache.clear();
        }
        Ok(None)
      }
    }
  }

  /// Reads each token over the tracking connection, and remembers the live ones: for each,
  /// its issue time (ms since the epoch) and `PTTL`, or `None` when it is not live.
  async fn read_tracked(
    &self, tracking: &Arc<Tracking>, tokens: &[&str],
  ) -> Result<Vec<Option<(u64, i64)>>> {
    let mut reads = vec![None; tokens.len()];
    let candidates = well_formed(tokens);
    if candidates.is_empty() {
      return Ok(reads);
    }
    let mut redis = tracking.connection().await?;
    let tickets: Vec<_> = candidates
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
      let reads = candidates.iter().map(|&i| {
        let mut redis = redis.clone();
        let pipe = tracked_pipe(&mut std::iter::once(tokens[i]));
        async move { redis.pipeline_to_node_of(tokens[i], pipe).await }
      });
      let mut found = Vec::with_capacity(candidates.len());
      for replies in futures_util::future::join_all(reads).await {
        match replies?.as_slice() {
          [tracking, caching, read] => found.push(tracked_read(tracking, caching, read)),
          _ => found.push(Read::Untracked),
        }
      }
      found
    } else {
      let pipe = tracked_pipe(&mut candidates.iter().map(|&i| tokens[i]));
      let replies: Vec<Value> = pipe.query_async(&mut redis).await?;
      match replies.split_first() {
        Some((tracking, rest)) if rest.len() == 2 * candidates.len() => rest
          .chunks(2)
          .map(|pair| tracked_read(tracking, &pair[0], &pair[1]))
          .collect(),
        _ => candidates.iter().map(|_| Read::Untracked).collect(),
      }
    };
    for ((&i, ticket), read) in candidates.iter().zip(tickets).zip(found) {
      reads[i] = match read {
        Read::Live(ctime, pttl) => {
          tracking.cache.fill(ticket, tokens[i], ctime, pttl);
          Some((ctime, pttl))
        }
        Read::NotLive => None,
        // Read again without tracking, as one command, which follows a redirection (and so
        // teaches a cluster connection where the slot went); the answer is not remembered.
        Read::Untracked => {
          let found: Value = self.read.key(tokens[i]).invoke_async(&mut redis).await?;
          parse_read(&found).and_then(Read::live)
        }
      };
    }
    Ok(reads)
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
    }))
  }

  /// After a lost connection, with Sentinel: the next read asks the sentinels for the master
  /// again, and nothing remembered over the old connection is answered any more.
  pub(super) fn forget_master(&self) {
    if self.redis.forget_master() {
      self.cache.clear();
    }
  }

  /// Whether tracked reads are still tried (see [`MAX_REFUSALS`]).
  fn usable(&self) -> bool {
    self.refusals.load(Ordering::Acquire) < MAX_REFUSALS
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
    if !current.usable() {
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
    return Read::Untracked;
  }
  parse_read(read).unwrap_or(Read::Untracked)
}

impl Read {
  /// Issue time and `PTTL` of a live token.
  pub(super) fn live(self) -> Option<(u64, i64)> {
    match self {
      Read::Live(ctime, pttl) => Some((ctime, pttl)),
      Read::NotLive | Read::Untracked => None,
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
