//! The app's WeChat access token in Redis: `mpauthx|access_token|<appId>|current` caches it
//! for every process, and `…|lock` is the right to fetch a new one (see `store::redis::keys`).

use std::sync::Arc;
use std::time::Duration;

use super::FetchLock;
use crate::error::Result;
use crate::store::redis::{keys, scripts, Redis};

/// The app token's cache and lock in Redis.
pub struct RedisAppToken {
  redis: Arc<Redis>,
}

impl RedisAppToken {
  pub fn new(redis: Arc<Redis>) -> Self {
    Self { redis }
  }

  /// The access token of `app_id` cached by any process, with its remaining seconds.
  pub async fn cached(&self, app_id: &str) -> Result<Option<(String, u64)>> {
    self
      .redis
      .run(|mut redis| async move {
        let cached: Option<(String, i64)> = scripts::CACHED_APP_TOKEN
          .key(&keys::app_token(app_id))
          .invoke_async(&mut redis)
          .await?;
        Ok(cached.map(|(token, ttl)| (token, u64::try_from(ttl).unwrap_or(0))))
      })
      .await
  }

  /// Takes the right to fetch a new access token for a lease of `lease`; false when another
  /// caller holds it.
  pub async fn lock(&self, lock: FetchLock<'_>, lease: Duration) -> Result<bool> {
    let key = keys::app_token_lock(lock.app_id);
    self.redis.set_for(&key, lock.owner, lease, true).await
  }

  /// Caches a fresh access token for `ttl`, in place of any cached one.
  pub async fn store(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    let key = keys::app_token(app_id);
    self.redis.set_for(&key, token, ttl, false).await.map(drop)
  }

  /// Caches `token` for `ttl` unless a live one is cached already.
  pub async fn offer(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    let key = keys::app_token(app_id);
    self.redis.set_for(&key, token, ttl, true).await.map(drop)
  }

  /// Releases the lock; a lock taken over since is left alone.
  pub async fn unlock(&self, lock: FetchLock<'_>) -> Result<()> {
    let key = keys::app_token_lock(lock.app_id);
    self.redis.delete_if_holds(&key, lock.owner).await
  }

  /// Forgets the cached access token if it is still `token` (which WeChat refused).
  pub async fn drop_refused(&self, app_id: &str, token: &str) -> Result<()> {
    let key = keys::app_token(app_id);
    self.redis.delete_if_holds(&key, token).await
  }
}
