//! The token store in Redis, laid out as mpauthx 1.3.2 kept it, plus an index for O(1)
//! look-ups; see [`tokens`] for the keys. Every step touches a single key, so the same code
//! is race-safe on a single Redis and on Redis Cluster.
//!
//! - `connection`: the connection to one server, a Cluster or the master named by sentinels.
//! - `tokens`: issuing, checking, sliding and revoking tokens.
//! - `tracking`: the second connection whose client-side tracking keeps the
//!   [`ValidationCache`] exact.
//! - `access_token`: the app's WeChat access token, cached and locked for every process.
//! - `users`: the record of a registered user, for servers that do not share the SQLite file.

mod access_token;
mod connection;
mod tokens;
mod tracking;
mod users;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Script;

use crate::config::{RedisTarget, RedisTls, DEFAULT_REVOKE_USER_SCAN_MS};
use crate::error::{Error, Result};
use crate::token;
use crate::validation_cache::{CachedToken, ValidationCache, Validity, Vouched};

use connection::{Connector, RedisConnection};
use tracking::Tracking;

/// Every public call fails with [`Error::Store`] past this, so a dead or hung Redis never
/// stalls a caller: connecting and each reply are bounded more tightly still.
pub const DEADLINE: Duration = Duration::from_millis(1_500);

/// Deletes a string key only if it still holds `ARGV[1]`: the access-token lock only for the
/// caller that holds it, the cached access token only if it is still the one WeChat refused,
/// an index only if it still names the token revoked.
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The token store in Redis, with its validation cache when it has one.
pub struct RedisTokens {
  redis: Connector,
  compare_and_set: Script,
  create: Script,
  keep_session_key: Script,
  cached_access_token: Script,
  compare_and_delete: Script,
  slide_index: Script,
  session_key: Script,
  read: Script,
  revoke: Script,
  ttl: Duration,
  /// How long the record of a registered user lives after its latest token was issued or
  /// slid; never less than `ttl`.
  registration_ttl: Duration,
  /// The instance's sku: the tokens it issues and looks up.
  sku: String,
  /// `slidingTtl`: checks give this sku's tokens, in the second half of their TTL, the whole
  /// TTL back; other skus' tokens keep the TTL their own instances gave them.
  sliding: bool,
  /// How long `revokeUser`'s pass over the keyspace may take (`revokeUserScanMs`).
  revoke_user_scan: Duration,
  tracking: Option<Arc<Tracking>>,
}

impl RedisTokens {
  /// Prepares the store; connections are made on first use and re-made after failures.
  /// Tokens live `ttl`, the record of a registered user `registration_ttl` after its latest
  /// token; `cache_size` live tokens are remembered (none when 0); with `sliding`, checks
  /// extend `sku`'s tokens in the second half of their TTL.
  pub fn new(
    target: &RedisTarget, redis_pass: Option<&str>, redis_tls: &RedisTls,
    (ttl, registration_ttl): (Duration, Duration), cache_size: usize, sku: String, sliding: bool,
  ) -> Result<Self> {
    let tracking = match NonZeroUsize::new(cache_size) {
      None => None,
      Some(capacity) => {
        let cache = ValidationCache::new(capacity);
        Some(Tracking::new(target, redis_pass, redis_tls, cache)?)
      }
    };
    Ok(Self {
      redis: Connector::new(target, redis_pass, redis_tls, None)?,
      compare_and_set: Script::new(tokens::COMPARE_AND_SET),
      create: Script::new(tokens::CREATE),
      keep_session_key: Script::new(tokens::KEEP_SESSION_KEY),
      cached_access_token: Script::new(access_token::CACHED),
      compare_and_delete: Script::new(COMPARE_AND_DELETE),
      slide_index: Script::new(tokens::SLIDE_INDEX),
      session_key: Script::new(tokens::SESSION_KEY),
      read: Script::new(tracking::READ),
      revoke: Script::new(tokens::REVOKE),
      ttl,
      registration_ttl: registration_ttl.max(ttl),
      sku,
      sliding,
      revoke_user_scan: Duration::from_millis(DEFAULT_REVOKE_USER_SCAN_MS as u64),
      tracking,
    })
  }

  /// Bounds `revokeUser`'s pass over the keyspace by `budget` in all (each `SCAN` step by
  /// [`DEADLINE`]); 10 s unless set.
  pub fn with_revoke_user_scan(mut self, budget: Duration) -> Self {
    self.revoke_user_scan = budget;
    self
  }

  /// Whether Redis answers (`PING`), with the password and TLS settings given.
  pub async fn ready(&self) -> Result<()> {
    self
      .on_connection(|mut redis| async move {
        let _: String = redis::cmd("PING").query_async(&mut redis).await?;
        Ok(())
      })
      .await
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

  /// Empties the validation cache (see [`TokenStore::forget_all`](super::TokenStore::forget_all)).
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

  /// Runs `operation` on the command connection within [`DEADLINE`], once more when the
  /// connection turned out to be dead (see [`within_deadline`]).
  async fn on_connection<T, F, Fut>(&self, operation: F) -> Result<T>
  where
    F: Fn(RedisConnection) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
  {
    within_deadline(&self.redis, || async {
      operation(self.redis.get().await?).await
    })
    .await
  }

  /// Deletes `key` if it still holds `value` (the compare-and-delete script).
  async fn delete_if_holds(&self, key: &str, value: &str) -> Result<()> {
    self
      .on_connection(|mut redis| async move {
        let mut script = self.compare_and_delete.key(key);
        let _: i64 = script.arg(value).invoke_async(&mut redis).await?;
        Ok(())
      })
      .await
  }

  /// Drops a token this instance deleted or replaced, before the call resolves (the
  /// invalidation Redis sends may arrive just after).
  fn forget(&self, token: &str) {
    if let Some(tracking) = &self.tracking {
      tracking.cache.invalidate([token.as_bytes()]);
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
  redis: &mut RedisConnection, tokens: &[&str], command: impl Fn(&str) -> redis::Cmd,
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
      Err(err) if err.is_disconnected() => {
        redis.forget_master();
        operation().await
      }
      outcome => outcome,
    }
  };
  let server = redis.server();
  match tokio::time::timeout(DEADLINE, attempts).await {
    Ok(outcome) => outcome.map_err(|err| at_server(err, server)),
    Err(_) => Err(Error::Store {
      public: "Redis is unavailable",
      why: format!("{server} did not answer within {} ms", DEADLINE.as_millis()),
    }),
  }
}

/// A Redis failure named after the server it came from.
fn at_server(err: Error, at: &str) -> Error {
  match err {
    Error::Redis { why, source, .. } => Error::Redis {
      server: at.to_owned(),
      why,
      source,
    },
    other => other,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn no_key_of_the_store_is_ever_a_token() {
    let keys = [
      (tokens::index_key("oUser", "sku"), "mpauthx|index|sku|oUser"),
      (users::user_key("oUser", "sku"), "mpauthx|user|sku|oUser"),
      (
        access_token::access_token_key("wx1", "lock"),
        "mpauthx|access_token|wx1|lock",
      ),
    ];
    for (key, expected) in keys {
      assert_eq!(key, expected);
      assert!(!token::is_well_formed(&key), "{key} reads as a token");
    }
  }

  #[test]
  fn a_password_is_accepted_and_bad_urls_are_not() {
    let single = |url: &str| RedisTarget::Single(url.into());
    let cluster = |url: &str| RedisTarget::Cluster(vec![url.into()]);
    let ttl = Duration::from_secs(5);
    for cache_size in [0, 10] {
      let new = |target: RedisTarget, pass| {
        RedisTokens::new(
          &target,
          pass,
          &RedisTls::default(),
          (ttl, ttl),
          cache_size,
          "sku".into(),
          false,
        )
      };
      assert!(new(single("redis://127.0.0.1:6379"), Some("pw")).is_ok());
      assert!(new(cluster("redis://127.0.0.1:7000"), Some("pw")).is_ok());
      assert!(new(single("http://x"), None).is_err());
      assert!(new(cluster("http://x"), None).is_err());
    }
  }
}
