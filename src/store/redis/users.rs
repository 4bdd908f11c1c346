//! The record of a registered user, `mpauthx|user|<sku>|<userId>` with no TTL, so that every
//! server sharing the Redis knows a user that registered on any of them (each server has
//! its own SQLite file).

use redis::AsyncCommands;

use super::RedisTokens;
use crate::error::Result;

impl RedisTokens {
  /// Records that the user is registered for the sku, for every server sharing this Redis.
  pub async fn remember_user(&self, user_id: &str) -> Result<()> {
    let key = &user_key(user_id, &self.sku);
    self
      .on_connection(|mut redis| async move {
        let () = redis.set(key, 1).await?;
        Ok(())
      })
      .await
  }

  /// Whether any server recorded the user as registered for the sku.
  pub async fn knows_user(&self, user_id: &str) -> Result<bool> {
    let key = &user_key(user_id, &self.sku);
    self
      .on_connection(|mut redis| async move { Ok(redis.exists(key).await?) })
      .await
  }
}

/// The key that records a registered user of a sku, for servers whose SQLite file has never
/// seen that user; like the index, four parts, so never a token.
pub(super) fn user_key(user_id: &str, sku: &str) -> String {
  format!("mpauthx|user|{sku}|{user_id}")
}
