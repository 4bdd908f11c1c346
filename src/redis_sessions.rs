//! Sessions in Redis, laid out as mpauthx 1.3.2 kept them, plus an index for O(1) look-ups.
//!
//! - Token: a hash at key = the token, field `ctime` (issue time, ms since the epoch),
//!   created together with its TTL by one script, so no token ever lacks a TTL.
//! - Session index: `mpauthx|index|<sku>|<userId>` holds the user's current token for that
//!   sku, with the same TTL. It has four `|`-separated parts, so it is never a valid token.
//! - Registered user: `mpauthx|user|<sku>|<userId>`, no TTL, so that every server sharing
//!   the Redis knows a user that registered on any of them.
//!
//! Every step touches a single key, so the same code is race-safe on a single Redis and
//! on Redis Cluster: the index is only ever replaced by compare-and-set, and a token that
//! loses a race is deleted before anyone sees it.
//!
//! Token checks read over a second connection with client-side tracking, which keeps the
//! [`ValidationCache`] exact (see there); writes go over the first.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{AsyncCommands, PushInfo, PushKind, Script, Value};

use crate::config::{RedisTarget, RedisTls};
use crate::error::{Error, Result};
use crate::redis_connection::{Connector, RedisConnection};
use crate::sessions::{Issue, TokenInfo};
use crate::token;
use crate::validation_cache::{CachedToken, ValidationCache, Validity, Vouched, LEASE};

/// The hash field that marks a key as a token.
const CTIME_FIELD: &str = "ctime";

/// How often a caller retries after losing a compare-and-set to a concurrent caller.
/// Each loss means another caller succeeded, so a few rounds always settle.
const MAX_ATTEMPTS: usize = 8;

/// Every public call fails with [`Error::Store`] past this, so a dead or hung Redis never
/// stalls a caller: connecting and each reply are bounded more tightly still.
pub const DEADLINE: Duration = Duration::from_millis(1_500);

/// Replaces the index only when it still holds what the caller read (`""` for nothing), and
/// then deletes `KEYS[2]`, the token it named, when given and a token (a hash with `ctime`):
/// a stray or tampered index never makes the library delete a key of the application's.
/// In a Cluster the two keys live in different slots: `KEYS[2]` is left out and the old token
/// goes through [`REVOKE`], which makes the same check.
const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
local old_is_token = false
if KEYS[2] then
  local live = redis.pcall('HEXISTS', KEYS[2], 'ctime')
  if type(live) == 'table' then
    if not string.find(live.err, '^WRONGTYPE') then return live end
  else
    old_is_token = live == 1
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if old_is_token then redis.call('DEL', KEYS[2]) end
return 1
";

/// Writes a token with its TTL in one command, so that no token ever exists without a TTL
/// and a cluster client can retry it after a failover like any single-key command. Where
/// Redis can tell (7.0 and later), a user not allowed to set the TTL writes nothing at all.
const CREATE: &str = r"
if redis.acl_check_cmd and not redis.acl_check_cmd('expire', KEYS[1], ARGV[2]) then
  return redis.error_reply('NOPERM this user may not set a TTL (EXPIRE)')
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'ctime', ARGV[1], 'sk', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'ctime', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

// In the scripts below, a key of another type is not a token (`WRONGTYPE`, read with
// `pcall`); any other refusal (an ACL that denies a command, say) is returned as the error it
// is, never taken to mean "no such token", which would issue a new one.

/// The start of a script that acts on `KEYS[1]` only if it is a token (a hash with `ctime`),
/// and returns 0 otherwise.
macro_rules! unless_a_token_return_0 {
  () => {
    r"
local live = redis.pcall('HEXISTS', KEYS[1], 'ctime')
if type(live) == 'table' then
  if string.find(live.err, '^WRONGTYPE') then return 0 end
  return live
end
if live ~= 1 then return 0 end
"
  };
}

/// Keeps the latest session key with a live token; says whether the token is live.
const KEEP_SESSION_KEY: &str = concat!(
  unless_a_token_return_0!(),
  r"redis.call('HSET', KEYS[1], 'sk', ARGV[1])
return 1
"
);

/// The session key kept with a live token, or nothing.
const SESSION_KEY: &str = r"
local fields = redis.pcall('HMGET', KEYS[1], 'ctime', 'sk')
if fields.err then
  if string.find(fields.err, '^WRONGTYPE') then return false end
  return fields
end
if not fields[1] then return false end
return fields[2]
";

/// The issue time and TTL in ms of a token, or nothing for a key that is not one. Read over
/// the tracking connection, it also makes Redis track the key for this client.
const READ: &str = r"
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

/// The cached access token and its remaining seconds, or nothing.
const CACHED_ACCESS_TOKEN: &str = r"
local token = redis.call('GET', KEYS[1])
if not token then return false end
return {token, redis.call('TTL', KEYS[1])}
";

/// Deletes a string key only if it still holds `ARGV[1]`: the access-token lock only for the
/// caller that holds it, the cached access token only if it is still the one WeChat refused,
/// a session index only if it still names the token revoked.
const DELETE_IF_HOLDS: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// For `slidingTtl`: whether `KEYS[1]` is a live token (0 when not, 1 when live), and when
/// less than `ARGV[2]` ms of its TTL remain (half of it), gives it its whole TTL of `ARGV[1]`
/// seconds back and returns 2; its index `KEYS[2]` too, when given and still naming it. The
/// condition is checked here, in Redis, so concurrent checks extend a token once per half-TTL.
/// In a Cluster the index lives in another slot: `KEYS[2]` is left out and the index goes
/// through [`SLIDE_INDEX`].
const LIVE_AND_SLIDE: &str = concat!(
  unless_a_token_return_0!(),
  r"local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 or pttl >= tonumber(ARGV[2]) then return 1 end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if KEYS[2] then
  local indexed = redis.pcall('GET', KEYS[2])
  if indexed == KEYS[1] then
    redis.call('EXPIRE', KEYS[2], ARGV[1])
  elseif type(indexed) == 'table' and not string.find(indexed.err, '^WRONGTYPE') then
    return indexed
  end
end
return 2
"
);

/// Gives an index its whole TTL of `ARGV[2]` seconds back if it still names the token
/// `ARGV[1]`, which [`LIVE_AND_SLIDE`] just extended.
const SLIDE_INDEX: &str = r"
local indexed = redis.pcall('GET', KEYS[1])
if indexed == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if type(indexed) == 'table' and not string.find(indexed.err, '^WRONGTYPE') then return indexed end
return 0
";

/// Deletes a token only if it is one (a hash with `ctime`); other keys are left alone.
const REVOKE: &str = concat!(
  unless_a_token_return_0!(),
  r"return redis.call('DEL', KEYS[1])
"
);

pub struct RedisSessions {
  redis: Connector,
  compare_and_set: Script,
  create: Script,
  keep_session_key: Script,
  cached_access_token: Script,
  delete_if_holds: Script,
  slide_index: Script,
  session_key: Script,
  read: Script,
  revoke: Script,
  ttl: Duration,
  /// `slidingTtl`: the sku (this instance's) whose tokens, checked in the second half of their
  /// TTL, get it whole back; `None` when off. Other skus' tokens keep the TTL their own
  /// instances gave them.
  sliding: Option<String>,
  tracking: Option<Arc<Tracking>>,
}

/// The connection that carries invalidations, and the cache it keeps exact.
struct Tracking {
  redis: Connector,
  cache: Arc<ValidationCache>,
  heartbeat: Once,
  /// Tracked reads that failed in a row where an untracked read then worked.
  refusals: AtomicU32,
}

/// Tracked reads refused in a row (a server before 6.0, or a proxy without RESP3 or client
/// tracking) after which the instance stops trying: it checks every token with the store.
const MAX_REFUSALS: u32 = 3;

/// What a tracked read of a token found.
enum Read {
  /// A live token: issue time (ms since the epoch) and `PTTL`.
  Live(u64, i64),
  NotLive,
  /// Redis refused the tracked read (a proxy or ACL without `CLIENT`, a redirection inside
  /// the pipeline): ask again without tracking.
  Untracked,
}

impl RedisSessions {
  /// Prepares the store; connections are made on first use and re-made after failures.
  /// `cache_size` live tokens are remembered (none when 0); with `sliding`, checks extend
  /// that sku's tokens in the second half of their TTL.
  pub fn new(
    target: &RedisTarget,
    redis_pass: Option<&str>,
    redis_tls: &RedisTls,
    ttl: Duration,
    cache_size: usize,
    sliding: Option<String>,
  ) -> Result<Self> {
    let tracking = match NonZeroUsize::new(cache_size) {
      None => None,
      Some(capacity) => {
        let cache = Arc::new(ValidationCache::new(capacity));
        let handler = Arc::clone(&cache);
        let push = Arc::new(move |push: PushInfo| on_push(&handler, push));
        Some(Arc::new(Tracking {
          redis: Connector::new(target, redis_pass, redis_tls, Some(push))?,
          cache,
          heartbeat: Once::new(),
          refusals: AtomicU32::new(0),
        }))
      }
    };
    Ok(Self {
      redis: Connector::new(target, redis_pass, redis_tls, None)?,
      compare_and_set: Script::new(COMPARE_AND_SET),
      create: Script::new(CREATE),
      keep_session_key: Script::new(KEEP_SESSION_KEY),
      cached_access_token: Script::new(CACHED_ACCESS_TOKEN),
      delete_if_holds: Script::new(DELETE_IF_HOLDS),
      slide_index: Script::new(SLIDE_INDEX),
      session_key: Script::new(SESSION_KEY),
      read: Script::new(READ),
      revoke: Script::new(REVOKE),
      ttl,
      sliding,
      tracking,
    })
  }

  /// Drops the connections and forgets every cached token; later calls fail with
  /// [`Error::Closed`].
  pub fn close(&self) {
    self.redis.close();
    if let Some(tracking) = &self.tracking {
      tracking.redis.close();
      tracking.cache.clear();
    }
  }

  /// Empties the validation cache (see [`Sessions::forget_all`](crate::sessions::Sessions::forget_all)).
  pub fn forget_all(&self) {
    if let Some(tracking) = &self.tracking {
      tracking.cache.clear();
    }
  }

  /// What the validation cache may answer for `token` now, without a round trip.
  pub fn cached(&self, token: &str) -> Option<(CachedToken, Vouched)> {
    self.tracking.as_ref()?.cache.get(token, Instant::now())
  }

  /// The validation cache's counters and lease, when there is a cache.
  pub fn validity(&self) -> Option<Arc<Validity>> {
    Some(self.tracking.as_ref()?.cache.validity())
  }

  /// For each token, whether it is live; all are checked in one pipelined round trip
  /// (on a cluster, in one round trip per node).
  /// With `slidingTtl`, the live tokens in the second half of their TTL get it whole back.
  pub async fn are_live(&self, tokens: &[&str]) -> Result<Vec<bool>> {
    within_deadline(&self.redis, || async {
      if let Some(reads) = self.try_tracked(tokens).await? {
        let due: Vec<&str> = tokens
          .iter()
          .zip(&reads)
          .filter(|&(&token, read)| read.is_some_and(|(_, pttl)| self.due(token, pttl)))
          .map(|(&token, _)| token)
          .collect();
        if !due.is_empty() {
          self.slide(&mut self.redis.get().await?, &due).await?;
        }
        return Ok(reads.into_iter().map(|read| read.is_some()).collect());
      }
      self.check_all_live(tokens).await
    })
    .await
  }

  /// Whether a live token with `pttl` ms left is due to slide: of the sliding sku, with less
  /// than half its TTL left.
  fn due(&self, token: &str, pttl: i64) -> bool {
    self.slides(token) && u128::try_from(pttl).is_ok_and(|left| left < self.ttl.as_millis() / 2)
  }

  /// Whether checks extend `token`: sliding is on and it is of the sliding sku.
  fn slides(&self, token: &str) -> bool {
    self.sliding.is_some() && token::sku(token) == self.sliding.as_deref()
  }

  /// Runs [`LIVE_AND_SLIDE`] on each token: which are live. Only tokens due to slide are
  /// written, and on a cluster their index after them.
  async fn slide(&self, redis: &mut RedisConnection, tokens: &[&str]) -> Result<Vec<bool>> {
    let cluster = redis.is_cluster();
    let ttl = self.ttl.as_secs();
    let half_ms = (self.ttl.as_millis() / 2) as u64;
    let replies: Vec<redis::RedisResult<i64>> = per_token(redis, tokens, |token| {
      let mut slide = redis::cmd("EVAL");
      slide.arg(LIVE_AND_SLIDE);
      match index_of(token).filter(|_| !cluster) {
        Some(index) => slide.arg(2).arg(token).arg(index),
        None => slide.arg(1).arg(token),
      };
      // A window of 0 only checks: other skus' tokens are never extended.
      slide
        .arg(ttl)
        .arg(if self.slides(token) { half_ms } else { 0 });
      slide
    })
    .await?;
    let mut live = Vec::with_capacity(tokens.len());
    for (&token, reply) in tokens.iter().zip(replies) {
      let outcome = reply?;
      if outcome == 2 {
        if let (true, Some(index)) = (cluster, index_of(token)) {
          let _: i64 = self
            .slide_index
            .key(index)
            .arg(token)
            .arg(ttl)
            .invoke_async(redis)
            .await?;
        }
        // What this instance remembers expires too early now; the invalidation Redis sends
        // may arrive just after.
        self.forget(token);
      }
      live.push(outcome > 0);
    }
    Ok(live)
  }

  /// Reads `tokens` over the tracking connection (see [`RedisSessions::read_tracked`]);
  /// `None` when there is no cache, or the tracked read failed where an untracked one may
  /// not: the caller then reads without tracking, and after [`MAX_REFUSALS`] such failures
  /// in a row the cache is turned off for good.
  async fn try_tracked(&self, tokens: &[&str]) -> Result<Option<Vec<Option<(u64, i64)>>>> {
    let Some(tracking) = self.tracking.as_ref().filter(|tracking| tracking.usable()) else {
      return Ok(None);
    };
    match self.read_tracked(tracking, tokens).await {
      Ok(reads) => {
        tracking.refusals.store(0, Ordering::Release);
        Ok(Some(reads))
      }
      Err(err @ Error::Disconnected(_)) => {
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
    &self,
    tracking: &Arc<Tracking>,
    tokens: &[&str],
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

  /// Drops a token this instance deleted or replaced, before the call resolves (the
  /// invalidation Redis sends may arrive just after).
  fn forget(&self, token: &str) {
    if let Some(tracking) = &self.tracking {
      tracking.cache.invalidate([token.as_bytes()]);
    }
  }

  /// Deletes `token` if it is a live token; says whether it was. The session index may go
  /// on naming it until its TTL: a token that is not live is never handed out again.
  pub async fn revoke(&self, token: &str) -> Result<bool> {
    if !token::is_well_formed(token) {
      return Ok(false);
    }
    within_deadline(&self.redis, || async {
      let deleted: i64 = self
        .revoke
        .key(token)
        .invoke_async(&mut self.redis.get().await?)
        .await?;
      self.forget(token);
      Ok(deleted == 1)
    })
    .await
  }

  /// Deletes the user's live token of `sku`, or of every sku in this Redis when `None`, with
  /// the indexes naming them; says how many tokens were deleted. Every sku's index is found
  /// by `SCAN` (on every master of a cluster).
  pub async fn revoke_user(&self, user_id: &str, sku: Option<&str>) -> Result<u64> {
    within_deadline(&self.redis, || async {
      let mut redis = self.redis.get().await?;
      let indexes = match sku {
        Some(sku) => vec![index_key(user_id, sku)],
        None => {
          let pattern = format!("mpauthx|index|*|{}", glob_escape(user_id));
          let mut indexes: Vec<String> = redis
            .scan_matching(&pattern)
            .await?
            .into_iter()
            .filter(|key| is_index_of(key, user_id))
            .collect();
          indexes.sort_unstable();
          indexes.dedup();
          indexes
        }
      };
      let mut revoked = 0;
      for index in indexes {
        let indexed: Option<String> = match redis.get(&index).await {
          Ok(indexed) => indexed,
          Err(err) if err.code() == Some("WRONGTYPE") => continue,
          Err(err) => return Err(err.into()),
        };
        let Some(token) = indexed else { continue };
        // Only a token of this user and of the index's sku; REVOKE deletes only tokens.
        if index_of(&token).as_ref() == Some(&index) {
          let deleted: i64 = self.revoke.key(&token).invoke_async(&mut redis).await?;
          self.forget(&token);
          revoked += deleted as u64;
        }
        let _: i64 = self
          .delete_if_holds
          .key(&index)
          .arg(&token)
          .invoke_async(&mut redis)
          .await?;
      }
      Ok(revoked)
    })
    .await
  }

  /// What `token` stands for, if it is live.
  pub async fn describe(&self, token: &str) -> Result<Option<TokenInfo>> {
    if !token::is_well_formed(token) {
      return Ok(None);
    }
    within_deadline(&self.redis, || async {
      let found = match self.try_tracked(&[token]).await? {
        Some(mut reads) => reads.pop().flatten(),
        None => {
          let found: Value = self
            .read
            .key(token)
            .invoke_async(&mut self.redis.get().await?)
            .await?;
          parse_read(&found).and_then(Read::live)
        }
      };
      let Some((ctime, mut pttl)) = found else {
        return Ok(None);
      };
      if self.due(token, pttl)
        && self.slide(&mut self.redis.get().await?, &[token]).await? == [true]
      {
        pttl = self.ttl.as_millis() as i64;
      }
      Ok(token::sku(token).map(|sku| TokenInfo {
        user_id: token::user_id(token).to_owned(),
        sku: sku.to_owned(),
        ctime_ms: ctime,
        // Rounded as Redis's own `TTL` rounds.
        expires_in: u64::try_from(pttl).ok().map(|ms| (ms + 500) / 1000),
      }))
    })
    .await
  }

  /// The access token of `app_id` cached by any process, with its remaining seconds.
  pub async fn cached_access_token(&self, app_id: &str) -> Result<Option<(String, u64)>> {
    within_deadline(&self.redis, || async {
      let mut redis = self.redis.get().await?;
      let cached: Option<(String, i64)> = self
        .cached_access_token
        .key(access_token_key(app_id, "current"))
        .invoke_async(&mut redis)
        .await?;
      Ok(cached.map(|(token, ttl)| (token, u64::try_from(ttl).unwrap_or(0))))
    })
    .await
  }

  /// Takes the right to fetch a new access token for `ttl` as `owner`; false when another
  /// caller holds it.
  pub async fn lock_access_token(&self, app_id: &str, owner: &str, ttl: Duration) -> Result<bool> {
    self
      .set_if_absent(access_token_key(app_id, "lock"), owner, ttl)
      .await
  }

  /// Caches a fresh access token for `ttl` and releases `owner`'s lock.
  pub async fn store_access_token(
    &self,
    app_id: &str,
    token: &str,
    ttl: Duration,
    owner: &str,
  ) -> Result<()> {
    within_deadline(&self.redis, || async {
      let mut redis = self.redis.get().await?;
      let () = redis
        .pset_ex(
          access_token_key(app_id, "current"),
          token,
          ttl.as_millis() as u64,
        )
        .await?;
      self.release_lock(&mut redis, app_id, owner).await
    })
    .await
  }

  /// Caches `token` for `ttl` unless a live one is cached already (`SET NX`).
  pub async fn offer_access_token(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    self
      .set_if_absent(access_token_key(app_id, "current"), token, ttl)
      .await
      .map(drop)
  }

  /// `SET key value NX PX ttl`: true when it was set.
  async fn set_if_absent(&self, key: String, value: &str, ttl: Duration) -> Result<bool> {
    within_deadline(&self.redis, || async {
      let mut redis = self.redis.get().await?;
      let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(value)
        .arg("NX")
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .query_async(&mut redis)
        .await?;
      Ok(set.is_some())
    })
    .await
  }

  /// Releases `owner`'s lock after a failed fetch; a lock taken over since is left alone.
  pub async fn unlock_access_token(&self, app_id: &str, owner: &str) -> Result<()> {
    within_deadline(&self.redis, || async {
      let mut redis = self.redis.get().await?;
      self.release_lock(&mut redis, app_id, owner).await
    })
    .await
  }

  async fn release_lock(
    &self,
    redis: &mut RedisConnection,
    app_id: &str,
    owner: &str,
  ) -> Result<()> {
    let _: i64 = self
      .delete_if_holds
      .key(access_token_key(app_id, "lock"))
      .arg(owner)
      .invoke_async(redis)
      .await?;
    Ok(())
  }

  /// Forgets the cached access token if it is still `token` (which WeChat refused).
  pub async fn drop_access_token(&self, app_id: &str, token: &str) -> Result<()> {
    within_deadline(&self.redis, || async {
      let mut redis = self.redis.get().await?;
      let _: i64 = self
        .delete_if_holds
        .key(access_token_key(app_id, "current"))
        .arg(token)
        .invoke_async(&mut redis)
        .await?;
      Ok(())
    })
    .await
  }

  /// Records that the user is registered for `sku`, for every server sharing this Redis.
  pub async fn remember_user(&self, user_id: &str, sku: &str) -> Result<()> {
    within_deadline(&self.redis, || async {
      let () = self
        .redis
        .get()
        .await?
        .set(user_key(user_id, sku), 1)
        .await?;
      Ok(())
    })
    .await
  }

  /// Whether any server recorded the user as registered for `sku`.
  pub async fn knows_user(&self, user_id: &str, sku: &str) -> Result<bool> {
    within_deadline(&self.redis, || async {
      Ok(
        self
          .redis
          .get()
          .await?
          .exists(user_key(user_id, sku))
          .await?,
      )
    })
    .await
  }

  /// The user's live token for `sku`, if any.
  pub async fn live_token(
    &self,
    user_id: &str,
    sku: &str,
    session_key: Option<&str>,
  ) -> Result<Option<String>> {
    within_deadline(&self.redis, || {
      self.find_live_token(user_id, sku, session_key)
    })
    .await
  }

  /// The session key kept with a live token.
  pub async fn session_key(&self, token: &str) -> Result<Option<String>> {
    if !token::is_well_formed(token) {
      return Ok(None);
    }
    within_deadline(&self.redis, || async {
      let mut redis = self.redis.get().await?;
      Ok(self.session_key.key(token).invoke_async(&mut redis).await?)
    })
    .await
  }

  /// Issues a token for the user and sku and makes it the indexed one, or, with
  /// [`Issue::ReuseLive`], returns the live token another caller indexed first.
  pub async fn issue(
    &self,
    user_id: &str,
    sku: &str,
    mode: Issue,
    session_key: Option<&str>,
  ) -> Result<String> {
    within_deadline(&self.redis, || {
      self.issue_token(user_id, sku, mode, session_key)
    })
    .await
  }

  /// Whether `token` is live, keeping `session_key` with it when given.
  async fn keep(
    &self,
    redis: &mut RedisConnection,
    token: &str,
    session_key: Option<&str>,
  ) -> Result<bool> {
    match session_key {
      None => check_live(redis, token).await,
      Some(key) => {
        let live: i64 = self
          .keep_session_key
          .key(token)
          .arg(key)
          .invoke_async(redis)
          .await?;
        Ok(live == 1)
      }
    }
  }

  async fn check_all_live(&self, tokens: &[&str]) -> Result<Vec<bool>> {
    let mut live = vec![false; tokens.len()];
    let candidates = well_formed(tokens);
    if candidates.is_empty() {
      return Ok(live);
    }
    let mut redis = self.redis.get().await?;
    let checked: Vec<&str> = candidates.iter().map(|&i| tokens[i]).collect();
    let found = if self.sliding.is_some() {
      self.slide(&mut redis, &checked).await?
    } else {
      let replies = per_token(&mut redis, &checked, |token| {
        let mut hexists = redis::cmd("HEXISTS");
        hexists.arg(token).arg(CTIME_FIELD);
        hexists
      })
      .await?;
      replies.into_iter().map(is_token).collect::<Result<_>>()?
    };
    for (i, found) in candidates.into_iter().zip(found) {
      live[i] = found;
    }
    Ok(live)
  }

  async fn find_live_token(
    &self,
    user_id: &str,
    sku: &str,
    session_key: Option<&str>,
  ) -> Result<Option<String>> {
    let mut redis = self.redis.get().await?;
    let indexed: Option<String> = redis.get(index_key(user_id, sku)).await?;
    match indexed {
      Some(token) if self.keep(&mut redis, &token, session_key).await? => Ok(Some(token)),
      _ => Ok(None),
    }
  }

  async fn issue_token(
    &self,
    user_id: &str,
    sku: &str,
    mode: Issue,
    session_key: Option<&str>,
  ) -> Result<String> {
    let index = index_key(user_id, sku);
    let mut redis = self.redis.get().await?;
    // What the index held when this caller last lost a compare-and-set.
    let mut lost_to: Option<Option<String>> = None;
    for _ in 0..MAX_ATTEMPTS {
      let indexed: Option<String> = redis.get(&index).await?;
      // A refresh that lost to a concurrent refresh takes the winner's token: it was
      // issued after this call began, so "a new token" holds, and only one stays live.
      let reuse = match mode {
        Issue::ReuseLive => true,
        Issue::Replace { .. } => lost_to.as_ref().is_some_and(|seen| *seen != indexed),
      };
      if let Some(current) = indexed.as_deref().filter(|_| reuse) {
        if self.keep(&mut redis, current, session_key).await? {
          return Ok(current.to_owned());
        }
      }
      // A refresh carries the session key of the token it replaces.
      let carried: Option<String> = match (session_key, indexed.as_deref()) {
        (None, Some(old)) => self.session_key.key(old).invoke_async(&mut redis).await?,
        _ => None,
      };
      let token = token::generate(user_id, sku)?;
      let key = session_key.or(carried.as_deref()).unwrap_or("");
      self.create(&mut redis, &token, key).await?;
      let expected = indexed.as_deref().unwrap_or("");
      let mut swap = self.compare_and_set.key(&index);
      let cluster = redis.is_cluster();
      if let (Some(old), false) = (&indexed, cluster) {
        swap.key(old);
      }
      let swapped: bool = swap
        .arg(expected)
        .arg(&token)
        .arg(self.ttl.as_secs())
        .invoke_async(&mut redis)
        .await?;
      if swapped {
        if let Some(old) = indexed {
          if cluster {
            let _: Value = self.revoke.key(&old).invoke_async(&mut redis).await?;
          }
          self.forget(&old);
        }
        return Ok(token);
      }
      // Another caller indexed its token first: ours was never handed out.
      let _: () = redis.del(&token).await?;
      lost_to = Some(indexed);
    }
    Err(Error::Store(format!(
      "gave up issuing a token after {MAX_ATTEMPTS} concurrent updates of the same session"
    )))
  }

  async fn create(
    &self,
    redis: &mut RedisConnection,
    token: &str,
    session_key: &str,
  ) -> Result<()> {
    let _: i64 = self
      .create
      .key(token)
      .arg(now_ms())
      .arg(self.ttl.as_secs())
      .arg(session_key)
      .invoke_async(redis)
      .await?;
    Ok(())
  }
}

impl Tracking {
  /// After a lost connection, with Sentinel: the next read asks the sentinels for the master
  /// again, and nothing remembered over the old connection is answered any more.
  fn forget_master(&self) {
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
  fn live(self) -> Option<(u64, i64)> {
    match self {
      Read::Live(ctime, pttl) => Some((ctime, pttl)),
      Read::NotLive | Read::Untracked => None,
    }
  }
}

/// The indexes of the tokens that have a token's shape: only those are sent to Redis.
fn well_formed(tokens: &[&str]) -> Vec<usize> {
  (0..tokens.len())
    .filter(|&i| token::is_well_formed(tokens[i]))
    .collect()
}

/// Sends one command per token, made by `command`: one pipeline on a single Redis, one
/// command each (multiplexed per node) on a cluster, where tokens hash to different slots.
async fn per_token<T: redis::FromRedisValue>(
  redis: &mut RedisConnection,
  tokens: &[&str],
  command: impl Fn(&str) -> redis::Cmd,
) -> Result<Vec<redis::RedisResult<T>>> {
  if redis.is_cluster() {
    let commands = tokens.iter().map(|&token| {
      let mut redis = redis.clone();
      let command = command(token);
      async move { command.query_async(&mut redis).await }
    });
    return Ok(futures_util::future::join_all(commands).await);
  }
  let mut pipe = redis::pipe();
  pipe.ignore_errors();
  for &token in tokens {
    pipe.add_command(command(token));
  }
  Ok(pipe.query_async(redis).await?)
}

/// The session index that names a well-formed token when it is the current one.
fn index_of(token: &str) -> Option<String> {
  Some(index_key(token::user_id(token), token::sku(token)?))
    .filter(|_| token::is_well_formed(token))
}

/// Whether `key` is the session index of `user_id` for some sku.
fn is_index_of(key: &str, user_id: &str) -> bool {
  key
    .strip_prefix("mpauthx|index|")
    .and_then(|rest| rest.split_once('|'))
    .is_some_and(|(_, user)| user == user_id)
}

/// `text` matched literally by a Redis glob pattern.
fn glob_escape(text: &str) -> String {
  let mut escaped = String::with_capacity(text.len());
  for c in text.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      escaped.push('\\');
    }
    escaped.push(c);
  }
  escaped
}

/// Reads the reply of the `READ` script (RESP2's nil or RESP3's false for a key that is not
/// a token); `None` for an error reply.
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

/// Whether `token` is live (a hash with `ctime`), on the caller's connection.
async fn check_live(redis: &mut RedisConnection, token: &str) -> Result<bool> {
  if !token::is_well_formed(token) {
    return Ok(false);
  }
  is_token(redis.hexists(token, CTIME_FIELD).await)
}

/// Reads the answer to `HEXISTS <key> ctime`: a key of another type is some key of the
/// application's own, not a token.
fn is_token(reply: redis::RedisResult<bool>) -> Result<bool> {
  match reply {
    Ok(exists) => Ok(exists),
    Err(err) if err.code() == Some("WRONGTYPE") => Ok(false),
    Err(err) => Err(err.into()),
  }
}

/// Runs a store operation within [`DEADLINE`], and once more when the connection turned out
/// to be dead (a restarted Redis, a connection closed while idle): the client reconnects on
/// that failure, and every operation here is safe to run again from the start.
async fn within_deadline<T, F, Fut>(redis: &Connector, operation: F) -> Result<T>
where
  F: Fn() -> Fut,
  Fut: std::future::Future<Output = Result<T>>,
{
  let attempts = async {
    match operation().await {
      Err(Error::Disconnected(_)) => {
        redis.forget_master();
        operation().await
      }
      outcome => outcome,
    }
  };
  let server = redis.server();
  match tokio::time::timeout(DEADLINE, attempts).await {
    Ok(outcome) => outcome.map_err(|err| at_server(err, server)),
    Err(_) => Err(Error::Store(format!(
      "{server} did not answer within {} ms",
      DEADLINE.as_millis()
    ))),
  }
}

/// A Redis failure (worded `Redis: …` by `Error::from`) named after the server it came from.
fn at_server(err: Error, server: &str) -> Error {
  let locate = |why: String| match why.strip_prefix("Redis: ") {
    Some(what) => format!("{server}: {what}"),
    None => why,
  };
  match err {
    Error::Store(why) => Error::Store(locate(why)),
    Error::Disconnected(why) => Error::Disconnected(locate(why)),
    other => other,
  }
}

/// The session index key of a user and sku; neither may contain `|`.
pub fn index_key(user_id: &str, sku: &str) -> String {
  format!("mpauthx|index|{sku}|{user_id}")
}

/// The keys of an app's shared access token (`current`) and of the right to refresh it
/// (`lock`); four parts, so never a token.
pub fn access_token_key(app_id: &str, which: &str) -> String {
  format!("mpauthx|access_token|{app_id}|{which}")
}

/// The key that records a registered user of a sku, for servers whose SQLite file has never
/// seen that user; like the index, four parts, so never a token.
pub fn user_key(user_id: &str, sku: &str) -> String {
  format!("mpauthx|user|{sku}|{user_id}")
}

fn now_ms() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn index_and_user_keys_are_never_tokens() {
    let key = index_key("oUser", "sku");
    assert!(!token::is_well_formed(&key));
    assert_eq!(key, "mpauthx|index|sku|oUser");
    let key = user_key("oUser", "sku");
    assert!(!token::is_well_formed(&key));
    assert_eq!(key, "mpauthx|user|sku|oUser");
  }

  #[test]
  fn every_sku_index_of_a_user_is_found_and_no_other() {
    let token = "oUser|sku|0123";
    assert_eq!(index_of(token).as_deref(), Some("mpauthx|index|sku|oUser"));
    assert_eq!(
      index_of("mpauthx|index|sku|oUser"),
      None,
      "an index is not a token"
    );
    assert!(is_index_of("mpauthx|index|sku|oUser", "oUser"));
    assert!(is_index_of("mpauthx|index||oUser", "oUser"));
    assert!(!is_index_of("mpauthx|index|sku|oUserX", "oUser"));
    assert!(!is_index_of("mpauthx|index|sku|x|oUser", "oUser"));
    assert!(!is_index_of("mpauthx|user|sku|oUser", "oUser"));
    assert_eq!(glob_escape(r"o*?[a]\x"), r"o\*\?\[a\]\\x");
    assert_eq!(glob_escape("oUser-1_^"), "oUser-1_^");
  }

  #[test]
  fn a_token_is_due_to_slide_in_the_second_half_of_its_ttl_only_when_sliding() {
    let target = RedisTarget::Single("redis://127.0.0.1:6379".into());
    let store = |sliding: Option<&str>| {
      let tls = RedisTls::default();
      let sliding = sliding.map(str::to_owned);
      RedisSessions::new(&target, None, &tls, Duration::from_secs(4), 0, sliding).unwrap()
    };
    let (sliding, fixed) = (store(Some("shop")), store(None));
    let (own, other) = (
      format!("o|shop|{}", "a".repeat(64)),
      format!("o|admin|{}", "a".repeat(64)),
    );
    assert!(sliding.due(&own, 1_999) && sliding.due(&own, 0));
    assert!(!sliding.due(&own, 2_000) && !sliding.due(&own, -1) && !sliding.due(&own, -2));
    assert!(
      !sliding.due(&other, 1),
      "another sku's token keeps its own TTL"
    );
    assert!(!fixed.due(&own, 1));
  }

  #[test]
  fn a_password_is_accepted_and_bad_urls_are_not() {
    let single = |url: &str| RedisTarget::Single(url.into());
    let cluster = |url: &str| RedisTarget::Cluster(vec![url.into()]);
    let ttl = Duration::from_secs(5);
    for cache_size in [0, 10] {
      let new = |target: RedisTarget, pass| {
        RedisSessions::new(&target, pass, &RedisTls::default(), ttl, cache_size, None)
      };
      assert!(new(single("redis://127.0.0.1:6379"), Some("pw")).is_ok());
      assert!(new(cluster("redis://127.0.0.1:7000"), Some("pw")).is_ok());
      assert!(new(single("http://x"), None).is_err());
      assert!(new(cluster("http://x"), None).is_err());
    }
  }
}
