//! Tokens: `<userId>|<sku>|<64 lowercase hex>`, the layout mpauthx 1.3.2 stored in Redis.

use crate::error::{Error, Result};

/// Separates the parts of a token; never allowed inside a sku or a user id.
pub const SEPARATOR: char = '|';

/// Longest user id a token is issued for, in bytes; WeChat's openid and unionid are 28
/// characters.
pub const MAX_USER_ID_LEN: usize = 128;

/// Longest sku a token is issued for, in bytes.
pub const MAX_SKU_LEN: usize = 64;

/// Longer strings are never tokens (the longest user id and sku, two separators and the
/// random part make 258 bytes), so they are refused without asking the store.
pub const MAX_TOKEN_LEN: usize = 260;

/// Bytes of randomness in a token: 256 bits, written as 64 hex characters.
const RANDOM_BYTES: usize = 32;

/// A new token for `user_id` and `sku`, its secret part from the operating system's CSPRNG.
pub fn generate(user_id: &str, sku: &str) -> Result<String> {
  let random = random_hex::<RANDOM_BYTES>()?;
  Ok(format!("{user_id}{SEPARATOR}{sku}{SEPARATOR}{random}"))
}

/// `N` bytes from the operating system's CSPRNG, in lowercase hex.
pub fn random_hex<const N: usize>() -> Result<String> {
  let mut random = [0u8; N];
  getrandom::fill(&mut random).map_err(|err| Error::Store {
    public: "no secure random numbers available",
    why: format!("no secure random numbers available: {err}"),
  })?;
  Ok(hex::encode(random))
}

/// The user id part: everything before the first separator, or `""` when there is none
/// (what mpauthx 1.3.2's `extractOpenId` returned).
pub fn user_id(token: &str) -> &str {
  token
    .split_once(SEPARATOR)
    .map_or("", |(user_id, _)| user_id)
}

/// The sku part when the token has exactly three parts, else `None`.
pub fn sku(token: &str) -> Option<&str> {
  let mut parts = token.split(SEPARATOR);
  let (_, sku, _) = (parts.next()?, parts.next()?, parts.next()?);
  parts.next().is_none().then_some(sku)
}

/// Whether `token` has the shape of a token at all (three parts, a user id), so that
/// other keys of the same Redis can never pass for one.
pub fn is_well_formed(token: &str) -> bool {
  token.len() <= MAX_TOKEN_LEN && sku(token).is_some() && !user_id(token).is_empty()
}

/// The indexes of the tokens that have a token's shape: only those are sent to the store.
pub fn well_formed(tokens: &[&str]) -> Vec<usize> {
  (0..tokens.len())
    .filter(|&i| is_well_formed(tokens[i]))
    .collect()
}

/// Whether `key` (found by a scan of the user's keys) has the shape of a token of `user_id`,
/// and of `sku` when given.
pub fn is_token_of(key: &str, user_id: &str, sku: Option<&str>) -> bool {
  is_well_formed(key)
    && self::user_id(key) == user_id
    && sku.is_none_or(|sku| self::sku(key) == Some(sku))
}

/// A user id must be non-empty and free of the separator, or tokens could not be parsed back.
pub fn check_user_id(user_id: &str) -> Result<()> {
  if user_id.is_empty() {
    return Err(Error::MissingParameter("userId"));
  }
  if user_id.len() > MAX_USER_ID_LEN {
    return Err(Error::InvalidParameter(format!(
      "userId is longer than {MAX_USER_ID_LEN} bytes"
    )));
  }
  if user_id.contains(SEPARATOR) {
    return Err(Error::InvalidParameter(format!(
      "userId must not contain '{SEPARATOR}'"
    )));
  }
  Ok(())
}

/// A sku must be short enough for its tokens to be tokens (see [`MAX_TOKEN_LEN`]).
pub fn check_sku(sku: &str) -> Result<()> {
  if sku.len() > MAX_SKU_LEN {
    return Err(Error::InvalidParameter(format!(
      "sku is longer than {MAX_SKU_LEN} bytes"
    )));
  }
  Ok(())
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  #[test]
  fn generated_tokens_have_the_stored_layout() {
    let token = generate("oUser", "sku1").unwrap();
    let (prefix, random) = token.rsplit_once(SEPARATOR).unwrap();
    assert_eq!(prefix, "oUser|sku1");
    assert_eq!(random.len(), 64);
    assert!(random
      .bytes()
      .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_ne!(token, generate("oUser", "sku1").unwrap());
  }

  #[test]
  fn extraction_matches_mpauthx_1_3_2() {
    assert_eq!(user_id("u|s|x"), "u");
    assert_eq!(user_id("no-separator"), "");
    assert_eq!(user_id("|s|x"), "");
    assert_eq!(sku("u|s|x"), Some("s"));
    assert_eq!(sku("u||x"), Some(""));
    assert_eq!(sku("u|s"), None);
    assert_eq!(sku("u|s|x|y"), None);
    assert_eq!(sku(""), None);
  }

  #[test]
  fn user_ids_with_the_separator_are_refused() {
    assert!(matches!(
      check_user_id(""),
      Err(Error::MissingParameter("userId"))
    ));
    assert!(matches!(
      check_user_id("a|b"),
      Err(Error::InvalidParameter(_))
    ));
    assert!(check_user_id("oGZUI0egBJY1zhBYw2KhdUfwVJJE").is_ok());
    assert!(matches!(
      check_user_id(&"a".repeat(MAX_USER_ID_LEN + 1)),
      Err(Error::InvalidParameter(_))
    ));
    assert!(!is_well_formed(&format!(
      "u|s|{}",
      "a".repeat(MAX_TOKEN_LEN)
    )));
    let longest = generate(&"u".repeat(MAX_USER_ID_LEN), &"s".repeat(MAX_SKU_LEN)).unwrap();
    assert!(is_well_formed(&longest));
    assert!(check_sku(&"s".repeat(MAX_SKU_LEN)).is_ok());
    assert!(check_sku(&"s".repeat(MAX_SKU_LEN + 1)).is_err());
  }

  proptest! {
      #[test]
      fn generated_tokens_parse_back(user in "[^|]{1,32}", sku_part in "[^|]{0,16}") {
          let token = generate(&user, &sku_part).unwrap();
          prop_assert_eq!(user_id(&token), user.as_str());
          prop_assert_eq!(sku(&token), Some(sku_part.as_str()));
          prop_assert!(is_well_formed(&token));
      }

      #[test]
      fn parsing_any_string_agrees_with_split(input in ".{0,200}") {
          let parts: Vec<&str> = input.split('|').collect();
          prop_assert_eq!(sku(&input), (parts.len() == 3).then(|| parts[1]));
          let expected_user = if parts.len() > 1 { parts[0] } else { "" };
          prop_assert_eq!(user_id(&input), expected_user);
      }
  }
}
