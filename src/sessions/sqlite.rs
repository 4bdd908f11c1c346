//! Sessions in the application's SQLite file, for a single server without Redis
//! (`tokenStore: 'sqlite'`): one row of `mpauthx_session` per user and sku holds the current
//! token, its issue time, its expiry and its session key. Every change is one `BEGIN
//! IMMEDIATE` transaction, so concurrent calls, in this process or others, serialize.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::{Issue, TokenInfo};
use crate::error::Result;
use crate::store::now_us;
use crate::store::sqlite::{schema, Database, Schema};
use crate::token;

/// How many expired rows of other users each issue clears, so the table never grows without bound.
const SWEEP: usize = 64;

/// The sessions in the SQLite file.
pub struct SqliteSessions {
  database: Database,
  ttl: Duration,
  /// The instance's sku: the tokens it issues and looks up.
  sku: String,
  /// `slidingTtl`: the sku (this instance's) whose tokens, checked in the second half of
  /// their TTL, get it whole back, and that TTL in µs; `None` when off.
  sliding: Option<Arc<(String, i64)>>,
  /// `mpauthx_session`, created on first use.
  schema: Schema,
}

impl SqliteSessions {
  /// Sessions in the same file as the users, through the same connection; with `sliding`,
  /// checks extend `sku`'s tokens in the second half of their TTL.
  pub fn new(database: Database, ttl: Duration, sku: String, sliding: bool) -> Self {
    let ttl_us = ttl.as_micros() as i64;
    Self {
      database,
      ttl,
      sliding: sliding.then(|| Arc::new((sku.clone(), ttl_us))),
      sku,
      schema: Schema::new(schema::create_sessions),
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

  pub async fn live_token(&self, user_id: &str, session_key: &str) -> Result<Option<String>> {
    let (user_id, sku) = (user_id.to_owned(), self.sku.clone());
    let session_key = session_key.to_owned();
    self
      .run(move |db| {
        let Some(row) = current(db, &user_id, &sku)? else {
          return Ok(None);
        };
        if row.session_key.as_ref() != Some(&session_key) {
          keep_session_key(db, &row.token, Some(&session_key))?;
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

  pub async fn issue(&self, user_id: &str, mode: Issue<'_>) -> Result<String> {
    let (user_id, sku) = (user_id.to_owned(), self.sku.clone());
    let session_key = mode.session_key().map(str::to_owned);
    // A refresh reuses only a token issued since it was asked for.
    let replace_since = match mode {
      Issue::ReuseLive { .. } => None,
      Issue::Replace { requested_at_us } => Some(requested_at_us as i64),
    };
    let ttl_us = self.ttl.as_micros() as i64;
    self
      .run(move |db| {
        // IMMEDIATE: the write lock is taken before reading, so two issuers never both miss.
        let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing = current(&transaction, &user_id, &sku)?;
        let reuse = match (&existing, replace_since) {
          (Some(_), None) => true,
          (Some(row), Some(since)) => row.ctime_us >= since,
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
  pub async fn revoke_user(&self, user_id: &str, all_skus: bool) -> Result<u64> {
    let user_id = user_id.to_owned();
    let sku = (!all_skus).then(|| self.sku.clone());
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

  /// Opens the file and creates the table of tokens, unless done already.
  pub async fn ready(&self) -> Result<()> {
    self.run(|_| Ok(())).await
  }

  /// Runs `work` on the file's connection, creating the table on first use.
  async fn run<T: Send + 'static>(
    &self, work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
  ) -> Result<T> {
    self.database.run_in(&self.schema, work).await
  }
}

struct Row {
  token: String,
  ctime_us: i64,
  session_key: Option<String>,
}

fn keep_session_key(
  db: &Connection, token: &str, session_key: Option<&str>,
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
  db: &Connection, token: &str, expires_at_us: i64, now: i64, ttl_us: i64,
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
