//! The application's own user store, `options.userStore`, whose JavaScript methods are called
//! from here through one thread-safe function that `userStoreCall` (user-store-call.js) builds.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use napi::bindgen_prelude::{FnArgs, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::Status;

use super::Registered;
use crate::config::ProfileWrites;
use crate::crypto::{is_placeholder, ProfileValue};
use crate::error::{Error, Result, NO_ANSWER};
use crate::telemetry::{call, Backend, Link};

/// `(call, userId, profile as JSON)` → the call's outcome as JSON (an [`Outcome`]); `call`
/// is `hasUser`, `addUser`, `updateProfile`, `fillProfile` or `ready` (see `userStoreCall`
/// in user-store-call.js). Weak: it does not keep Node's event loop alive.
pub type StoreCall =
  ThreadsafeFunction<StoreCallArgs, Promise<String>, StoreCallArgs, Status, false, true>;

/// The arguments of a [`StoreCall`], spread into three JavaScript arguments.
pub type StoreCallArgs = FnArgs<(String, String, Option<String>)>;

/// What a call of the store came to, as `userStoreCall` in user-store-call.js reports it.
#[derive(Debug, Default, Deserialize)]
struct Outcome {
  /// What `hasUser` or `addUser` resolved with; true for the other methods.
  #[serde(default)]
  answer: bool,
  /// Why the table refused the profile values (the shipped adapters only): the statement and
  /// the server's error code.
  refused: Option<String>,
  /// The message of what the method threw or rejected with.
  failed: Option<String>,
  /// That error's `code` or `name`, a short word fit for the public message.
  code: Option<String>,
}

/// The application's store, reached through JavaScript.
pub struct ApplicationStore {
  call: Arc<StoreCall>,
  /// How long a login's calls may take in all, or another call, before it fails with 6000
  /// (`userStoreTimeoutMs`).
  timeout: Duration,
  /// What a login writes of the profile (`options.profileWrites`).
  writes: ProfileWrites,
}

impl ApplicationStore {
  pub fn new(call: StoreCall, timeout: Duration, writes: ProfileWrites) -> Self {
    Self {
      call: Arc::new(call),
      timeout,
      writes,
    }
  }

  /// The store's `ready()`, when it has one (the shipped adapters read zero rows of their
  /// table).
  pub async fn ready(&self) -> Result<()> {
    self.call_once("ready", "", None).await.map(drop)
  }

  /// Whether the store holds the user (`hasUser`).
  pub async fn exists(&self, user_id: &str) -> Result<bool> {
    Ok(self.call_once("hasUser", user_id, None).await?.answer)
  }

  /// `addUser` with the profile (none with `'never'`); for a user who was there already, the
  /// real values of the profile (no placeholders) go to `updateProfile` with `'always'`, to
  /// `fillProfile` (write only where empty) with `'insert'`. An `addUser` that answers false
  /// must leave the user registered: `hasUser` is asked, and a login the store did not register
  /// fails. All of it within one `userStoreTimeoutMs`.
  pub(super) async fn ensure(
    &self, user_id: &str, profile: &[(&'static str, ProfileValue)],
  ) -> Result<Registered> {
    let deadline = Instant::now() + self.timeout;
    let profile = match self.writes {
      ProfileWrites::Never => &[],
      _ => profile,
    };
    let added = self
      .call("addUser", user_id, Some(profile_json(profile)), deadline)
      .await?;
    if added.answer {
      return Ok(Registered {
        added: true,
        profile_refused: added.refused,
      });
    }
    if !self.call("hasUser", user_id, None, deadline).await?.answer {
      return Err(Error::UserStore {
        call: "addUser",
        why: "resolved false (the user was there), yet hasUser finds no such user: \
              the store did not register the user"
          .into(),
      });
    }
    let update = match self.writes {
      ProfileWrites::Always => "updateProfile",
      ProfileWrites::Insert => "fillProfile",
      ProfileWrites::Never => return Ok(Registered::without_refusal(false)),
    };
    let real: Vec<(&'static str, ProfileValue)> = profile
      .iter()
      .filter(|(field, value)| !is_placeholder(field, value))
      .cloned()
      .collect();
    if real.is_empty() {
      return Ok(Registered::without_refusal(false));
    }
    let updated = self
      .call(update, user_id, Some(profile_json(&real)), deadline)
      .await?;
    Ok(Registered {
      added: false,
      profile_refused: updated.refused,
    })
  }

  /// Calls the store's method `name`, bounded by its own `userStoreTimeoutMs`.
  async fn call_once(
    &self, name: &'static str, user_id: &str, profile: Option<String>,
  ) -> Result<Outcome> {
    let deadline = Instant::now() + self.timeout;
    self.call(name, user_id, profile, deadline).await
  }

  /// Calls the store's method `name`, answered by `deadline`. The error names the call and
  /// carries what the store said, never the arguments.
  async fn call(
    &self, name: &'static str, user_id: &str, profile: Option<String>, deadline: Instant,
  ) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let outcome = self.call_store(name, user_id, profile, deadline).await;
    // The store's last outcome: it answered (`false` included), failed, or took too long.
    let error = match &outcome {
      Ok(_) => None,
      Err(Error::UserStore { why, .. }) if why.starts_with(NO_ANSWER) => Some("timeout"),
      Err(_) => Some("failed"),
    };
    call::store_round_trip(Backend::UserStore, started, error.is_none(), || {
      name.to_owned()
    });
    call::link(Link::UserStore, error.is_none(), error);
    outcome
  }

  async fn call_store(
    &self, name: &'static str, user_id: &str, profile: Option<String>, deadline: Instant,
  ) -> Result<Outcome> {
    let call = self.call.clone();
    let args = FnArgs::from((name.to_owned(), user_id.to_owned(), profile));
    let answered =
      tokio::time::timeout_at(
        deadline,
        async move { call.call_async_catch(args).await?.await },
      )
      .await;
    let failed = |why: String| Error::UserStore { call: name, why };
    let answer = match answered {
      Ok(Ok(answer)) => answer,
      Ok(Err(err)) => return Err(failed(failure(&err.reason, None))),
      Err(_) => {
        return Err(failed(format!(
          "{NO_ANSWER} {} ms",
          self.timeout.as_millis()
        )))
      }
    };
    let outcome: Outcome = serde_json::from_str(&answer)
      .map_err(|_| failed("answered with something that is not an outcome".into()))?;
    match outcome.failed {
      Some(why) => Err(failed(failure(&why, outcome.code.as_deref()))),
      None => Ok(outcome),
    }
  }
}

/// The `why` of a store's failure: `<code>: <its message>` when its error has a code (or a
/// name), which [`public_code`] finds for the public message; its message alone otherwise,
/// made never to look like a code.
fn failure(message: &str, code: Option<&str>) -> String {
  match code.filter(|code| is_code(code)) {
    Some(code) => format!("{code}: {message}"),
    None if public_code(message).is_some() => format!("(no code) {message}"),
    None => message.to_owned(),
  }
}

/// The code of a store's error that its `why` begins with, which `err.message` may name: a
/// word of letters, digits, `_`, `.` and `-` (`ECONNRESET`, `ER_DUP_ENTRY`, `23505`,
/// `QueryFailedError`), never the store's own words.
pub fn public_code(why: &str) -> Option<&str> {
  why
    .split_once(": ")
    .map(|(code, _)| code)
    .filter(|code| is_code(code))
}

fn is_code(code: &str) -> bool {
  (1..=64).contains(&code.len())
    && code
      .bytes()
      .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
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

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn only_a_code_the_store_gave_reaches_the_public_message() {
    assert_eq!(
      public_code(&failure("socket hang up", Some("ECONNRESET"))),
      Some("ECONNRESET")
    );
    assert_eq!(
      failure("INSERT failed (SQLSTATE 23000)", Some("ER_DUP_ENTRY")),
      "ER_DUP_ENTRY: INSERT failed (SQLSTATE 23000)"
    );
    // Words of the store's own that look like a code, or a code that is not a short word.
    assert_eq!(public_code(&failure("Bob: taken", None)), None);
    assert_eq!(public_code(&failure("Bob: taken", Some("Bob taken"))), None);
    assert_eq!(public_code(&failure("deadlock detected", None)), None);
    assert_eq!(public_code(&format!("{NO_ANSWER} 300 ms")), None);
  }
}
