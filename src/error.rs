//! The one error type of the library and the mpauthx status codes it maps to.

use std::fmt;
use std::sync::Arc;

/// Status codes of mpauthx 1.3.2, kept numerically identical so that backends
/// switching packages see the same `code` on every rejection. `unknownError` (9999) is
/// given by `index.js`, to a panic, and never made here.
pub mod status {
  pub const SUCCESS: u32 = 1;
  pub const DATABASE_RELATED_ERROR: u32 = 6000;
  pub const REQUIRED_PARAMS_MISSING_ERROR: u32 = 6001;
  /// A token (the user's) that is not live; `invalidAccessToken` is 1.3.2's name, kept.
  pub const INVALID_ACCESS_TOKEN: u32 = 6007;
  pub const SESSION_KEY_AND_OPEN_ID_REQUEST_ERROR: u32 = 6008;
  pub const OPEN_ID_OR_UNION_ID_NOT_MATCH: u32 = 6009;
  pub const USER_NOT_EXIST_IN_DB: u32 = 6010;
  pub const USER_INFO_DECRYPTION_ERROR: u32 = 6011;
}

/// Which JavaScript error class a rejected option is thrown as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionProblem {
  /// Missing or empty where a value is required: thrown as `TypeError`.
  Type,
  /// A value of the right type outside what is allowed: thrown as `RangeError`.
  Range,
}

/// Everything that can go wrong in a call or in setting an instance up. Messages never carry
/// secrets (app secret, session key, encrypted or decrypted user data, a URL's password).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
  /// An option of the factory is refused (`message` says which and why): the constructor
  /// throws it as a `TypeError` or a `RangeError`, as `problem` says; no call ever fails so.
  InvalidOption {
    problem: OptionProblem,
    message: String,
  },
  /// A required parameter is missing, empty or not a string; names the parameter.
  MissingParameter(&'static str),
  /// A parameter is a string but not an acceptable value (for example a user id containing `|`).
  InvalidParameter(String),
  /// A call to the WeChat API failed (`endpoint` names it: `jscode2session`, `stable_token`,
  /// `getuserphonenumber`): network, timeout, HTTP status, body or errcode.
  WeChat { endpoint: &'static str, why: String },
  /// The encrypted user data could not be decrypted or is not the expected JSON.
  Decryption(String),
  /// The openid from jscode2session differs from the one in the decrypted user data.
  OpenIdMismatch,
  /// `refreshToken` was asked for a user id that the `user` table does not hold.
  UserNotFound,
  /// The token is not live (unknown, expired or revoked).
  InvalidToken,
  /// Redis failed or could not be reached. `server` names it (`Redis` until the store that
  /// knows which server it was talking to says so); `why` is the failure in words.
  Redis {
    server: String,
    why: String,
    source: Arc<redis::RedisError>,
  },
  /// SQLite failed; `doing` says what was being done, when it is not a plain statement.
  Sqlite {
    doing: Option<String>,
    source: Arc<rusqlite::Error>,
  },
  /// The store failed without an error underneath (a deadline passed, too many concurrent
  /// updates, no randomness): `public` is what clients may see, `why` the whole account.
  Store { public: &'static str, why: String },
  /// A method of `options.userStore` (`call`) threw, rejected or did not answer in time.
  UserStore { call: &'static str, why: String },
  /// The instance was closed with `close()`.
  Closed,
}

impl Error {
  /// The mpauthx status code that JavaScript sees as the error's `code`.
  pub fn status_code(&self) -> u32 {
    match self {
      Error::MissingParameter(_) | Error::InvalidParameter(_) | Error::InvalidOption { .. } => {
        status::REQUIRED_PARAMS_MISSING_ERROR
      }
      Error::WeChat { .. } => status::SESSION_KEY_AND_OPEN_ID_REQUEST_ERROR,
      Error::Decryption(_) => status::USER_INFO_DECRYPTION_ERROR,
      Error::OpenIdMismatch => status::OPEN_ID_OR_UNION_ID_NOT_MATCH,
      Error::UserNotFound => status::USER_NOT_EXIST_IN_DB,
      Error::InvalidToken => status::INVALID_ACCESS_TOKEN,
      Error::Redis { .. }
      | Error::Sqlite { .. }
      | Error::Store { .. }
      | Error::UserStore { .. }
      | Error::Closed => status::DATABASE_RELATED_ERROR,
    }
  }

  /// What `err.message` says: mpauthx 1.3.2's words where 1.3.2 had the situation (apps send
  /// it to their clients and some match on it), and never a host, port, file path, SQL or
  /// anything a store or WeChat said. The whole account is the `Display`, `err.detail`.
  pub fn message(&self) -> String {
    match self {
      Error::MissingParameter(name) => format!("Missing {name} parameter"),
      Error::Decryption(_) => "Decrypt userInfo error".to_owned(),
      Error::OpenIdMismatch => "OpenID or UnionID not match".to_owned(),
      Error::UserNotFound => "Cannot find such user in DB".to_owned(),
      Error::Redis { source, .. } if is_refusal(source) => {
        "store error: Redis refused a command".to_owned()
      }
      Error::Redis { .. } => "store error: Redis is unavailable".to_owned(),
      Error::Sqlite { .. } if self.is_busy() => {
        "store error: the SQLite database is busy".to_owned()
      }
      Error::Sqlite { .. } => "store error: the SQLite database is unavailable".to_owned(),
      Error::Store { public, .. } => format!("store error: {public}"),
      Error::UserStore { call, why } if why.starts_with(NO_ANSWER) => {
        format!("user store error: userStore.{call} did not answer in time")
      }
      Error::UserStore { call, why } => match crate::users::public_code(why) {
        Some(code) => format!("user store error: userStore.{call} failed ({code})"),
        None => format!("user store error: userStore.{call} failed"),
      },
      Error::InvalidOption { .. }
      | Error::InvalidParameter(_)
      | Error::WeChat { .. }
      | Error::InvalidToken
      | Error::Closed => self.to_string(),
    }
  }

  /// Whether the Redis connection was found dead before the command reached the server
  /// (refused, dropped while idle, a restarted server, or a server that became a replica in a
  /// failover): the client reconnects, so one more try is safe.
  pub fn is_disconnected(&self) -> bool {
    let Error::Redis { source, .. } = self else {
      return false;
    };
    source.is_connection_refusal()
      || source.is_connection_dropped()
      || source.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
  }

  /// Whether Redis answered with an error of its own (an ACL, an unknown command, memory),
  /// as opposed to not answering, being unreachable, loading or between masters.
  pub fn is_refusal(&self) -> bool {
    matches!(self, Error::Redis { source, .. } if is_refusal(source))
  }

  /// Whether SQLite gave up waiting for another writer (busy or locked).
  pub fn is_busy(&self) -> bool {
    let Error::Sqlite { source, .. } = self else {
      return false;
    };
    matches!(
      source.sqlite_error_code(),
      Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
  }

  /// An option of the wrong type, or missing: thrown as `TypeError`.
  pub fn option_type(message: impl Into<String>) -> Self {
    Error::InvalidOption {
      problem: OptionProblem::Type,
      message: message.into(),
    }
  }

  /// An option outside what is allowed: thrown as `RangeError`.
  pub fn option_range(message: impl Into<String>) -> Self {
    Error::InvalidOption {
      problem: OptionProblem::Range,
      message: message.into(),
    }
  }

  /// A SQLite failure while `doing` something named (opening the file, reading a table).
  pub fn sqlite(doing: impl Into<String>, source: rusqlite::Error) -> Self {
    Error::Sqlite {
      doing: Some(doing.into()),
      source: Arc::new(source),
    }
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Error::InvalidOption { message, .. } => f.write_str(message),
      Error::MissingParameter(name) => {
        write!(f, "missing parameter: {name} must be a non-empty string")
      }
      Error::InvalidParameter(why) => write!(f, "invalid parameter: {why}"),
      Error::WeChat { endpoint, why } => write!(f, "{endpoint} request failed: {why}"),
      Error::Decryption(why) => write!(f, "cannot decrypt user data: {why}"),
      Error::OpenIdMismatch => {
        f.write_str("openid from jscode2session does not match the decrypted openId")
      }
      Error::UserNotFound => f.write_str("user does not exist in the user table"),
      Error::InvalidToken => f.write_str("token is not valid (unknown, expired or revoked)"),
      Error::Redis { server, why, .. } => write!(f, "store error: {server}: {why}"),
      Error::Sqlite {
        doing: Some(doing),
        source,
      } => write!(f, "store error: SQLite: {doing}: {source}"),
      Error::Sqlite {
        doing: None,
        source,
      } => write!(f, "store error: SQLite: {source}"),
      Error::Store { why, .. } => write!(f, "store error: {why}"),
      Error::UserStore { call, why } => write!(f, "user store error: userStore.{call}: {why}"),
      Error::Closed => f.write_str("this mpauthx instance is closed"),
    }
  }
}

impl std::error::Error for Error {
  fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
    match self {
      Error::Redis { source, .. } => Some(source.as_ref()),
      Error::Sqlite { source, .. } => Some(source.as_ref()),
      _ => None,
    }
  }
}

impl From<redis::RedisError> for Error {
  /// Worded as `Redis: <what went wrong>`; the store that knows which server it was talking
  /// to names it (see `store::redis::Redis::within_deadline`).
  fn from(err: redis::RedisError) -> Self {
    Error::Redis {
      server: "Redis".to_owned(),
      why: redis_failure(&err),
      source: Arc::new(err),
    }
  }
}

/// Whether Redis answered with an error of its own about the command (an ACL, memory, a
/// script), as opposed to being unreachable, loading, read-only or between masters.
fn is_refusal(err: &redis::RedisError) -> bool {
  use redis::ServerErrorKind::{
    Ask, BusyLoading, ClusterDown, MasterDown, Moved, ReadOnly, TryAgain,
  };
  match err.kind() {
    redis::ErrorKind::Server(
      BusyLoading | TryAgain | ClusterDown | MasterDown | ReadOnly | Moved | Ask,
    ) => false,
    redis::ErrorKind::Server(_) => true,
    _ => err.code().is_some(),
  }
}

/// What went wrong with Redis, in words, on one line.
fn redis_failure(err: &redis::RedisError) -> String {
  use redis::{ErrorKind, ServerErrorKind};
  let said = err.to_string().replace('\n', " ").trim().to_owned();
  if err.is_timeout() {
    return "timed out".to_owned();
  }
  if err.is_connection_refusal() || said.contains("Connection refused") {
    return "connection refused (nothing listens there, or Redis is down)".to_owned();
  }
  match err.kind() {
    ErrorKind::AuthenticationFailed => {
      return "authentication failed: wrong user or password (redisPass, or user:password in the URL)"
        .to_owned()
    }
    ErrorKind::Parse => {
      return "not a Redis server: its reply is not the Redis protocol (or a TLS port reached with redis://)"
        .to_owned()
    }
    ErrorKind::MasterNameNotFoundBySentinel => {
      return "no master is known to the sentinels by that name (yet: during a failover, or a wrong masterName)"
        .to_owned()
    }
    ErrorKind::EmptySentinelList => return "no sentinel answered".to_owned(),
    _ => {}
  }
  // Denied inside a script, the refusal arrives as a plain error reply, not as NOPERM.
  if err.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
    || said.contains("NOPERM")
    || said.contains("can't run this command")
  {
    return format!("the Redis user is not allowed a command the library needs (see the ACL in docs/production-redis.md): {said}");
  }
  if err.code() == Some("NOAUTH") {
    return "the server requires a password: give redisPass, or user:password in the URL"
      .to_owned();
  }
  if said.contains("certificate") || said.contains("Certificate") {
    return format!("TLS: the server's certificate is not accepted ({said})");
  }
  match err.code() {
    // The server's own words are left out: an error reply may quote a key or a value.
    Some(code) => format!("Redis answered {code}"),
    None => said,
  }
}

impl From<rusqlite::Error> for Error {
  fn from(err: rusqlite::Error) -> Self {
    Error::Sqlite {
      doing: None,
      source: Arc::new(err),
    }
  }
}

pub type Result<T> = std::result::Result<T, Error>;

/// How a user-store failure for want of an answer begins its `why`.
pub const NO_ANSWER: &str = "no answer within";

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn every_variant_maps_to_its_mpauthx_code() {
    let cases = [
      (Error::MissingParameter("code"), 6001),
      (Error::InvalidParameter("x".into()), 6001),
      (
        Error::WeChat {
          endpoint: "jscode2session",
          why: "x".into(),
        },
        6008,
      ),
      (Error::Decryption("x".into()), 6011),
      (Error::OpenIdMismatch, 6009),
      (Error::UserNotFound, 6010),
      (Error::InvalidToken, 6007),
      (
        Error::Store {
          public: "x",
          why: "x".into(),
        },
        6000,
      ),
      (rusqlite::Error::InvalidQuery.into(), 6000),
      (Error::Closed, 6000),
    ];
    for (err, code) in cases {
      assert_eq!(err.status_code(), code, "{err}");
    }
  }

  #[test]
  fn store_errors_keep_their_cause() {
    use std::error::Error as _;
    let err = Error::sqlite("cannot open x.db", rusqlite::Error::InvalidQuery);
    assert!(err
      .source()
      .is_some_and(|source| source.is::<rusqlite::Error>()));
    assert!(err
      .to_string()
      .starts_with("store error: SQLite: cannot open x.db: "));
    let err = Error::from(redis::RedisError::from((redis::ErrorKind::Io, "refused")));
    assert!(err
      .source()
      .is_some_and(|source| source.is::<redis::RedisError>()));
    assert!(err.to_string().starts_with("store error: Redis: "), "{err}");
  }

  #[test]
  fn messages_are_1_3_2_words_and_name_no_server_or_file() {
    let refused = redis::RedisError::from((redis::ErrorKind::Io, "refused"));
    let cases = [
      (
        Error::MissingParameter("userId"),
        "Missing userId parameter",
      ),
      (
        Error::Decryption("bad padding".into()),
        "Decrypt userInfo error",
      ),
      (Error::OpenIdMismatch, "OpenID or UnionID not match"),
      (Error::UserNotFound, "Cannot find such user in DB"),
      (
        Error::Redis {
          server: "Redis at 10.0.0.7:6380".into(),
          why: "connection refused".into(),
          source: Arc::new(refused),
        },
        "store error: Redis is unavailable",
      ),
      (
        Error::sqlite(
          "cannot open /srv/app/users.db",
          rusqlite::Error::InvalidQuery,
        ),
        "store error: the SQLite database is unavailable",
      ),
    ];
    for (err, message) in cases {
      assert_eq!(err.message(), message);
      assert_ne!(err.to_string(), message, "the detail says more");
    }
  }

  #[test]
  fn missing_parameter_message_names_the_parameter() {
    assert!(Error::MissingParameter("encryptedData")
      .to_string()
      .contains("encryptedData"));
  }
}
