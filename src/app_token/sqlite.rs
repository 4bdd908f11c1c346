//! The app's WeChat access token in the SQLite file: one row of `mpauthx_access_token` per app
//! holds the cached token and the lock on fetching a new one, with the lock's lease.

use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::{FetchLock, MAX_LEASE};
use crate::error::Result;
use crate::store::now_us;
use crate::store::sqlite::{schema, Database, Schema};

/// The app token's cache and lock in the SQLite file.
pub struct SqliteAppToken {
  database: Database,
  /// `mpauthx_access_token`, created (or brought up to date) on first use.
  schema: Schema,
}

impl SqliteAppToken {
  pub fn new(database: Database) -> Self {
    Self {
      database,
      schema: Schema::new(schema::create_app_token),
    }
  }
  /// The access token of `app_id` cached by any process, with its remaining seconds.
  pub async fn cached(&self, app_id: &str) -> Result<Option<(String, u64)>> {
    let app_id = app_id.to_owned();
    self
      .database
      .run_in(&self.schema, move |db| {
        let now = now_us() as i64;
        Ok(
          db.prepare_cached(
            "SELECT access_token, expires_at_us FROM mpauthx_access_token \
             WHERE app_id = ?1 AND access_token IS NOT NULL AND expires_at_us > ?2",
          )?
          .query_row((&app_id, now), |row| {
            Ok((
              row.get(0)?,
              ((row.get::<_, i64>(1)? - now) / 1_000_000) as u64,
            ))
          })
          .optional()?,
        )
      })
      .await
  }

  /// Takes the right to fetch a new access token for a lease of `lease`; false when another
  /// caller holds it.
  ///
  /// The lease length is stored with the lock. A lock is held until its lease ends on this
  /// clock; one whose end lies further ahead than its own lease (at most [`MAX_LEASE`]) was
  /// written by a process whose clock is ahead, or before a clock step, and is taken over
  /// rather than waited for: no clock step stretches a lease.
  pub async fn lock(&self, lock: FetchLock<'_>, lease: Duration) -> Result<bool> {
    let (app_id, owner) = owned(lock);
    let lease_us = lease.as_micros() as i64;
    let max_lease_us = MAX_LEASE.as_micros() as i64;
    self
      .database
      .run_in(&self.schema, move |db| {
        // The clock is read once the write lock is held: read before waiting for another
        // writer, it could be older than a lock that writer just took, which would then look
        // set in the future and be taken over (two fetches).
        let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_us() as i64;
        let taken = transaction
          .prepare_cached(
            "INSERT INTO mpauthx_access_token(app_id, lock_until_us, lock_lease_us, lock_owner) \
             VALUES (?1, ?2 + ?3, ?3, ?4) \
             ON CONFLICT(app_id) DO UPDATE SET lock_until_us = excluded.lock_until_us, \
             lock_lease_us = excluded.lock_lease_us, lock_owner = excluded.lock_owner \
             WHERE lock_until_us <= ?2 OR lock_until_us > ?2 + \
             (CASE WHEN lock_lease_us BETWEEN 1 AND ?5 THEN lock_lease_us ELSE ?5 END)",
          )?
          .execute((&app_id, now, lease_us, &owner, max_lease_us))?;
        transaction.commit()?;
        Ok(taken == 1)
      })
      .await
  }

  /// Caches a fresh access token for `ttl`, in place of any cached one.
  pub async fn store(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    self.cache(app_id, token, ttl, false).await
  }

  /// Caches `token` for `ttl` unless a live one is cached already; the lock is left alone.
  pub async fn offer(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    self.cache(app_id, token, ttl, true).await
  }

  /// Caches `token` for `ttl`, when `if_absent` only where no live one is cached.
  async fn cache(&self, app_id: &str, token: &str, ttl: Duration, if_absent: bool) -> Result<()> {
    let (app_id, token) = (app_id.to_owned(), token.to_owned());
    let ttl_us = ttl.as_micros() as i64;
    self
      .database
      .run_in(&self.schema, move |db| {
        db.prepare_cached(
          "INSERT INTO mpauthx_access_token(app_id, access_token, expires_at_us) \
           VALUES (?1, ?2, ?3 + ?4) \
           ON CONFLICT(app_id) DO UPDATE SET access_token = excluded.access_token, \
           expires_at_us = excluded.expires_at_us \
           WHERE NOT ?5 OR access_token IS NULL OR expires_at_us <= ?3",
        )?
        .execute((&app_id, &token, now_us() as i64, ttl_us, if_absent))?;
        Ok(())
      })
      .await
  }

  /// Releases the lock; a lock taken over since is left alone.
  pub async fn unlock(&self, lock: FetchLock<'_>) -> Result<()> {
    let (app_id, owner) = owned(lock);
    self
      .database
      .run_in(&self.schema, move |db| {
        db.prepare_cached(
          "UPDATE mpauthx_access_token SET lock_until_us = 0 WHERE app_id = ?1 AND lock_owner = ?2",
        )?
        .execute((&app_id, &owner))?;
        Ok(())
      })
      .await
  }

  /// Forgets the cached access token if it is still `token` (which WeChat refused).
  pub async fn drop_refused(&self, app_id: &str, token: &str) -> Result<()> {
    let (app_id, token) = (app_id.to_owned(), token.to_owned());
    self
      .database
      .run_in(&self.schema, move |db| {
        db.prepare_cached(
          "UPDATE mpauthx_access_token SET access_token = NULL, expires_at_us = 0 \
           WHERE app_id = ?1 AND access_token = ?2",
        )?
        .execute((&app_id, &token))?;
        Ok(())
      })
      .await
  }
}

/// The lock's app and owner, for a statement run off this thread.
fn owned(lock: FetchLock<'_>) -> (String, String) {
  (lock.app_id.to_owned(), lock.owner.to_owned())
}
