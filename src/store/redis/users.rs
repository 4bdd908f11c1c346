//! The record of a registered user, `mpauthx|user|<sku>|<userId>` with no TTL, so that every
//! server sharing the Redis knows a user that registered on any of them (each server has
//! its own SQLite file).

use redis::AsyncCommands;

use super::RedisTokens;
use crate::error::Result;

impl RedisTokens {
  /// Records that the user is registered for `sku`, for every server sharing this Redis.
  pub async fn remember_user(&self, user_id: &str, sku: &str) -> Result<()> {
    self
      .on_connection(|mut redis| async move {
        let () = redis.set(user_key(user_id, sku), 1).await?;
        Ok(())
      })
      .await
  }

  /// Whether any server recorded the user as registered for `sku`.
  pub async fn knows_user(&self, user_id: &str, sku: &str) -> Result<bool> {
    self
      .on_connection(|mut redis| async move { Ok(redis.exists(user_key(user_id, sku)).await?) })
      .await
  }
}

/// The key that records a registered user of a sku, for servers whose SQLite file has never
/// seen that user; like the index, four parts, so never a token.
fn user_key(user_id: &str, sku: &str) -> String {
  format!("mpauthx|user|{sku}|{user_id}")
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::token;

  #[test]
  fn a_user_key_is_never_a_token() {
    let key = user_key("oUser", "sku");
    assert!(!token::is_well_formed(&key));
    assert_eq!(key, "mpauthx|user|sku|oUser");
  }
}
