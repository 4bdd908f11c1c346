//! Decryption of WeChat's encrypted user data (AES-128-CBC, PKCS#7) and its watermark check.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::{alphabet, Engine};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// Larger payloads are refused before decoding; real user data is a few KiB.
pub const MAX_ENCRYPTED_DATA_LEN: usize = 1 << 20;

const BLOCK: usize = 16;

/// Standard base64, padding optional: clients differ in whether they keep the `=`.
const BASE64: GeneralPurpose = GeneralPurpose::new(
  &alphabet::STANDARD,
  GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The profile fields of decrypted user data that a `user` table may have columns for.
pub const PROFILE_FIELDS: [&str; 7] = [
  "nickName",
  "gender",
  "language",
  "city",
  "province",
  "country",
  "avatarUrl",
];

/// A profile value as the `user` table stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileValue {
  Text(String),
  Integer(i64),
}

/// The nickname WeChat sends for every user since 2021 (the user's own is no longer given).
pub const PLACEHOLDER_NICKNAME: &str = "微信用户";

/// The path of the grey default avatar WeChat sends with the placeholder nickname (any host,
/// scheme and size suffix).
pub const PLACEHOLDER_AVATAR: &str =
  "/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/";

/// Whether `value` of `field` is one of WeChat's placeholders rather than the user's own:
/// the anonymous nickname, the default avatar, an empty string, gender 0 (unknown). A login
/// writes placeholders only into a row it creates, never over what the row holds.
pub fn is_placeholder(field: &str, value: &ProfileValue) -> bool {
  match value {
    ProfileValue::Text(text) => {
      text.is_empty()
        || (field == "nickName" && text == PLACEHOLDER_NICKNAME)
        || (field == "avatarUrl" && text.contains(PLACEHOLDER_AVATAR))
    }
    ProfileValue::Integer(number) => field == "gender" && *number == 0,
  }
}

/// The identity and profile found in decrypted user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
  pub open_id: String,
  pub union_id: Option<String>,
  /// The fields of [`PROFILE_FIELDS`] present as strings or integers.
  pub profile: Vec<(&'static str, ProfileValue)>,
}

impl UserInfo {
  /// The id a user is known by: unionId when WeChat gives one, else openId.
  pub fn user_id(&self) -> &str {
    self.union_id.as_deref().unwrap_or(&self.open_id)
  }
}

/// Decrypts `encrypted_data` with the session key and iv (all base64 text) and checks
/// that the watermark names `app_id`. The service parses the payload before WeChat is asked
/// and opens it after ([`Sealed`]); the tests use this in one step.
#[cfg(test)]
pub fn decrypt_user_info(
  app_id: &str, session_key: &str, encrypted_data: &str, iv: &str,
) -> Result<UserInfo> {
  let plaintext = decrypt(session_key, encrypted_data, iv)?;
  parse_user_info(app_id, &plaintext)
}

/// Encrypted data and its iv, checked for everything that can be checked without the session
/// key (size, base64, the iv's length, whole AES blocks), so that data that cannot be valid is
/// refused before anything is asked of WeChat or the store.
pub struct Sealed {
  ciphertext: Vec<u8>,
  iv: [u8; BLOCK],
}

impl Sealed {
  /// Reads `encrypted_data` and `iv` (base64 text).
  pub fn parse(encrypted_data: &str, iv: &str) -> Result<Self> {
    if encrypted_data.len() > MAX_ENCRYPTED_DATA_LEN {
      return Err(Error::Decryption(format!(
        "encryptedData is longer than {MAX_ENCRYPTED_DATA_LEN} characters"
      )));
    }
    let iv: [u8; BLOCK] = decode_block("iv", iv)?;
    let ciphertext = decode("encryptedData", encrypted_data)?;
    if ciphertext.is_empty() || ciphertext.len() % BLOCK != 0 {
      return Err(Error::Decryption(format!(
        "encryptedData is {} bytes, not a non-zero multiple of {BLOCK}",
        ciphertext.len()
      )));
    }
    Ok(Self { ciphertext, iv })
  }

  /// AES-128-CBC with PKCS#7 padding, with the session key (base64 text).
  pub fn open(self, session_key: &str) -> Result<Vec<u8>> {
    let key: [u8; BLOCK] = decode_block("session key", session_key)?;
    let Self { mut ciphertext, iv } = self;
    let plaintext = Aes128CbcDec::new(&key.into(), &iv.into())
      .decrypt_padded_mut::<Pkcs7>(&mut ciphertext)
      .map_err(|_| {
        Error::Decryption("bad padding: wrong session key or iv, or corrupted data".into())
      })?;
    Ok(plaintext.to_vec())
  }
}

/// AES-128-CBC with PKCS#7 padding; every input is base64 text.
#[cfg(test)]
pub fn decrypt(session_key: &str, encrypted_data: &str, iv: &str) -> Result<Vec<u8>> {
  Sealed::parse(encrypted_data, iv)?.open(session_key)
}

/// Reads the decrypted JSON: an object with a string `openId` and a watermark for `app_id`.
pub fn parse_user_info(app_id: &str, plaintext: &[u8]) -> Result<UserInfo> {
  let object = &parse_data(app_id, plaintext)?;
  let open_id = non_empty_string(object, "openId")
    .ok_or_else(|| Error::Decryption("decrypted data has no openId".into()))?;
  let profile = PROFILE_FIELDS
    .iter()
    .filter_map(|&field| match object.get(field)? {
      Value::String(text) => Some((field, ProfileValue::Text(text.clone()))),
      Value::Number(number) => Some((field, ProfileValue::Integer(number.as_i64()?))),
      _ => None,
    })
    .collect();
  Ok(UserInfo {
    open_id,
    union_id: non_empty_string(object, "unionId"),
    profile,
  })
}

/// Reads any decrypted payload of the session (WeRun data, shared group info, the old phone
/// number flow): a JSON object whose watermark names `app_id`.
pub fn parse_data(app_id: &str, plaintext: &[u8]) -> Result<Map<String, Value>> {
  let value: Value = serde_json::from_slice(plaintext)
    .map_err(|_| Error::Decryption("decrypted data is not JSON".into()))?;
  let Value::Object(object) = value else {
    return Err(Error::Decryption(
      "decrypted data is not a JSON object".into(),
    ));
  };
  check_watermark(app_id, &object)?;
  Ok(object)
}

/// Whether `signature` is `sha1(raw_data + session_key)` in hex, compared in constant time.
pub fn signature_matches(raw_data: &str, session_key: &str, signature: &str) -> bool {
  use sha1::{Digest, Sha1};
  use subtle::ConstantTimeEq;
  let mut hasher = Sha1::new();
  hasher.update(raw_data.as_bytes());
  hasher.update(session_key.as_bytes());
  let expected = hex::encode(hasher.finalize());
  expected
    .as_bytes()
    .ct_eq(signature.to_ascii_lowercase().as_bytes())
    .into()
}

pub(crate) fn check_watermark(app_id: &str, object: &Map<String, Value>) -> Result<()> {
  if watermark_is_for(app_id, object.get("watermark")) {
    return Ok(());
  }
  Err(Error::Decryption(
    "watermark.appid is missing or not this app's appId".into(),
  ))
}

/// Whether a `watermark` object WeChat put in what it hands out (decrypted user data, a phone
/// number) names `app_id` as its `appid`: what WeChat gave another app is refused.
pub fn watermark_is_for(app_id: &str, watermark: Option<&Value>) -> bool {
  let appid = watermark.and_then(|watermark| watermark.get("appid"));
  appid.and_then(Value::as_str) == Some(app_id)
}

fn non_empty_string(object: &Map<String, Value>, field: &str) -> Option<String> {
  object
    .get(field)
    .and_then(Value::as_str)
    .filter(|s| !s.is_empty())
    .map(str::to_owned)
}

fn decode(what: &str, text: &str) -> Result<Vec<u8>> {
  // A `+` turned into a space by careless URL handling; a space is never valid base64.
  let repaired = text.replace(' ', "+");
  BASE64
    .decode(repaired.as_bytes())
    .map_err(|_| Error::Decryption(format!("{what} is not valid base64")))
}

fn decode_block(what: &str, text: &str) -> Result<[u8; BLOCK]> {
  // Base64 of 16 bytes is 24 characters: anything far longer is refused undecoded.
  if text.len() > 4 * BLOCK {
    return Err(Error::Decryption(format!(
      "{what} must decode to {BLOCK} bytes"
    )));
  }
  let bytes = decode(what, text)?;
  bytes.as_slice().try_into().map_err(|_| {
    Error::Decryption(format!(
      "{what} must decode to {BLOCK} bytes, got {}",
      bytes.len()
    ))
  })
}

#[cfg(test)]
pub(crate) mod tests {
  use super::{is_placeholder, ProfileValue};

  #[test]
  fn wechats_placeholders_are_told_from_real_values() {
    let text = |value: &str| ProfileValue::Text(value.into());
    let avatar = format!("https://thirdwx.qlogo.cn{}132", super::PLACEHOLDER_AVATAR);
    assert!(is_placeholder("nickName", &text("微信用户")));
    assert!(is_placeholder("avatarUrl", &text(&avatar)));
    assert!(is_placeholder("city", &text("")));
    assert!(is_placeholder("gender", &ProfileValue::Integer(0)));
    assert!(!is_placeholder("nickName", &text("微信用户2")));
    assert!(!is_placeholder("city", &text("微信用户")));
    assert!(!is_placeholder(
      "avatarUrl",
      &text("https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132")
    ));
    assert!(!is_placeholder("gender", &ProfileValue::Integer(1)));
  }

  use super::*;
  use aes::cipher::BlockEncryptMut;
  use proptest::prelude::*;

  type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

  // WeChat's WXBizDataCrypt demo vector (shared/WECHAT.md).
  const APP_ID: &str = "wx4f4bc4dec97d474b";
  const SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
  const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
  const ENCRYPTED_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

  pub(crate) fn encrypt(key: &[u8; 16], iv: &[u8; 16], plaintext: &[u8]) -> String {
    let ciphertext =
      Aes128CbcEnc::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    base64::engine::general_purpose::STANDARD.encode(ciphertext)
  }

  fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
  }

  #[test]
  fn decrypts_the_official_wechat_vector() -> Result<()> {
    let plaintext = decrypt(SESSION_KEY, ENCRYPTED_DATA, IV)?;
    assert_eq!(plaintext.len(), 393);
    let info = decrypt_user_info(APP_ID, SESSION_KEY, ENCRYPTED_DATA, IV)?;
    assert_eq!(info.open_id, "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
    assert_eq!(
      info.union_id.as_deref(),
      Some("ocMvos6NjeKLIBqg5Mr9QjxrP1FA")
    );
    assert_eq!(info.user_id(), "ocMvos6NjeKLIBqg5Mr9QjxrP1FA");
    let text = |value: &str| ProfileValue::Text(value.into());
    assert_eq!(
      info.profile[..6],
      [
        ("nickName", text("Band")),
        ("gender", ProfileValue::Integer(1)),
        ("language", text("zh_CN")),
        ("city", text("Guangzhou")),
        ("province", text("Guangdong")),
        ("country", text("CN")),
      ]
    );
    assert_eq!(info.profile[6].0, "avatarUrl");
    Ok(())
  }

  #[test]
  fn checks_the_official_signature_vector() {
    let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
    let key = "HyVFkGl5F5OQWJZZaNzBBg==";
    let signature = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";
    assert!(signature_matches(raw, key, signature));
    assert!(signature_matches(raw, key, &signature.to_uppercase()));
    assert!(!signature_matches(&format!("{raw} "), key, signature));
    assert!(!signature_matches(raw, key, &signature[..39]));
  }

  #[test]
  fn decrypts_any_payload_with_the_app_watermark() -> Result<()> {
    let plaintext = decrypt(SESSION_KEY, ENCRYPTED_DATA, IV)?;
    let data = parse_data(APP_ID, &plaintext)?;
    assert_eq!(data["nickName"], "Band");
    assert_eq!(
      parse_data("wxOther", &plaintext).unwrap_err().status_code(),
      6011
    );
    Ok(())
  }

  #[test]
  fn spaces_are_read_as_plus_signs() -> Result<()> {
    let mangled = ENCRYPTED_DATA.replace('+', " ");
    assert_eq!(
      decrypt_user_info(APP_ID, SESSION_KEY, &mangled, IV)?.open_id,
      "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
    );
    Ok(())
  }

  #[test]
  fn a_foreign_watermark_is_refused() {
    let err = decrypt_user_info("wxOTHER", SESSION_KEY, ENCRYPTED_DATA, IV).unwrap_err();
    assert_eq!(err.status_code(), 6011);
  }

  #[test]
  fn every_kind_of_broken_payload_is_a_decryption_error() {
    let key = [7u8; 16];
    let iv = [9u8; 16];
    let good_json = br#"{"openId":"o1","watermark":{"appid":"wxA"}}"#;
    let cases: Vec<(String, String, String)> = vec![
      (b64(&key), "not base64!".into(), b64(&iv)),
      (b64(&key), encrypt(&key, &iv, good_json), b64(&[0u8; 8])),
      (b64(&[0u8; 15]), encrypt(&key, &iv, good_json), b64(&iv)),
      (b64(&key), b64(&[1u8; 17]), b64(&iv)),
      (b64(&key), String::new(), b64(&iv)),
      (b64(&[1u8; 16]), encrypt(&key, &iv, good_json), b64(&iv)),
      (b64(&key), encrypt(&key, &iv, b"not json"), b64(&iv)),
      (b64(&key), encrypt(&key, &iv, b"[1,2]"), b64(&iv)),
      (
        b64(&key),
        encrypt(&key, &iv, br#"{"openId":"o1"}"#),
        b64(&iv),
      ),
      (
        b64(&key),
        encrypt(&key, &iv, br#"{"openId":"o1","watermark":"wxA"}"#),
        b64(&iv),
      ),
      (
        b64(&key),
        encrypt(&key, &iv, br#"{"openId":"o1","watermark":{"appid":7}}"#),
        b64(&iv),
      ),
      (
        b64(&key),
        encrypt(&key, &iv, br#"{"watermark":{"appid":"wxA"}}"#),
        b64(&iv),
      ),
      (b64(&key), "A".repeat(MAX_ENCRYPTED_DATA_LEN + 4), b64(&iv)),
    ];
    for (session_key, data, iv) in cases {
      let err = decrypt_user_info("wxA", &session_key, &data, &iv).unwrap_err();
      assert!(matches!(err, Error::Decryption(_)), "{err}");
    }
  }

  #[test]
  fn round_trips_unicode_profiles() -> Result<()> {
    let key = [3u8; 16];
    let iv = [4u8; 16];
    let json = r#"{"openId":"用户😀","nickName":"微信用户","watermark":{"appid":"wxA"}}"#;
    let data = encrypt(&key, &iv, json.as_bytes());
    let info = decrypt_user_info("wxA", &b64(&key), &data, &b64(&iv))?;
    assert_eq!(info.user_id(), "用户😀");
    Ok(())
  }

  proptest! {
      #[test]
      fn arbitrary_input_never_panics(key in ".{0,40}", data in ".{0,300}", iv in ".{0,40}") {
          let _ = decrypt_user_info("wxA", &key, &data, &iv);
      }

      #[test]
      fn arbitrary_ciphertext_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
          let _ = decrypt_user_info("wxA", &b64(&[5u8; 16]), &b64(&bytes), &b64(&[6u8; 16]));
      }

      #[test]
      fn arbitrary_plaintext_decrypts_or_fails_cleanly(plain in proptest::collection::vec(any::<u8>(), 0..512)) {
          let key = [1u8; 16];
          let iv = [2u8; 16];
          let decrypted = decrypt(&b64(&key), &encrypt(&key, &iv, &plain), &b64(&iv)).unwrap();
          prop_assert_eq!(&decrypted, &plain);
          let _ = parse_user_info("wxA", &plain);
      }
  }
}
