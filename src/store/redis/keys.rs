//! What Redis holds, every key in one place. Tokens keep the layout of mpauthx 1.3.2; each key
//! of mpauthx's own has four `|`-separated parts, so it never has the shape of a token (see
//! `token::is_well_formed`).
//!
//! - `<userId>|<sku>|<64 hex>`: a token, a hash with `ctime` (issue time, ms since the epoch)
//!   and `sk` (the WeChat session key), with its TTL;
//! - `mpauthx|index|<sku>|<userId>`: the user's current token of the sku, with the same TTL;
//! - `mpauthx|user|<sku>|<userId>`: `1`, the record that the user registered, for servers that
//!   do not share the SQLite file; lives `registrationTtl` after the user's latest token;
//! - `mpauthx|access_token|<appId>|current`: the app's WeChat access token, cached;
//! - `mpauthx|access_token|<appId>|lock`: the right to fetch a new one, holding its owner.

use crate::token;

/// The first part of every key of mpauthx's own.
const PREFIX: &str = "mpauthx";

/// The hash field that marks a key as a token: its issue time.
pub const CTIME_FIELD: &str = "ctime";

/// The index key of a user and sku; neither may contain `|`.
pub fn index(user_id: &str, sku: &str) -> String {
  format!("{PREFIX}|index|{sku}|{user_id}")
}

/// The index that names a well-formed token when it is the current one.
pub fn index_of(token: &str) -> Option<String> {
  Some(index(token::user_id(token), token::sku(token)?)).filter(|_| token::is_well_formed(token))
}

/// The key that records a registered user of a sku.
pub fn registration(user_id: &str, sku: &str) -> String {
  format!("{PREFIX}|user|{sku}|{user_id}")
}

/// The record of the registered user a token was issued to.
pub fn registration_of(token: &str) -> String {
  registration(token::user_id(token), token::sku(token).unwrap_or_default())
}

/// The app's cached WeChat access token.
pub fn app_token(app_id: &str) -> String {
  format!("{PREFIX}|access_token|{app_id}|current")
}

/// The right to fetch the app's new WeChat access token.
pub fn app_token_lock(app_id: &str) -> String {
  format!("{PREFIX}|access_token|{app_id}|lock")
}

/// The `SCAN MATCH` pattern of the user's tokens, of `sku` when given, else of every sku.
pub fn tokens_of(user_id: &str, sku: Option<&str>) -> String {
  match sku {
    Some(sku) => format!("{}|{}|*", glob_escape(user_id), glob_escape(sku)),
    None => format!("{}|*", glob_escape(user_id)),
  }
}

/// `text` matched literally by a Redis glob pattern.
pub fn glob_escape(text: &str) -> String {
  let mut escaped = String::with_capacity(text.len());
  for c in text.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      escaped.push('\\');
    }
    escaped.push(c);
  }
  escaped
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn no_key_of_the_store_is_ever_a_token() {
    let keys = [
      (index("oUser", "sku"), "mpauthx|index|sku|oUser"),
      (registration("oUser", "sku"), "mpauthx|user|sku|oUser"),
      (app_token_lock("wx1"), "mpauthx|access_token|wx1|lock"),
    ];
    for (key, expected) in keys {
      assert_eq!(key, expected);
      assert!(!token::is_well_formed(&key), "{key} reads as a token");
    }
  }
}
