//! The SQLite side: the application's file and what lives in it.
//!
//! - `access_token`: the app's WeChat access token and the lock on fetching it.
//! - `database`: the file, one connection per file in this process, and group commit.
//! - `locks`: the OFD locks that keep this SQLite copy and the application's apart.
//! - `tokens`: the token store without Redis (`tokenStore: 'sqlite'`), [`SqliteTokens`].
//! - `users`: the `user` table of mpauthx 1.3.2.

mod access_token;
mod database;
mod locks;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Duration;

pub use database::Database;
use database::Schema;
pub use locks::refused as locks_refused;
pub use users::{Registered, Users};

/// The token store in the SQLite file: the tokens in `tokens`, the app's access token in
/// `access_token`.
pub struct SqliteTokens {
  database: Database,
  ttl: Duration,
  /// The instance's sku: the tokens it issues and looks up.
  sku: String,
  /// `slidingTtl`: the sku (this instance's) whose tokens, checked in the second half of
  /// their TTL, get it whole back, and that TTL in µs; `None` when off.
  sliding: Option<Arc<(String, i64)>>,
  /// The table of tokens.
  schema: Schema,
  /// The access-token table.
  access_token_schema: Schema,
}

impl SqliteTokens {
  /// Tokens in the same file as the users, through the same connection; with `sliding`,
  /// checks extend `sku`'s tokens in the second half of their TTL.
  pub fn new(database: Database, ttl: Duration, sku: String, sliding: bool) -> Self {
    let ttl_us = ttl.as_micros() as i64;
    Self {
      database,
      ttl,
      sliding: sliding.then(|| Arc::new((sku.clone(), ttl_us))),
      sku,
      schema: Schema::new(tokens::create_schema),
      access_token_schema: Schema::new(access_token::create_schema),
    }
  }
}
