//! The app's WeChat access token in Redis: `mpauthx|access_token|<appId>|current` caches it
//! for every process, and `…|lock` is the right to fetch a new one.

use std::time::Duration;

use redis::AsyncCommands;

use super::connection::RedisConnection;
use super::RedisTokens;
use crate::error::Result;

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
    self
      .on_connection(|mut redis| async move {
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
    let key = &key;
    self
      .on_connection(|mut redis| async move {
        let set: Option<String> = redis::cmd("SET")
          .arg(key)
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
    self
      .on_connection(|mut redis| async move { self.release_lock(&mut redis, app_id, owner).await })
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
    self
      .on_connection(|mut redis| async move {
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
}

/// The keys of an app's shared access token (`current`) and of the right to refresh it
/// (`lock`); four parts, so never a token.
fn access_token_key(app_id: &str, which: &str) -> String {
  format!("mpauthx|access_token|{app_id}|{which}")
}
