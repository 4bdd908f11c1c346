//! SQLite, the infrastructure: the application's file ([`Database`]: one connection per file
//! in this process, group commit), the OFD `locks` that keep this SQLite copy and the
//! application's apart, and the [`schema`] of every table mpauthx keeps there. It knows no
//! rule of tokens, users or app tokens: `sessions`, `app_token` and `users` do.

mod database;
mod locks;
pub mod schema;

pub use database::{Database, Schema};
pub use locks::refused as locks_refused;
