//! The app's WeChat access token in the SQLite file: one row per app holds the cached token
//! and the lock on fetching a new one, with the lock's lease.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::SqliteTokens;
use crate::error::Result;
use crate::store::{now_us, FetchLock, MAX_LEASE};

const SCHEMA: &str = "
  CREATE TABLE IF NOT EXISTS mpauthx_access_token(
    app_id TEXT PRIMARY KEY NOT NULL,
    access_token TEXT,
    expires_at_us INTEGER NOT NULL DEFAULT 0,
    lock_until_us INTEGER NOT NULL DEFAULT 0,
    lock_owner TEXT,
    lock_lease_us INTEGER NOT NULL DEFAULT 0
  );
";

/// Tables written before the lock's lease was stored gain the column.
const ADD_LEASE: &str =
  "ALTER TABLE mpauthx_access_token ADD COLUMN lock_lease_us INTEGER NOT NULL DEFAULT 0";

impl SqliteTokens {
  /// The access token of `app_id` cached by any process, with its remaining seconds.
  pub async fn cached_access_token(&self, app_id: &str) -> Result<Option<(String, u64)>> {
    let app_id = app_id.to_owned();
    self
      .database
      .run_in(&self.access_token_schema, move |db| {
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
  pub async fn lock_access_token(&self, lock: FetchLock<'_>, lease: Duration) -> Result<bool> {
    let (app_id, owner) = owned(lock);
    let lease_us = lease.as_micros() as i64;
    let max_lease_us = MAX_LEASE.as_micros() as i64;
    self
      .database
      .run_in(&self.access_token_schema, move |db| {
        let now = now_us() as i64;
        let taken = db
          .prepare_cached(
            "INSERT INTO mpauthx_access_token(app_id, lock_until_us, lock_lease_us, lock_owner) \
             VALUES (?1, ?2 + ?3, ?3, ?4) \
             ON CONFLICT(app_id) DO UPDATE SET lock_until_us = excluded.lock_until_us, \
             lock_lease_us = excluded.lock_lease_us, lock_owner = excluded.lock_owner \
             WHERE lock_until_us <= ?2 OR lock_until_us > ?2 + \
             (CASE WHEN lock_lease_us BETWEEN 1 AND ?5 THEN lock_lease_us ELSE ?5 END)",
          )?
          .execute((&app_id, now, lease_us, &owner, max_lease_us))?;
        Ok(taken == 1)
      })
      .await
  }

  /// Caches a fresh access token for `ttl`, in place of any cached one.
  pub async fn store_access_token(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    self.cache(app_id, token, ttl, false).await
  }

  /// Caches `token` for `ttl` unless a live one is cached already; the lock is left alone.
  pub async fn offer_access_token(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    self.cache(app_id, token, ttl, true).await
  }

  /// Caches `token` for `ttl`, when `if_absent` only where no live one is cached.
  async fn cache(&self, app_id: &str, token: &str, ttl: Duration, if_absent: bool) -> Result<()> {
    let (app_id, token) = (app_id.to_owned(), token.to_owned());
    let ttl_us = ttl.as_micros() as i64;
    self
      .database
      .run_in(&self.access_token_schema, move |db| {
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
  pub async fn unlock_access_token(&self, lock: FetchLock<'_>) -> Result<()> {
    let (app_id, owner) = owned(lock);
    self
      .database
      .run_in(&self.access_token_schema, move |db| {
        db.prepare_cached(
          "UPDATE mpauthx_access_token SET lock_until_us = 0 WHERE app_id = ?1 AND lock_owner = ?2",
        )?
        .execute((&app_id, &owner))?;
        Ok(())
      })
      .await
  }

  /// Forgets the cached access token if it is still `token` (which WeChat refused).
  pub async fn drop_access_token(&self, app_id: &str, token: &str) -> Result<()> {
    let (app_id, token) = (app_id.to_owned(), token.to_owned());
    self
      .database
      .run_in(&self.access_token_schema, move |db| {
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

/// Creates the table, or brings an earlier version's up to date; IMMEDIATE, so two processes
/// never both add the column.
pub(super) fn create_schema(db: &mut Connection) -> rusqlite::Result<()> {
  let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
  transaction.execute_batch(SCHEMA)?;
  let has_lease: bool = transaction.query_row(
    "SELECT count(*) > 0 FROM pragma_table_info('mpauthx_access_token') WHERE name = 'lock_lease_us'",
    [],
    |row| row.get(0),
  )?;
  if !has_lease {
    transaction.execute_batch(ADD_LEASE)?;
  }
  transaction.commit()
}
