//! Redis, the infrastructure: the connection to one server, a Cluster or the master named by
//! sentinels ([`connection`]), every call under a deadline and retried once on a dead
//! connection, the key schema ([`keys`]) and the Lua scripts ([`scripts`]). It knows no rule of
//! tokens, users or app tokens: the concerns that keep their data here (`sessions`,
//! `app_token`, `users::registrations`, `validation_cache`) do. Every step touches a single
//! key, so the same code is race-safe on a single Redis and on Redis Cluster.

mod connection;
pub mod keys;
pub mod scripts;

use std::time::Duration;

use crate::config::{RedisTarget, RedisTls};
use crate::error::{Error, Result};
use crate::telemetry::{call, Backend, Link};

use connection::Connector;
pub use connection::{PushHandler, RedisConnection, Scan};

/// Every public call fails with [`Error::Store`] past this, so a dead or hung Redis never
/// stalls a caller: connecting and each reply are bounded more tightly still.
pub const DEADLINE: Duration = Duration::from_millis(1_500);

/// One Redis connection of an instance: made on first use, re-made after failures, closed
/// once; shared by the concerns that keep their data in Redis.
pub struct Redis {
  connector: Connector,
  /// Whether its state is the token store's in `health()` (the tracking connection's is not).
  reports_link: bool,
}

impl Redis {
  /// Checks the URLs without connecting; `password`, when given, applies to every node. With
  /// `push`, the connection speaks RESP3 and hands its pushes to it.
  pub fn new(
    target: &RedisTarget, password: Option<&str>, tls: &RedisTls, push: Option<PushHandler>,
  ) -> Result<Self> {
    Ok(Self {
      reports_link: push.is_none(),
      connector: Connector::new(target, password, tls, push)?,
    })
  }

  /// The connection, made now if this is its first use; for steps already under
  /// [`Redis::within_deadline`].
  pub async fn get(&self) -> Result<RedisConnection> {
    self.connector.get().await
  }

  /// Runs `operation` on the connection within [`DEADLINE`], once more when the connection
  /// turned out to be dead (see [`Redis::within_deadline`]).
  pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T>
  where
    F: Fn(RedisConnection) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
  {
    self
      .within_deadline(|| async { operation(self.get().await?).await })
      .await
  }

  /// Runs a store operation within [`DEADLINE`], and once more when the connection turned out
  /// to be dead (a restarted Redis, a connection closed while idle): the client reconnects on
  /// that failure, and every operation here is safe to run again from the start.
  pub async fn within_deadline<T, F, Fut>(&self, operation: F) -> Result<T>
  where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
  {
    let attempts = async {
      match operation().await {
        Err(err) if err.is_disconnected() => {
          self.connector.forget_master();
          call::store_retry(Backend::Redis);
          operation().await
        }
        outcome => outcome,
      }
    };
    let server = self.connector.server();
    match tokio::time::timeout(DEADLINE, attempts).await {
      Ok(outcome) => {
        if self.reports_link {
          report_link(&outcome);
        }
        outcome.map_err(|err| at_server(err, server))
      }
      Err(_) => {
        // The reply in flight is dropped: a failed round trip of its own.
        call::store_failure(Backend::Redis);
        if self.reports_link {
          call::link(Link::Redis, false, Some("timeout"));
        }
        Err(Error::Store {
          public: "Redis is unavailable",
          why: format!("{server} did not answer within {} ms", DEADLINE.as_millis()),
        })
      }
    }
  }

  /// Whether Redis answers (`PING`), with the password and TLS settings given.
  pub async fn ping(&self) -> Result<()> {
    self
      .run(|mut redis| async move {
        let _: String = redis::cmd("PING").query_async(&mut redis).await?;
        Ok(())
      })
      .await
  }

  /// `SET key value PX ttl`, with `NX` when `if_absent`: true when it was set.
  pub async fn set_for(
    &self, key: &str, value: &str, ttl: Duration, if_absent: bool,
  ) -> Result<bool> {
    self
      .run(|mut redis| async move {
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

  /// Deletes `key` if it still holds `value` (`compare_and_delete.lua`).
  pub async fn delete_if_holds(&self, key: &str, value: &str) -> Result<()> {
    self
      .run(|mut redis| async move {
        let mut script = scripts::COMPARE_AND_DELETE.key(key);
        let _: i64 = script.arg(value).invoke_async(&mut redis).await?;
        Ok(())
      })
      .await
  }

  /// After a lost connection, with Sentinel: the next use asks the sentinels for the master
  /// again. Says whether it dropped a connection.
  pub fn forget_master(&self) -> bool {
    self.connector.forget_master()
  }

  /// Drops the connection; later calls fail with [`Error::Closed`].
  pub fn close(&self) {
    self.connector.close();
  }
}

/// Sends one command per key, made by `command`: one pipeline on a single Redis, one command
/// each (multiplexed per node) on a cluster, where the keys hash to different slots.
pub async fn per_key<T: redis::FromRedisValue>(
  redis: &mut RedisConnection, keys: &[&str], command: impl Fn(&str) -> redis::Cmd,
) -> Result<Vec<redis::RedisResult<T>>> {
  if redis.is_cluster() {
    let commands = keys.iter().map(|&key| {
      let mut redis = redis.clone();
      let command = command(key);
      async move { command.query_async(&mut redis).await }
    });
    return Ok(futures_util::future::join_all(commands).await);
  }
  let mut pipe = redis::pipe();
  pipe.ignore_errors();
  for &key in keys {
    pipe.add_command(command(key));
  }
  Ok(pipe.query_async(redis).await?)
}

/// What an operation that ended within the deadline showed of the server: up when it
/// answered (an error reply included), down when it could not be reached.
fn report_link<T>(outcome: &Result<T>) {
  match outcome {
    Err(err @ Error::Redis { .. }) if !err.is_refusal() => {
      let kind = if err.is_disconnected() {
        "disconnected"
      } else {
        "unreachable"
      };
      call::link(Link::Redis, false, Some(kind))
    }
    Err(Error::Closed) => {}
    _ => call::link(Link::Redis, true, None),
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
  use std::sync::Arc;

  #[test]
  fn a_password_is_accepted_and_bad_urls_are_not() {
    let single = |url: &str| RedisTarget::Single(url.into());
    let cluster = |url: &str| RedisTarget::Cluster(vec![url.into()]);
    // Without and with a push handler: the command connection and the tracking one.
    let handler: PushHandler = Arc::new(|_| {});
    for push in [None, Some(handler)] {
      let new =
        |target: RedisTarget, pass| Redis::new(&target, pass, &RedisTls::default(), push.clone());
      assert!(new(single("redis://127.0.0.1:6379"), Some("pw")).is_ok());
      assert!(new(cluster("redis://127.0.0.1:7000"), Some("pw")).is_ok());
      assert!(new(single("http://x"), None).is_err());
      assert!(new(cluster("http://x"), None).is_err());
    }
  }
}
