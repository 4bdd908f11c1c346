//! Where registered users live: the `user` table of the SQLite file (mpauthx 1.3.2's), or
//! the application's own store, `options.userStore`, whose JavaScript methods are called from
//! here through one thread-safe function that `index.js` builds over them.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{FnArgs, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::Status;

use crate::config::ProfileWrites;
use crate::crypto::{is_placeholder, ProfileValue};
use crate::error::{Error, Result, NO_ANSWER};
use crate::store::{Registered, Users};

/// `(call, userId, profile as JSON)` → what the call resolved with; `call` is `hasUser`,
/// `addUser`, `updateProfile`, `fillProfile` or `ready` (see `userStoreCall` in index.js).
/// Weak: it does not keep Node's event loop alive.
pub type StoreCall =
  ThreadsafeFunction<StoreCallArgs, Promise<bool>, StoreCallArgs, Status, false, true>;

/// The arguments of a [`StoreCall`], spread into three JavaScript arguments.
pub type StoreCallArgs = FnArgs<(String, String, Option<String>)>;

/// The user registry of an instance.
pub enum UserStore {
  Sqlite(Users),
  Adapter(Adapter),
}

impl UserStore {
  /// Opens what must be open before a login spends the user's one-time code: the SQLite
  /// file and its `user` table, or the application store's `ready()` when it has one (the
  /// shipped adapters read zero rows of their table).
  pub async fn ready(&self) -> Result<()> {
    match self {
      UserStore::Sqlite(users) => users.ready().await,
      UserStore::Adapter(adapter) => adapter.call("ready", "", None).await.map(drop),
    }
  }

  /// Adds the user when absent and writes the profile; says whether it added the user.
  pub async fn ensure(
    &self, user_id: &str, profile: &[(&'static str, ProfileValue)],
  ) -> Result<Registered> {
    match self {
      UserStore::Sqlite(users) => users.ensure(user_id, profile).await,
      UserStore::Adapter(adapter) => adapter.ensure(user_id, profile).await,
    }
  }

  /// Whether the user is registered.
  pub async fn exists(&self, user_id: &str) -> Result<bool> {
    match self {
      UserStore::Sqlite(users) => users.exists(user_id).await,
      UserStore::Adapter(adapter) => adapter.call("hasUser", user_id, None).await,
    }
  }
}

/// The application's store, reached through JavaScript.
pub struct Adapter {
  call: Arc<StoreCall>,
  /// How long a call may take before the login fails with 6000 (`userStoreTimeoutMs`).
  timeout: Duration,
  /// What a login writes of the profile (`options.profileWrites`).
  writes: ProfileWrites,
}

impl Adapter {
  pub fn new(call: StoreCall, timeout: Duration, writes: ProfileWrites) -> Self {
    Self {
      call: Arc::new(call),
      timeout,
      writes,
    }
  }

  /// `addUser` with the profile (none with `'never'`); for a user who was there already, the
  /// real values of the profile (no placeholders) go to `updateProfile` with `'always'`, to
  /// `fillProfile` (write only where empty) with `'insert'`.
  async fn ensure(
    &self, user_id: &str, profile: &[(&'static str, ProfileValue)],
  ) -> Result<Registered> {
    let profile = match self.writes {
      ProfileWrites::Never => &[],
      _ => profile,
    };
    let added = self
      .call("addUser", user_id, Some(profile_json(profile)))
      .await?;
    let update = match self.writes {
      ProfileWrites::Always => "updateProfile",
      ProfileWrites::Insert => "fillProfile",
      ProfileWrites::Never => return Ok(Registered::without_refusal(added)),
    };
    let real: Vec<(&'static str, ProfileValue)> = profile
      .iter()
      .filter(|(field, value)| !is_placeholder(field, value))
      .cloned()
      .collect();
    if !added && !real.is_empty() {
      self
        .call(update, user_id, Some(profile_json(&real)))
        .await?;
    }
    Ok(Registered::without_refusal(added))
  }

  /// Calls the store's method `name`, bounded by the timeout. The error names the call and
  /// carries what the store said, never the arguments.
  async fn call(&self, name: &'static str, user_id: &str, profile: Option<String>) -> Result<bool> {
    let call = self.call.clone();
    let args = FnArgs::from((name.to_owned(), user_id.to_owned(), profile));
    let answered = tokio::time::timeout(self.timeout, async move {
      call.call_async_catch(args).await?.await
    })
    .await;
    match answered {
      Ok(Ok(answer)) => Ok(answer),
      Ok(Err(err)) => Err(Error::UserStore {
        call: name,
        why: err.reason.clone(),
      }),
      Err(_) => Err(Error::UserStore {
        call: name,
        why: format!("{NO_ANSWER} {} ms", self.timeout.as_millis()),
      }),
    }
  }
}

/// The profile as the JSON object the store's methods receive: `{ nickName, gender, … }`.
fn profile_json(profile: &[(&'static str, ProfileValue)]) -> String {
  let object: serde_json::Map<String, serde_json::Value> = profile
    .iter()
    .map(|(field, value)| {
      let value = match value {
        ProfileValue::Text(text) => serde_json::Value::from(text.as_str()),
        ProfileValue::Integer(number) => serde_json::Value::from(*number),
      };
      ((*field).to_owned(), value)
    })
    .collect();
  serde_json::Value::Object(object).to_string()
}
