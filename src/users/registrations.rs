//! The records in Redis that a user registered, `mpauthx|user|<sku>|<userId>`, so that every
//! server sharing the Redis knows a user that registered on any of them (each server has its
//! own SQLite file). A record lives `registrationTtl` after the user's latest token was issued
//! or slid, never less than that token (a slide extends it: see `sessions::RedisSessions`).

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;

use crate::error::Result;
use crate::store::redis::{keys, Redis};

/// The registration records of one sku.
pub struct Registrations {
  redis: Arc<Redis>,
  /// The instance's sku: records are per sku, as tokens are.
  sku: String,
  /// How long a record lives (`registrationTtl`).
  ttl: Duration,
}

impl Registrations {
  pub fn new(redis: Arc<Redis>, sku: String, ttl: Duration) -> Self {
    Self { redis, sku, ttl }
  }

  /// Records that the user is registered for the sku, for every server sharing this Redis,
  /// for `registrationTtl` from now.
  pub async fn remember(&self, user_id: &str) -> Result<()> {
    let key = &keys::registration(user_id, &self.sku);
    let seconds = self.ttl.as_secs();
    self
      .redis
      .run(|mut redis| async move {
        // `SET … EX`, not `SETEX`: the least-privilege ACL (docs/production-redis.md) allows
        // `set` and `expire`.
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
  pub async fn knows(&self, user_id: &str) -> Result<bool> {
    let key = &keys::registration(user_id, &self.sku);
    let seconds = self.ttl.as_secs() as i64;
    self
      .redis
      .run(|mut redis| async move { Ok(redis.expire(key, seconds).await?) })
      .await
  }
}
