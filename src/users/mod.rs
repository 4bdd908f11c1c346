//! Registered users, in three places, each in its own file:
//!
//! - [`UserTable`] (`user_table`): the `user` table of the SQLite file, mpauthx 1.3.2's;
//! - [`ApplicationStore`] (`application`): the application's own store, `options.userStore`,
//!   whose JavaScript methods are called through one thread-safe function `index.js` builds;
//! - [`Registrations`] (`registrations`): the records in Redis that a user registered, for
//!   servers sharing the Redis but not the SQLite file.
//!
//! A user lives in the table or the application's store ([`UserStore`]); the records in Redis
//! only say that a user registered somewhere.

mod application;
mod registrations;
mod user_table;

pub use application::{public_code, ApplicationStore, StoreCall, StoreCallArgs};
pub use registrations::Registrations;
pub use user_table::UserTable;

use crate::crypto::ProfileValue;
use crate::error::Result;

/// What registering a user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
  /// Whether the row was added (else it was there).
  pub added: bool,
  /// Why the table refused the profile values (a CHECK, a trigger, a STRICT column's type),
  /// when it did: the user is registered without them, and the login goes on.
  pub profile_refused: Option<String>,
}

impl Registered {
  /// What registering did when the table took the profile (or none was written).
  pub fn without_refusal(added: bool) -> Self {
    Self {
      added,
      profile_refused: None,
    }
  }
}

/// Where the registered users of an instance live.
pub enum UserStore {
  Table(UserTable),
  Application(ApplicationStore),
}

impl UserStore {
  /// Opens what must be open before a login spends the user's one-time code: the SQLite
  /// file and its `user` table, or the application store's `ready()` when it has one (the
  /// shipped adapters read zero rows of their table).
  pub async fn ready(&self) -> Result<()> {
    match self {
      UserStore::Table(table) => table.ready().await,
      UserStore::Application(store) => store.ready().await,
    }
  }

  /// Adds the user when absent and writes the profile; says whether it added the user.
  pub async fn ensure(
    &self, user_id: &str, profile: &[(&'static str, ProfileValue)],
  ) -> Result<Registered> {
    match self {
      UserStore::Table(table) => table.ensure(user_id, profile).await,
      UserStore::Application(store) => store.ensure(user_id, profile).await,
    }
  }

  /// Whether the user is registered.
  pub async fn exists(&self, user_id: &str) -> Result<bool> {
    match self {
      UserStore::Table(table) => table.exists(user_id).await,
      UserStore::Application(store) => store.exists(user_id).await,
    }
  }
}
