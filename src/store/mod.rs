//! The infrastructure under the concerns: the two backends, which know no domain rules.
//!
//! - [`redis`]: the connection (one server, a Cluster, or the master named by sentinels; TLS),
//!   the call deadline and the retry of safe steps, the key schema and the Lua scripts;
//! - [`sqlite`]: the application's file, its OFD locks, group commit, and the table schema;
//! - [`opened`]: what both open on first use and close once.

pub mod opened;
pub mod redis;
pub mod sqlite;

use std::time::{SystemTime, UNIX_EPOCH};

/// Writes out the methods of a store that is one of the backends (an enum with a `Redis` and a
/// `Sqlite` variant), each sent to the one it is: declared once, with their documentation.
macro_rules! delegate {
  ($($(#[$doc:meta])* pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
    $(
      $(#[$doc])*
      pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
        match self {
          Self::Redis(store) => store.$name($($arg),*).await,
          Self::Sqlite(store) => store.$name($($arg),*).await,
        }
      }
    )*
  };
}
pub(crate) use delegate;

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map_or(0, |since| since.as_micros() as u64)
}
