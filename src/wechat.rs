//! The WeChat API client: the `jscode2session` exchange of a mini-program's login code for
//! an openid and session key (a [`CodeSession`]), the app's access token (`stable_token`) and
//! a user's phone number (`getuserphonenumber`).

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::crypto;
use crate::error::{Error, Result};
use crate::telemetry::{call, WeChatOutcome};
use crate::trace::Trace;

/// Replies larger than this are refused rather than buffered; real ones are under 200 bytes.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// What jscode2session answers for a valid code: the code session.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeSession {
  pub open_id: String,
  pub session_key: String,
  pub union_id: Option<String>,
}

impl CodeSession {
  /// The id a user is known by: the unionid when WeChat gives one, else the openid.
  pub fn user_id(&self) -> &str {
    self.union_id.as_deref().unwrap_or(&self.open_id)
  }
}

// The session key is a secret: it never reaches a log.
impl std::fmt::Debug for CodeSession {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("CodeSession")
      .field("open_id", &self.open_id)
      .field("union_id", &self.union_id)
      .finish_non_exhaustive()
  }
}

/// The `errcode` and `errmsg` every WeChat reply may carry; 0 or none means success.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
  #[serde(default)]
  pub errcode: i64,
  #[serde(default)]
  pub errmsg: String,
}

/// The longest `errmsg` repeated in an error, in characters.
const MAX_ERRMSG_CHARS: usize = 120;

/// Query parameters whose values are secrets, should an `errmsg` echo the request URL.
const SECRET_PARAMETERS: [&str; 4] = ["secret=", "js_code=", "access_token=", "session_key="];

impl Refusal {
  /// `Err` with the refusal when WeChat answered with a non-zero `errcode`; its `errmsg`
  /// is cut to [`MAX_ERRMSG_CHARS`], with `secret` and the values of secret parameters
  /// removed, since an `errmsg` may echo the request.
  fn check(self, secret: &str) -> std::result::Result<(), Refusal> {
    match self.errcode {
      0 => Ok(()),
      errcode => Err(Refusal {
        errcode,
        errmsg: clean_errmsg(&self.errmsg, secret),
      }),
    }
  }
}

/// `errmsg` without `secret`, without the value of any [`SECRET_PARAMETERS`], and cut.
fn clean_errmsg(errmsg: &str, secret: &str) -> String {
  let mut text = match secret.is_empty() {
    true => errmsg.to_owned(),
    false => errmsg.replace(secret, "***"),
  };
  for parameter in SECRET_PARAMETERS {
    let mut from = 0;
    while let Some(found) = text[from..].find(parameter) {
      let start = from + found + parameter.len();
      let end = text[start..]
        .find(|c: char| c == '&' || c == '"' || c.is_whitespace())
        .map_or(text.len(), |len| start + len);
      text.replace_range(start..end, "***");
      from = start + 3;
    }
  }
  match text.char_indices().nth(MAX_ERRMSG_CHARS) {
    Some((cut, _)) => format!("{}…", &text[..cut]),
    None => text,
  }
}

/// Why a reply is not the expected JSON: where, never what (serde's words may quote a value).
fn not_json(err: &serde_json::Error) -> String {
  format!(
    "reply is not the expected JSON (at line {} column {})",
    err.line(),
    err.column()
  )
}

impl std::fmt::Display for Refusal {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "WeChat errcode {}: {}", self.errcode, self.errmsg)
  }
}

#[derive(Deserialize)]
struct CodeSessionReply {
  #[serde(flatten)]
  refusal: Refusal,
  openid: Option<String>,
  session_key: Option<String>,
  unionid: Option<String>,
}

/// A client for one app id, sharing its HTTP connections between calls.
pub struct WeChatClient {
  http: reqwest::Client,
  api_base: String,
  app_id: String,
  app_secret: String,
  /// The jscode2session URL with every parameter but the code, parsed once.
  endpoint: reqwest::Url,
  timeout: Duration,
}

impl WeChatClient {
  pub fn new(api_base: &str, app_id: &str, app_secret: &str, timeout: Duration) -> Result<Self> {
    let http = reqwest::Client::builder()
      .connect_timeout(timeout)
      .redirect(reqwest::redirect::Policy::none())
      .build()
      .map_err(|err| jscode2session(format!("cannot set up the HTTP client: {err}")))?;
    let endpoint = reqwest::Url::parse_with_params(
      &format!("{api_base}/sns/jscode2session"),
      [
        ("appid", app_id),
        ("secret", app_secret),
        ("grant_type", "authorization_code"),
      ],
    )
    .map_err(|err| jscode2session(format!("cannot build the request URL: {err}")))?;
    Ok(Self {
      http,
      api_base: api_base.to_owned(),
      app_id: app_id.to_owned(),
      app_secret: app_secret.to_owned(),
      endpoint,
      timeout,
    })
  }

  /// Exchanges `code`; the whole exchange, body included, is bounded by the timeout.
  pub async fn code_to_session(&self, code: &str, trace: &mut Trace) -> Result<CodeSession> {
    let mut url = self.endpoint.clone();
    url.query_pairs_mut().append_pair("js_code", code);
    let request = self.http.get(url);
    let body = self
      .send(request, "GET /sns/jscode2session", trace)
      .await
      .map_err(jscode2session)?;
    parse_reply(&body, &self.app_secret)
  }

  /// A fresh access token from the stable token endpoint: `(token, seconds it lives)`.
  /// `force_refresh` asks WeChat for a new one even while the current one is valid.
  pub async fn stable_token(
    &self, force_refresh: bool, trace: &mut Trace,
  ) -> Result<(String, u64)> {
    let body = serde_json::json!({
      "grant_type": "client_credential",
      "appid": self.app_id,
      "secret": self.app_secret,
      "force_refresh": force_refresh,
    });
    let api = api_error("stable_token");
    let url = self.url("/cgi-bin/stable_token").map_err(api)?;
    let reply: StableTokenReply = self
      .post_json(url, body, "POST /cgi-bin/stable_token", trace)
      .await
      .map_err(api)?;
    reply
      .refusal
      .check(&self.app_secret)
      .map_err(|refusal| api(refusal.to_string()))?;
    match (reply.access_token, reply.expires_in) {
      (Some(token), Some(seconds)) if !token.is_empty() => Ok((token, seconds)),
      _ => Err(api("reply has no access_token or expires_in".into())),
    }
  }

  /// The phone number behind a `getPhoneNumber` code: `Ok(Err(refusal))` when WeChat answers
  /// with an error code, so that an expired access token can be retried.
  pub async fn phone_number(
    &self, access_token: &str, code: &str, trace: &mut Trace,
  ) -> Result<std::result::Result<PhoneInfo, Refusal>> {
    let api = api_error("getuserphonenumber");
    let mut url = self.url("/wxa/business/getuserphonenumber").map_err(api)?;
    url
      .query_pairs_mut()
      .append_pair("access_token", access_token);
    let body = serde_json::json!({ "code": code });
    let reply: PhoneReply = self
      .post_json(url, body, "POST /wxa/business/getuserphonenumber", trace)
      .await
      .map_err(api)?;
    if let Err(refusal) = reply.refusal.check(access_token) {
      return Ok(Err(refusal));
    }
    let info = reply
      .phone_info
      .ok_or_else(|| api("reply has no phone_info".into()))?;
    if !crypto::watermark_is_for(&self.app_id, info.watermark.as_ref()) {
      let why = "phone_info.watermark.appid is missing or not this app's appId";
      return Err(api(why.into()));
    }
    Ok(Ok(info))
  }

  /// An endpoint of the WeChat API at `path`.
  fn url(&self, path: &str) -> std::result::Result<reqwest::Url, String> {
    reqwest::Url::parse(&format!("{}{path}", self.api_base)).map_err(|err| err.to_string())
  }

  /// POSTs `body` as JSON and reads the reply as `T`; the error says why.
  async fn post_json<T: serde::de::DeserializeOwned>(
    &self, url: reqwest::Url, body: serde_json::Value, what: &'static str, trace: &mut Trace,
  ) -> std::result::Result<T, String> {
    let request = self
      .http
      .post(url)
      .header(reqwest::header::CONTENT_TYPE, "application/json")
      .body(body.to_string());
    let reply = self.send(request, what, trace).await?;
    serde_json::from_slice(&reply).map_err(|err| not_json(&err))
  }

  /// Sends a request and reads its body, all bounded by the timeout; the error says why.
  /// Every request is counted and timed by how it ended (see `telemetry`).
  async fn send(
    &self, request: reqwest::RequestBuilder, what: &'static str, trace: &mut Trace,
  ) -> std::result::Result<Vec<u8>, String> {
    let started = Instant::now();
    let mut http_status = None;
    let exchanged = tokio::time::timeout(
      self.timeout,
      self.exchange(request, what, trace, &mut http_status),
    )
    .await;
    let (outcome, errcode, result) = match exchanged {
      Err(_) => (
        WeChatOutcome::Timeout,
        None,
        Err(format!("timed out after {} ms", self.timeout.as_millis())),
      ),
      Ok(Err((outcome, why))) => (outcome, None, Err(why)),
      Ok(Ok(body)) => match serde_json::from_slice::<Errcode>(&body) {
        Ok(Errcode {
          errcode: Some(code),
        }) if code != 0 => (WeChatOutcome::Errcode, Some(code), Ok(body)),
        Ok(_) => (WeChatOutcome::Ok, None, Ok(body)),
        Err(_) => (WeChatOutcome::BadReply, None, Ok(body)),
      },
    };
    let endpoint = what.split_once(' ').map_or(what, |(_, path)| path);
    call::wechat_request(endpoint, started, outcome, http_status, errcode);
    result
  }

  async fn exchange(
    &self, request: reqwest::RequestBuilder, what: &'static str, trace: &mut Trace,
    http_status: &mut Option<u16>,
  ) -> std::result::Result<Vec<u8>, (WeChatOutcome, String)> {
    trace.record("wechat.request", || what.into());
    let network = |err: reqwest::Error| (WeChatOutcome::Network, describe(&err.without_url()));
    // `without_url` everywhere: URLs carry the app secret or an access token.
    let mut response = request.send().await.map_err(network)?;
    let status = response.status();
    *http_status = Some(status.as_u16());
    trace.record("wechat.response", || format!("HTTP {}", status.as_u16()));
    if !status.is_success() {
      return Err((WeChatOutcome::HttpStatus, format!("HTTP status {status}")));
    }
    if response
      .content_length()
      .is_some_and(|len| len > MAX_REPLY_BYTES as u64)
    {
      return Err((WeChatOutcome::BadReply, too_large()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network)? {
      if body.len() + chunk.len() > MAX_REPLY_BYTES {
        return Err((WeChatOutcome::BadReply, too_large()));
      }
      body.extend_from_slice(&chunk);
    }
    trace.record("wechat.body", || format!("{} bytes", body.len()));
    Ok(body)
  }
}

/// The errcode of any reply, read for the counters; the caller reads the reply itself.
#[derive(Deserialize)]
struct Errcode {
  errcode: Option<i64>,
}

#[derive(Deserialize)]
struct StableTokenReply {
  #[serde(flatten)]
  refusal: Refusal,
  access_token: Option<String>,
  expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct PhoneReply {
  #[serde(flatten)]
  refusal: Refusal,
  phone_info: Option<PhoneInfo>,
}

/// A user's phone number, as `getuserphonenumber` gives it.
#[derive(Deserialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PhoneInfo {
  pub phone_number: String,
  pub pure_phone_number: String,
  pub country_code: String,
  /// `{ appid, timestamp }`; see [`crypto::watermark_is_for`].
  watermark: Option<serde_json::Value>,
}

// A phone number is personal data: it never reaches a log.
impl std::fmt::Debug for PhoneInfo {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("PhoneInfo").finish_non_exhaustive()
  }
}

/// Turns the reason a call to `endpoint` failed into its error.
fn api_error(endpoint: &'static str) -> impl Fn(String) -> Error + Copy {
  move |why| Error::WeChat { endpoint, why }
}

/// Why the jscode2session exchange failed, as its error.
fn jscode2session(why: String) -> Error {
  api_error("jscode2session")(why)
}

fn too_large() -> String {
  format!("reply is larger than {MAX_REPLY_BYTES} bytes")
}

/// Names the kind of failure and its innermost cause (for example "connection refused").
fn describe(err: &reqwest::Error) -> String {
  let kind = if err.is_timeout() {
    "timed out"
  } else if err.is_connect() {
    "connection failed"
  } else if err.is_body() || err.is_decode() {
    "reading the reply failed"
  } else {
    "request failed"
  };
  let mut cause: &dyn std::error::Error = err;
  while let Some(source) = cause.source() {
    cause = source;
  }
  format!("{kind}: {cause}")
}

/// Reads a jscode2session reply: any non-zero `errcode` is a failure, whatever the HTTP status;
/// `secret` never appears in the failure.
fn parse_reply(body: &[u8], secret: &str) -> Result<CodeSession> {
  let reply: CodeSessionReply =
    serde_json::from_slice(body).map_err(|err| jscode2session(not_json(&err)))?;
  reply
    .refusal
    .check(secret)
    .map_err(|refusal| jscode2session(refusal.to_string()))?;
  let non_empty = |field: Option<String>| field.filter(|value| !value.is_empty());
  match (non_empty(reply.openid), non_empty(reply.session_key)) {
    (Some(open_id), Some(session_key)) => Ok(CodeSession {
      open_id,
      session_key,
      union_id: non_empty(reply.unionid),
    }),
    _ => Err(jscode2session(
      "reply has no openid or no session_key".into(),
    )),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const SECRET: &str = "app-secret-never-shown";

  fn parse(body: &[u8]) -> Result<CodeSession> {
    parse_reply(body, SECRET)
  }

  #[test]
  fn an_errmsg_that_echoes_the_request_loses_its_secrets_and_is_cut() {
    let echo = format!(
      r#"{{"errcode":40013,"errmsg":"invalid appid, hints: [ req_id: x ] url: /sns/jscode2session?appid=wx1&secret={SECRET}&js_code=the-code&grant_type=authorization_code {SECRET}"}}"#
    );
    let message = parse(echo.as_bytes()).unwrap_err().to_string();
    assert!(!message.contains(SECRET), "{message}");
    assert!(!message.contains("the-code"), "{message}");
    assert!(
      message.contains("secret=***") && message.contains("js_code=***"),
      "{message}"
    );
    let long = format!(r#"{{"errcode":-1,"errmsg":"{}"}}"#, "x".repeat(1000));
    assert!(parse(long.as_bytes()).unwrap_err().to_string().len() < 300);
    let quoted = parse(br#"{"openid":"o1","session_key":12345678}"#)
      .unwrap_err()
      .to_string();
    assert!(
      !quoted.contains("12345678") && quoted.contains("line 1 column"),
      "{quoted}"
    );
  }
  use proptest::prelude::*;

  #[test]
  fn reads_a_successful_reply_with_or_without_errcode() -> Result<()> {
    let session = parse(br#"{"openid":"o1","session_key":"k","unionid":"u1"}"#)?;
    assert_eq!(session.open_id, "o1");
    assert_eq!(session.union_id.as_deref(), Some("u1"));
    let session = parse(br#"{"errcode":0,"openid":"o1","session_key":"k","expires_in":7200}"#)?;
    assert_eq!(session.union_id, None);
    Ok(())
  }

  #[test]
  fn errcode_replies_name_the_code_and_message() {
    let err = parse(br#"{"errcode":40029,"errmsg":"invalid code"}"#).unwrap_err();
    assert_eq!(err.status_code(), 6008);
    let message = err.to_string();
    assert!(
      message.contains("40029") && message.contains("invalid code"),
      "{message}"
    );
    let err = parse(br#"{"errcode":-1,"errmsg":"system error"}"#).unwrap_err();
    assert!(err.to_string().contains("-1"));
  }

  #[test]
  fn incomplete_or_garbled_replies_fail() {
    for body in [
      &b"<html>"[..],
      b"{\"openid\":\"o1\"",
      b"[]",
      b"{\"openid\":\"o1\"}",
      b"{}",
    ] {
      assert_eq!(parse(body).unwrap_err().status_code(), 6008);
    }
  }

  #[test]
  fn debug_output_hides_the_session_key() {
    let session = CodeSession {
      open_id: "o".into(),
      session_key: "SECRETKEY".into(),
      union_id: None,
    };
    assert!(!format!("{session:?}").contains("SECRETKEY"));
  }

  proptest! {
      #[test]
      fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
          let _ = parse(&body);
      }
  }
}
