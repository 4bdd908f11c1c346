//! The app's WeChat access token in Redis: `mpauthx|access_token|<appId>|current` caches it
//! for every process, and `…|lock` is the right to fetch a new one.

use std::time::Duration;

use super::RedisTokens;
use crate::error::Result;
use crate::store::FetchLock;

/// The cached access token and its remaining seconds, or nothing.
pub(super) const CACHED: &str = r"
local token = redis.call('GET', KEYS[1])
if not token then return false end
return {token, redis.call('TTL', KEYS[1])}
";

impl RedisTokens {
  /// The access token of `app_id` cached by any process, with its remaining seconds.
  pub async fn cached_access_token(&self, app_id: &str) -> Result<Option<(String, u64)>> {
    self
      .on_connection(|mut redis| async move {
        let cached: Option<(String, i64)> = self
          .cached_access_token
          .key(access_token_key(app_id, "current"))
          .invoke_async(&mut redis)
          .await?;
        Ok(cached.map(|(token, ttl)| (token, u64::try_from(ttl).unwrap_or(0))))
      })
      .await
  }

  /// Takes the right to fetch a new access token for a lease of `lease`; false when another
  /// caller holds it.
  pub async fn lock_access_token(&self, lock: FetchLock<'_>, lease: Duration) -> Result<bool> {
    let key = access_token_key(lock.app_id, "lock");
    self.set_for(&key, lock.owner, lease, true).await
  }

  /// Caches a fresh access token for `ttl`, in place of any cached one.
  pub async fn store_access_token(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    let key = access_token_key(app_id, "current");
    self.set_for(&key, token, ttl, false).await.map(drop)
  }

  /// Caches `token` for `ttl` unless a live one is cached already.
  pub async fn offer_access_token(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    self
      .set_for(&access_token_key(app_id, "current"), token, ttl, true)
      .await
      .map(drop)
  }

  /// `SET key value PX ttl`, with `NX` when `if_absent`: true when it was set.
  async fn set_for(&self, key: &str, value: &str, ttl: Duration, if_absent: bool) -> Result<bool> {
    self
      .on_connection(|mut redis| async move {
        let mut set = redis::cmd("SET");
        set
          .arg(key)
          .arg(value)
          .arg("PX")
          .arg(ttl.as_millis() as u64);
        if if_absent {
          set.arg("NX");
        }
        let reply: Option<String> = set.query_async(&mut redis).await?;
        Ok(reply.is_some())
      })
      .await
  }

  /// Releases the lock; a lock taken over since is left alone.
  pub async fn unlock_access_token(&self, lock: FetchLock<'_>) -> Result<()> {
    let key = access_token_key(lock.app_id, "lock");
    self.delete_if_holds(&key, lock.owner).await
  }

  /// Forgets the cached access token if it is still `token` (which WeChat refused).
  pub async fn drop_access_token(&self, app_id: &str, token: &str) -> Result<()> {
    let key = access_token_key(app_id, "current");
    self.delete_if_holds(&key, token).await
  }
}

/// The keys of an app's shared access token (`current`) and of the right to refresh it
/// (`lock`); four parts, so never a token.
pub(super) fn access_token_key(app_id: &str, which: &str) -> String {
  format!("mpauthx|access_token|{app_id}|{which}")
}
