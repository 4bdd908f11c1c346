//! The token store in the application's SQLite file, for a single server without Redis: one
//! row per user and sku holds the current token, its issue time and its expiry, and one row
//! per app its WeChat access token and the lock on fetching it. Every change is one
//! `BEGIN IMMEDIATE` transaction, so concurrent calls, in this process or others, serialize.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::Database;
use crate::error::Result;
use crate::store::{now_us, Issue, TokenInfo, MAX_LEASE};
use crate::token;

const SCHEMA: &str = "
  CREATE TABLE IF NOT EXISTS mpauthx_session(
    token TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    ctime_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    session_key TEXT
  );
  CREATE UNIQUE INDEX IF NOT EXISTS mpauthx_session_user ON mpauthx_session(user_id, sku);
  CREATE INDEX IF NOT EXISTS mpauthx_session_expiry ON mpauthx_session(expires_at_us);
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

/// How many expired rows of other users each issue clears, so the table never grows without bound.
const SWEEP: usize = 64;

/// The token store in the SQLite file.
pub struct SqliteTokens {
  database: Database,
  ttl: Duration,
  /// `slidingTtl`: the sku (this instance's) whose tokens, checked in the second half of
  /// their TTL, get it whole back, and that TTL in µs; `None` when off.
  sliding: Option<Arc<(String, i64)>>,
  schema_ready: Arc<AtomicBool>,
}

impl SqliteTokens {
  /// Tokens in the same file as the users, through the same connection; with `sliding`,
  /// checks extend that sku's tokens in the second half of their TTL.
  pub fn new(database: Database, ttl: Duration, sliding: Option<String>) -> Self {
    Self {
      database,
      ttl,
      sliding: sliding.map(|sku| Arc::new((sku, ttl.as_micros() as i64))),
      schema_ready: Arc::new(AtomicBool::new(false)),
    }
  }

  pub async fn are_live(&self, tokens: &[&str]) -> Result<Vec<bool>> {
    let tokens: Vec<String> = tokens.iter().map(|&token| token.to_owned()).collect();
    let sliding = self.sliding.clone();
    self
      .run(move |db| {
        let now = now_us() as i64;
        tokens
          .iter()
          .map(|token| {
            if !token::is_well_formed(token) {
              return Ok(false);
            }
            let expires_at_us = live_until(db, token, now)?;
            if let (Some(expires_at_us), Some(ttl_us)) = (expires_at_us, slide_for(&sliding, token))
            {
              slide(db, token, expires_at_us, now, ttl_us)?;
            }
            Ok(expires_at_us.is_some())
          })
          .collect()
      })
      .await
  }

  pub async fn live_token(
    &self,
    user_id: &str,
    sku: &str,
    session_key: Option<&str>,
  ) -> Result<Option<String>> {
    let (user_id, sku) = (user_id.to_owned(), sku.to_owned());
    let session_key = session_key.map(str::to_owned);
    self
      .run(move |db| {
        let Some(row) = current(db, &user_id, &sku)? else {
          return Ok(None);
        };
        if session_key.is_some() && session_key != row.session_key {
          keep_session_key(db, &row.token, session_key.as_deref())?;
        }
        Ok(Some(row.token))
      })
      .await
  }

  pub async fn session_key(&self, token: &str) -> Result<Option<String>> {
    let token = token.to_owned();
    self
      .run(move |db| {
        let key = db
          .prepare_cached(
            "SELECT session_key FROM mpauthx_session WHERE token = ?1 AND expires_at_us > ?2",
          )?
          .query_row((&token, now_us() as i64), |row| {
            row.get::<_, Option<String>>(0)
          })
          .optional()?;
        Ok(key.flatten())
      })
      .await
  }

  pub async fn issue(
    &self,
    user_id: &str,
    sku: &str,
    mode: Issue,
    session_key: Option<&str>,
  ) -> Result<String> {
    let (user_id, sku) = (user_id.to_owned(), sku.to_owned());
    let session_key = session_key.map(str::to_owned);
    let ttl_us = self.ttl.as_micros() as i64;
    self
      .run(move |db| {
        // IMMEDIATE: the write lock is taken before reading, so two issuers never both miss.
        let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing = current(&transaction, &user_id, &sku)?;
        let reuse = match (&existing, mode) {
          (Some(_), Issue::ReuseLive) => true,
          (Some(row), Issue::Replace { requested_at_us }) => row.ctime_us >= requested_at_us as i64,
          (None, _) => false,
        };
        if let (true, Some(row)) = (reuse, &existing) {
          if session_key.is_some() && session_key != row.session_key {
            keep_session_key(&transaction, &row.token, session_key.as_deref())?;
            transaction.commit()?;
          }
          return Ok(row.token.clone());
        }
        // A refresh carries the session key of the token it replaces.
        let session_key = session_key.or_else(|| existing.and_then(|row| row.session_key));
        let token = token::generate(&user_id, &sku)?;
        let now = now_us() as i64;
        transaction
          .prepare_cached("DELETE FROM mpauthx_session WHERE user_id = ?1 AND sku = ?2")?
          .execute((&user_id, &sku))?;
        transaction
          .prepare_cached(
            "INSERT INTO mpauthx_session(token, user_id, sku, ctime_us, expires_at_us, session_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
          )?
          .execute((&token, &user_id, &sku, now, now + ttl_us, &session_key))?;
        transaction
          .prepare_cached(
            "DELETE FROM mpauthx_session WHERE rowid IN \
             (SELECT rowid FROM mpauthx_session WHERE expires_at_us <= ?1 LIMIT ?2)",
          )?
          .execute((now, SWEEP as i64))?;
        transaction.commit()?;
        Ok(token)
      })
      .await
  }

  /// Deletes the user's live token of `sku`, or of every sku when `None`; says how many.
  pub async fn revoke_user(&self, user_id: &str, sku: Option<&str>) -> Result<u64> {
    let (user_id, sku) = (user_id.to_owned(), sku.map(str::to_owned));
    self
      .run(move |db| {
        let deleted = db
          .prepare_cached(
            "DELETE FROM mpauthx_session \
             WHERE user_id = ?1 AND (?2 IS NULL OR sku = ?2) AND expires_at_us > ?3",
          )?
          .execute((&user_id, &sku, now_us() as i64))?;
        Ok(deleted as u64)
      })
      .await
  }

  pub async fn revoke(&self, token: &str) -> Result<bool> {
    let token = token.to_owned();
    self
      .run(move |db| {
        let deleted = db
          .prepare_cached("DELETE FROM mpauthx_session WHERE token = ?1 AND expires_at_us > ?2")?
          .execute((&token, now_us() as i64))?;
        Ok(deleted == 1)
      })
      .await
  }

  pub async fn describe(&self, token: &str) -> Result<Option<TokenInfo>> {
    let token = token.to_owned();
    let sliding = self.sliding.clone();
    self
      .run(move |db| {
        let now = now_us() as i64;
        let info = db
          .prepare_cached(
            "SELECT user_id, sku, ctime_us, expires_at_us FROM mpauthx_session \
             WHERE token = ?1 AND expires_at_us > ?2",
          )?
          .query_row((&token, now), |row| {
            Ok((
              TokenInfo {
                user_id: row.get(0)?,
                sku: row.get(1)?,
                ctime_ms: (row.get::<_, i64>(2)? / 1000) as u64,
                expires_in: None,
              },
              row.get::<_, i64>(3)?,
            ))
          })
          .optional()?;
        let Some((mut info, mut expires_at_us)) = info else {
          return Ok(None);
        };
        if let Some(ttl_us) = slide_for(&sliding, &token) {
          expires_at_us = slide(db, &token, expires_at_us, now, ttl_us)?;
        }
        info.expires_in = Some(((expires_at_us - now) / 1_000_000) as u64);
        Ok(Some(info))
      })
      .await
  }

  /// The access token of `app_id` cached by any process, with its remaining seconds.
  pub async fn cached_access_token(&self, app_id: &str) -> Result<Option<(String, u64)>> {
    let app_id = app_id.to_owned();
    self
      .run(move |db| {
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

  /// Takes the right to fetch a new access token for a lease of `ttl` as `owner`; false when
  /// another caller holds it.
  ///
  /// The lease length is stored with the lock. A lock is held until its lease ends on this
  /// clock; one whose end lies further ahead than its own lease (at most [`MAX_LEASE`]) was
  /// written by a process whose clock is ahead, or before a clock step, and is taken over
  /// rather than waited for: no clock step stretches a lease.
  pub async fn lock_access_token(&self, app_id: &str, owner: &str, ttl: Duration) -> Result<bool> {
    let (app_id, owner) = (app_id.to_owned(), owner.to_owned());
    let ttl_us = ttl.as_micros() as i64;
    let max_lease_us = MAX_LEASE.as_micros() as i64;
    self
      .run(move |db| {
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
          .execute((&app_id, now, ttl_us, &owner, max_lease_us))?;
        Ok(taken == 1)
      })
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
    let (app_id, token, owner) = (app_id.to_owned(), token.to_owned(), owner.to_owned());
    let ttl_us = ttl.as_micros() as i64;
    self
      .run(move |db| {
        db.prepare_cached(
          "UPDATE mpauthx_access_token SET access_token = ?2, expires_at_us = ?3, \
           lock_until_us = CASE WHEN lock_owner = ?4 THEN 0 ELSE lock_until_us END \
           WHERE app_id = ?1",
        )?
        .execute((&app_id, &token, now_us() as i64 + ttl_us, &owner))?;
        Ok(())
      })
      .await
  }

  /// Caches `token` for `ttl` unless a live one is cached already; the lock is left alone.
  pub async fn offer_access_token(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()> {
    let (app_id, token) = (app_id.to_owned(), token.to_owned());
    let ttl_us = ttl.as_micros() as i64;
    self
      .run(move |db| {
        let now = now_us() as i64;
        db.prepare_cached(
          "INSERT INTO mpauthx_access_token(app_id, access_token, expires_at_us) \
           VALUES (?1, ?2, ?3 + ?4) \
           ON CONFLICT(app_id) DO UPDATE SET access_token = excluded.access_token, \
           expires_at_us = excluded.expires_at_us \
           WHERE access_token IS NULL OR expires_at_us <= ?3",
        )?
        .execute((&app_id, &token, now, ttl_us))?;
        Ok(())
      })
      .await
  }

  /// Releases `owner`'s lock after a failed fetch; a lock taken over since is left alone.
  pub async fn unlock_access_token(&self, app_id: &str, owner: &str) -> Result<()> {
    let (app_id, owner) = (app_id.to_owned(), owner.to_owned());
    self
      .run(move |db| {
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
      .run(move |db| {
        db.prepare_cached(
          "UPDATE mpauthx_access_token SET access_token = NULL, expires_at_us = 0 \
           WHERE app_id = ?1 AND access_token = ?2",
        )?
        .execute((&app_id, &token))?;
        Ok(())
      })
      .await
  }

  /// Runs `work` on the file's connection, creating the tables on first use.
  async fn run<T: Send + 'static>(
    &self,
    work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
  ) -> Result<T> {
    let schema_ready = self.schema_ready.clone();
    self
      .database
      .run(move |db| {
        if !schema_ready.load(Ordering::Acquire) {
          create_schema(db)?;
          schema_ready.store(true, Ordering::Release);
        }
        work(db)
      })
      .await
  }
}

/// Creates the tables, or brings an earlier version's up to date; IMMEDIATE, so two
/// processes never both add a column.
fn create_schema(db: &mut Connection) -> rusqlite::Result<()> {
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

struct Row {
  token: String,
  ctime_us: i64,
  session_key: Option<String>,
}

fn keep_session_key(
  db: &Connection,
  token: &str,
  session_key: Option<&str>,
) -> rusqlite::Result<()> {
  db.prepare_cached("UPDATE mpauthx_session SET session_key = ?2 WHERE token = ?1")?
    .execute((token, session_key))?;
  Ok(())
}

/// When a live token expires (µs since the epoch), or `None` when it is not live.
fn live_until(db: &Connection, token: &str, now: i64) -> rusqlite::Result<Option<i64>> {
  db.prepare_cached(
    "SELECT expires_at_us FROM mpauthx_session WHERE token = ?1 AND expires_at_us > ?2",
  )?
  .query_row((token, now), |row| row.get(0))
  .optional()
}

/// The TTL in µs that checks give `token` back, when sliding is on and it is of the sliding
/// sku; other skus' tokens keep the TTL their own instances gave them.
fn slide_for(sliding: &Option<Arc<(String, i64)>>, token: &str) -> Option<i64> {
  let (sku, ttl_us) = sliding.as_deref()?;
  (token::sku(token) == Some(sku.as_str())).then_some(*ttl_us)
}

/// For `slidingTtl`: gives a live token expiring at `expires_at_us`, less than half of
/// `ttl_us` from `now`, its whole TTL back; returns its expiry. Tokens with more left are not
/// written, and the UPDATE checks again, so concurrent checks in any process extend a token
/// once per half-TTL. One row holds the token and its user's index, so the next login reuses it.
fn slide(
  db: &Connection,
  token: &str,
  expires_at_us: i64,
  now: i64,
  ttl_us: i64,
) -> rusqlite::Result<i64> {
  if expires_at_us - now >= ttl_us / 2 {
    return Ok(expires_at_us);
  }
  let slid = db
    .prepare_cached(
      "UPDATE mpauthx_session SET expires_at_us = ?2 + ?3 \
       WHERE token = ?1 AND expires_at_us > ?2 AND expires_at_us < ?2 + ?3 / 2",
    )?
    .execute((token, now, ttl_us))?;
  Ok(if slid == 1 {
    now + ttl_us
  } else {
    expires_at_us
  })
}

/// The live token of a user and sku, if any.
fn current(db: &Connection, user_id: &str, sku: &str) -> rusqlite::Result<Option<Row>> {
  db.prepare_cached(
    "SELECT token, ctime_us, session_key FROM mpauthx_session \
     WHERE user_id = ?1 AND sku = ?2 AND expires_at_us > ?3",
  )?
  .query_row((user_id, sku, now_us() as i64), |row| {
    Ok(Row {
      token: row.get(0)?,
      ctime_us: row.get(1)?,
      session_key: row.get(2)?,
    })
  })
  .optional()
}
