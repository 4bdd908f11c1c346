//! What mpauthx keeps in the application's SQLite file, every table in one place:
//!
//! - `mpauthx_session`: the sessions without Redis (`tokenStore: 'sqlite'`), one row per user
//!   and sku (`sessions::SqliteSessions`);
//! - `mpauthx_access_token`: the app's WeChat access token and the lock on fetching it, one row
//!   per app (`app_token::SqliteAppToken`);
//! - `user`: the registered users, the table of mpauthx 1.3.2 (`users::UserTable`), created
//!   only when the file has none (the application's own may have more columns).
//!
//! Each is created on first use, by the store that uses it (see `Schema`).

use rusqlite::{Connection, TransactionBehavior};

const SESSIONS: &str = "
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
";

const APP_TOKEN: &str = "
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

/// The table mpauthx 1.3.2's README asks for, created when the file has no `user` table.
const USER_TABLE: &str = "CREATE TABLE IF NOT EXISTS user(openId text primary key not null, \
     city text, country text, gender integer, language text, nickName text, province text)";

/// Creates the table of sessions.
pub fn create_sessions(db: &mut Connection) -> rusqlite::Result<()> {
  db.execute_batch(SESSIONS)
}

/// Creates the app token's table, or brings an earlier version's up to date; IMMEDIATE, so
/// two processes never both add the column.
pub fn create_app_token(db: &mut Connection) -> rusqlite::Result<()> {
  let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
  transaction.execute_batch(APP_TOKEN)?;
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

/// Creates the `user` table when the file has none.
pub fn create_user_table(db: &Connection) -> rusqlite::Result<()> {
  let has_user_table: bool = db.query_row(
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'user')",
    [],
    |row| row.get(0),
  )?;
  if !has_user_table {
    db.execute(USER_TABLE, [])?;
  }
  Ok(())
}
