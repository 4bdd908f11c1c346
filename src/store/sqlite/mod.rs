//! The SQLite side: the application's file and what lives in it.
//!
//! - `access_token`: the app's WeChat access token and the lock on fetching it.
//! - `database`: the file, one connection per file in this process, and group commit.
//! - `locks`: the OFD locks that keep this SQLite copy and the application's apart.
//! - `tokens`: the token store without Redis (`tokenStore: 'sqlite'`).
//! - `users`: the `user` table of mpauthx 1.3.2.

mod access_token;
mod database;
mod locks;
mod tokens;
mod users;

pub use database::Database;
pub use locks::refused as locks_refused;
pub use tokens::SqliteTokens;
pub use users::{Registered, Users};
