//! The record of a registered user, `mpauthx|user|<sku>|<userId>`, so that every server
//! sharing the Redis knows a user that registered on any of them (each server has its own
//! SQLite file). It lives `registrationTtl` after the user's latest token was issued or slid,
//! never less than that token.

use redis::AsyncCommands;

use super::RedisTokens;
use crate::error::Result;

impl RedisTokens {
  /// Records that the user is registered for the sku, for every server sharing this Redis,
  /// for `registrationTtl` from now.
  pub async fn remember_user(&self, user_id: &str) -> Result<()> {
    let key = &user_key(user_id, &self.sku);
    let seconds = self.registration_ttl.as_secs();
    self
      .on_connection(|mut redis| async move {
        // `SET … EX`, not `SETEX`: the README's least-privilege ACL allows `set` and `expire`.
        let () = redis::cmd("SET")
          .arg(key)
          .arg(1)
          .arg("EX")
          .arg(seconds)
          .query_async(&mut redis)
          .await?;
        Ok(())
      })
      .await
  }

  /// Whether any server recorded the user as registered for the sku; a record found is
  /// renewed for `registrationTtl` in the same command, as a token is about to be issued.
  pub async fn knows_user(&self, user_id: &str) -> Result<bool> {
    let key = &user_key(user_id, &self.sku);
    let seconds = self.registration_ttl.as_secs() as i64;
    self
      .on_connection(|mut redis| async move { Ok(redis.expire(key, seconds).await?) })
      .await
  }
}

/// The key that records a registered user of a sku, for servers whose SQLite file has never
/// seen that user; like the index, four parts, so never a token.
pub(super) fn user_key(user_id: &str, sku: &str) -> String {
  format!("mpauthx|user|{sku}|{user_id}")
}
