//! Settings of one mpauthx instance: defaults, environment fallbacks and validation.

use std::path::PathBuf;
use std::time::Duration;

use napi_derive::napi;

use crate::error::{Error, Result};

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
pub const DEFAULT_HTTP_TIMEOUT_MS: f64 = 5_000.0;
pub const DEFAULT_USER_STORE_TIMEOUT_MS: f64 = 5_000.0;
/// How long `revokeUser`'s pass over the Redis keyspace may take in all.
pub const DEFAULT_REVOKE_USER_SCAN_MS: f64 = 10_000.0;
/// How long Redis remembers a registered user after the last token it was issued: 30 days.
pub const DEFAULT_REGISTRATION_TTL_SECONDS: f64 = 2_592_000.0;
/// Live tokens each instance remembers: about 2 MB at 200 bytes a token.
pub const DEFAULT_VALIDATION_CACHE_SIZE: f64 = 10_000.0;
pub const ENV_REDIS_URL: &str = "MPAUTHX_REDIS_URL";
pub const ENV_WECHAT_API_BASE: &str = "MPAUTHX_WECHAT_API_BASE";
pub const ENV_REDIS_CLUSTER_NODES: &str = "MPAUTHX_REDIS_CLUSTER_NODES";

/// What the factory was given, already checked for JavaScript types by `index.js`: the
/// argument of the native constructor as it arrives from JavaScript.
#[napi(object)]
#[derive(Clone, Default)]
pub struct Options {
  pub app_id: String,
  pub app_secret: String,
  pub sku: String,
  pub ttl: Option<f64>,
  pub sliding_ttl: Option<bool>,
  #[napi(ts_type = "'redis' | 'sqlite'")]
  pub token_store: Option<String>,
  pub redis_url: Option<String>,
  pub redis_cluster_nodes: Option<Vec<String>>,
  pub redis_sentinel: Option<RedisSentinelOptions>,
  pub redis_pass: Option<String>,
  pub redis_tls: Option<RedisTlsOptions>,
  pub validation_cache_size: Option<f64>,
  /// Seconds Redis remembers a registered user (`mpauthx|user|…`) after its last token.
  pub registration_ttl: Option<f64>,
  /// How long `revokeUser`'s `SCAN` of the user's keys may take in all.
  pub revoke_user_scan_ms: Option<f64>,
  /// The SQLite file; may be absent when users live in `options.userStore` and tokens in Redis.
  pub db_path: Option<String>,
  /// Whether `options.userStore` was given (its methods reach the constructor as a function
  /// of their own).
  pub user_store: Option<bool>,
  pub user_store_timeout_ms: Option<f64>,
  /// `'insert'` (default), `'always'` or `'never'`: see [`ProfileWrites`].
  #[napi(ts_type = "'insert' | 'always' | 'never'")]
  pub profile_writes: Option<String>,
  pub wechat_api_base: Option<String>,
  pub http_timeout_ms: Option<f64>,
  /// Whether calls report their steps (the napi layer's concern; settings ignore it).
  pub diagnostics: Option<bool>,
}

/// `options.redisSentinel`: the sentinels that know which server is the master.
#[napi(object)]
#[derive(Clone, Default)]
pub struct RedisSentinelOptions {
  pub nodes: Vec<String>,
  pub master_name: String,
  pub sentinel_password: Option<String>,
}

/// `options.redisTls`: how `rediss://` servers are trusted, in PEM text.
#[napi(object)]
#[derive(Clone, Default)]
pub struct RedisTlsOptions {
  pub ca: Option<String>,
  pub cert: Option<String>,
  pub key: Option<String>,
  pub reject_unauthorized: Option<bool>,
}

/// How the client trusts `rediss://` servers and proves itself to them. Holds a private key,
/// so it is deliberately not `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTls {
  /// PEM certificates trusted in addition to the system's roots.
  pub ca: Option<String>,
  /// The client's certificate chain and private key (PEM), for servers that ask for one.
  pub client: Option<(String, String)>,
  /// Whether the server's certificate and host name are checked: always, unless
  /// `rejectUnauthorized: false`.
  pub verify: bool,
}

impl Default for RedisTls {
  fn default() -> Self {
    Self {
      ca: None,
      client: None,
      verify: true,
    }
  }
}

/// Which backend keeps the tokens (`options.tokenStore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
  /// Redis (or a Redis Cluster), in the layout of mpauthx 1.3.2.
  Redis,
  /// The SQLite file of the `user` table; no Redis at all.
  Sqlite,
}

/// What a login writes of the decrypted profile into the user's row (`options.profileWrites`).
/// WeChat's placeholder values (see `crypto::is_placeholder`) are written only when the row
/// is created, never later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileWrites {
  /// The whole profile when the user is registered; later only into columns still empty.
  Insert,
  /// The whole profile when registered; later every real value, over what the row holds.
  Always,
  /// Nothing: the row gets its id only, as mpauthx 1.3.2 did.
  Never,
}

/// Where tokens are kept: one Redis, or a Redis Cluster reached through any of its nodes.
/// URLs may hold passwords, so this is deliberately not `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
  Single(String),
  Cluster(Vec<String>),
  /// The master that the sentinels at `nodes` name `master_name`, asked again after a
  /// failover.
  Sentinel {
    nodes: Vec<String>,
    master_name: String,
    sentinel_password: Option<String>,
  },
}

/// Validated settings an instance runs with.
#[derive(Clone)]
pub struct Settings {
  pub app_id: String,
  pub app_secret: String,
  pub sku: String,
  /// The SQLite file, when there is one.
  pub db_path: Option<PathBuf>,
  pub token_store: Backend,
  pub redis: RedisTarget,
  pub redis_pass: Option<String>,
  pub redis_tls: RedisTls,
  pub ttl: Duration,
  pub wechat_api_base: String,
  pub http_timeout: Duration,
  /// Live tokens remembered between checks; 0 for none.
  pub validation_cache_size: usize,
  /// Whether a token checked in the second half of its TTL gets its whole TTL back.
  pub sliding_ttl: bool,
  /// How long a call of `options.userStore` may take.
  pub user_store_timeout: Duration,
  pub profile_writes: ProfileWrites,
  /// How long Redis remembers a registered user; never less than a token lives.
  pub registration_ttl: Duration,
  /// How long `revokeUser`'s pass over the Redis keyspace may take in all; each `SCAN` step
  /// is bounded by the call deadline.
  pub revoke_user_scan: Duration,
}

// Hand-written so that the app secret and the Redis password never reach a log.
impl std::fmt::Debug for Settings {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Settings")
      .field("app_id", &self.app_id)
      .field("sku", &self.sku)
      .field("db_path", &self.db_path)
      .field("ttl", &self.ttl)
      .field("wechat_api_base", &self.wechat_api_base)
      .field("http_timeout", &self.http_timeout)
      .field("validation_cache_size", &self.validation_cache_size)
      .field("sliding_ttl", &self.sliding_ttl)
      .finish_non_exhaustive()
  }
}

impl Settings {
  /// Validates `options`, filling what is unset from `env` and then the defaults.
  pub fn new(options: Options, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
    let app_id = non_empty("appId", options.app_id)?;
    let app_secret = non_empty("appSecret", options.app_secret)?;
    if options.sku.contains('|') {
      return Err(Error::option_range("sku must not contain '|'"));
    }
    let token_store = match options.token_store.as_deref() {
      None | Some("redis") => Backend::Redis,
      Some("sqlite") => Backend::Sqlite,
      Some(other) => {
        return Err(Error::option_range(format!(
          "options.tokenStore must be 'redis' or 'sqlite', got {other:?}"
        )))
      }
    };
    let profile_writes = match options.profile_writes.as_deref() {
      None | Some("insert") => ProfileWrites::Insert,
      Some("always") => ProfileWrites::Always,
      Some("never") => ProfileWrites::Never,
      Some(other) => {
        return Err(Error::option_range(format!(
          "options.profileWrites must be 'insert', 'always' or 'never', got {other:?}"
        )))
      }
    };
    let user_store = options.user_store.unwrap_or(false);
    let db_path = match options.db_path.filter(|path| !path.is_empty()) {
      Some(path) => Some(path),
      None if user_store && token_store != Backend::Sqlite => None,
      None if user_store => {
        return Err(Error::option_type(
          "db must be a SQLite file path with tokenStore: 'sqlite' (userStore holds the users, not the tokens)",
        ))
      }
      None => return Err(Error::option_type("db must be a non-empty string")),
    };
    if db_path.as_deref().is_some_and(is_in_memory) {
      return Err(Error::option_range(
        "db must be a SQLite file such as './users.db': an in-memory database (':memory:', \
         'file::memory:…', 'file:…?mode=memory') vanishes with its last connection and cannot \
         be shared with mpauthx",
      ));
    }
    let ttl = positive_integer(
      "tokenTTL",
      options
        .ttl
        .unwrap_or(f64::from(crate::DEFAULT_TOKEN_TTL_SECONDS)),
    )?;
    let http_timeout_ms = positive_integer(
      "options.httpTimeoutMs",
      options.http_timeout_ms.unwrap_or(DEFAULT_HTTP_TIMEOUT_MS),
    )?;
    let user_store_timeout_ms = positive_integer(
      "options.userStoreTimeoutMs",
      options
        .user_store_timeout_ms
        .unwrap_or(DEFAULT_USER_STORE_TIMEOUT_MS),
    )?;
    let revoke_user_scan_ms = positive_integer(
      "options.revokeUserScanMs",
      options
        .revoke_user_scan_ms
        .unwrap_or(DEFAULT_REVOKE_USER_SCAN_MS),
    )?;
    let registration_ttl = positive_integer(
      "options.registrationTtl",
      options
        .registration_ttl
        .unwrap_or(DEFAULT_REGISTRATION_TTL_SECONDS),
    )?;
    let validation_cache_size = options
      .validation_cache_size
      .unwrap_or(DEFAULT_VALIDATION_CACHE_SIZE);
    if !(validation_cache_size.fract() == 0.0 && (0.0..=1e9).contains(&validation_cache_size)) {
      return Err(Error::option_range(format!(
        "options.validationCacheSize must be a whole number from 0 to 1e9, got {validation_cache_size}"
      )));
    }
    let redis = match options.redis_sentinel {
      None => redis_target(options.redis_url, options.redis_cluster_nodes, &env)?,
      Some(_) if options.redis_url.is_some() || options.redis_cluster_nodes.is_some() => {
        return Err(Error::option_range(
          "give one of options.redisUrl, options.redisClusterNodes and options.redisSentinel",
        ))
      }
      Some(sentinel) => sentinel_target(sentinel)?,
    };
    let redis_tls = redis_tls(options.redis_tls, &redis)?;
    let wechat_api_base = options
      .wechat_api_base
      .or_else(|| env(ENV_WECHAT_API_BASE))
      .unwrap_or_else(|| DEFAULT_WECHAT_API_BASE.to_owned());
    let wechat_api_base = wechat_api_base.trim_end_matches('/').to_owned();
    match reqwest::Url::parse(&wechat_api_base) {
      Ok(url) if matches!(url.scheme(), "http" | "https") => {}
      _ => {
        // Not echoed: a URL may carry credentials.
        return Err(Error::option_range(
          "options.wechatApiBase must be an http(s) URL such as https://api.weixin.qq.com",
        ));
      }
    }
    Ok(Self {
      app_id,
      app_secret,
      sku: options.sku,
      db_path: db_path.map(PathBuf::from),
      token_store,
      redis,
      redis_pass: options.redis_pass.filter(|pass| !pass.is_empty()),
      redis_tls,
      ttl: Duration::from_secs(ttl),
      wechat_api_base,
      http_timeout: Duration::from_millis(http_timeout_ms),
      validation_cache_size: validation_cache_size as usize,
      sliding_ttl: options.sliding_ttl.unwrap_or(false),
      user_store_timeout: Duration::from_millis(user_store_timeout_ms),
      profile_writes,
      // The record of a user outlives the user's token, so `refreshToken` on a server that
      // never saw the user works while the token lives.
      registration_ttl: Duration::from_secs(registration_ttl.max(ttl)),
      revoke_user_scan: Duration::from_millis(revoke_user_scan_ms),
    })
  }
}

/// Explicit options win over the environment; a cluster needs at least one node URL, and
/// giving both a URL and cluster nodes explicitly is a mistake worth an error.
fn redis_target(
  url: Option<String>, cluster_nodes: Option<Vec<String>>, env: &impl Fn(&str) -> Option<String>,
) -> Result<RedisTarget> {
  let target = match (url, cluster_nodes) {
    (Some(_), Some(_)) => {
      return Err(Error::option_range(
        "give options.redisUrl or options.redisClusterNodes, not both",
      ))
    }
    (Some(url), None) => RedisTarget::Single(url),
    (None, Some(nodes)) => RedisTarget::Cluster(nodes),
    (None, None) => match (env(ENV_REDIS_CLUSTER_NODES), env(ENV_REDIS_URL)) {
      (Some(nodes), _) if !nodes.trim().is_empty() => RedisTarget::Cluster(
        nodes
          .split(',')
          .map(|node| node.trim().to_owned())
          .filter(|node| !node.is_empty())
          .collect(),
      ),
      (_, Some(url)) => RedisTarget::Single(url),
      _ => RedisTarget::Single(DEFAULT_REDIS_URL.to_owned()),
    },
  };
  match &target {
    RedisTarget::Single(url) if !valid_url(url) => Err(Error::option_range(
      "options.redisUrl is not a valid redis:// or rediss:// URL",
    )),
    RedisTarget::Cluster(nodes) => check_urls("options.redisClusterNodes", nodes).map(|()| target),
    RedisTarget::Single(_) | RedisTarget::Sentinel { .. } => Ok(target),
  }
}

// A URL may hold a password, so messages never repeat it.
fn valid_url(url: &str) -> bool {
  redis::IntoConnectionInfo::into_connection_info(url).is_ok()
}

/// The URLs of `name` (cluster nodes, sentinels): at least one, each valid.
fn check_urls(name: &str, urls: &[String]) -> Result<()> {
  if urls.is_empty() {
    return Err(Error::option_range(format!(
      "{name} must list at least one redis:// or rediss:// URL"
    )));
  }
  match urls.iter().position(|url| !valid_url(url)) {
    Some(index) => Err(Error::option_range(format!(
      "{name}[{index}] is not a valid redis:// or rediss:// URL"
    ))),
    None => Ok(()),
  }
}

/// Sentinels are `redis://` (or, all of them, `rediss://`) URLs, and the master has a name.
fn sentinel_target(sentinel: RedisSentinelOptions) -> Result<RedisTarget> {
  check_urls("options.redisSentinel.nodes", &sentinel.nodes)?;
  if sentinel.master_name.is_empty() {
    return Err(Error::option_type(
      "options.redisSentinel.masterName must be a non-empty string",
    ));
  }
  Ok(RedisTarget::Sentinel {
    nodes: sentinel.nodes,
    master_name: sentinel.master_name,
    sentinel_password: sentinel.sentinel_password.filter(|pass| !pass.is_empty()),
  })
}

/// TLS settings go with `rediss://` URLs only (given with `redis://`, the connection would
/// silently be plain text), and every node of a cluster speaks the same.
fn redis_tls(options: Option<RedisTlsOptions>, target: &RedisTarget) -> Result<RedisTls> {
  let secure = |url: &str| url.starts_with("rediss://");
  let (uses_tls, name) = match target {
    RedisTarget::Single(url) => (secure(url), "options.redisUrl"),
    RedisTarget::Cluster(nodes) | RedisTarget::Sentinel { nodes, .. } => {
      let name = match target {
        RedisTarget::Cluster(_) => "options.redisClusterNodes",
        _ => "options.redisSentinel.nodes",
      };
      let count = nodes.iter().filter(|node| secure(node)).count();
      if count != 0 && count != nodes.len() {
        return Err(Error::option_range(format!(
          "{name} mixes redis:// and rediss:// URLs; they all speak TLS or none does"
        )));
      }
      (count != 0, name)
    }
  };
  let Some(options) = options else {
    return Ok(RedisTls::default());
  };
  if !uses_tls {
    return Err(Error::option_range(format!(
      "options.redisTls applies to rediss:// URLs, and {name} is redis:// (plain text)"
    )));
  }
  let pem = |name: &str, value: Option<String>, label: &str| match value {
    Some(text) if !text.contains(&format!("-----BEGIN {label}")) => Err(Error::option_range(
      format!("options.redisTls.{name} must be PEM text (-----BEGIN {label}…)"),
    )),
    other => Ok(other),
  };
  let ca = pem("ca", options.ca, "CERTIFICATE")?;
  let cert = pem("cert", options.cert, "CERTIFICATE")?;
  let key = pem("key", options.key, "")?;
  let client = match (cert, key) {
    (Some(cert), Some(key)) => Some((cert, key)),
    (None, None) => None,
    _ => {
      return Err(Error::option_type(
        "options.redisTls.cert and options.redisTls.key must be given together",
      ))
    }
  };
  Ok(RedisTls {
    ca,
    client,
    verify: options.reject_unauthorized.unwrap_or(true),
  })
}

/// Every spelling of an in-memory SQLite database: `:memory:`, and the URI forms
/// `file::memory:…` and `file:…?…mode=memory`.
fn is_in_memory(db_path: &str) -> bool {
  if db_path == ":memory:" {
    return true;
  }
  let Some(uri) = db_path.strip_prefix("file:") else {
    return false;
  };
  let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
  path.is_empty()
    || path == ":memory:"
    || query
      .split('&')
      .any(|pair| pair.eq_ignore_ascii_case("mode=memory"))
}

fn non_empty(name: &str, value: String) -> Result<String> {
  if value.is_empty() {
    return Err(Error::option_type(format!(
      "{name} must be a non-empty string"
    )));
  }
  Ok(value)
}

fn positive_integer(name: &str, value: f64) -> Result<u64> {
  if value.is_finite() && value.fract() == 0.0 && value >= 1.0 && value <= u32::MAX as f64 {
    Ok(value as u64)
  } else {
    Err(Error::option_range(format!(
      "{name} must be a positive integer no larger than {}, got {value}",
      u32::MAX
    )))
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::error::OptionProblem;

  fn options() -> Options {
    Options {
      app_id: "wx123".into(),
      app_secret: "secret".into(),
      sku: "app".into(),
      db_path: Some("/tmp/users.db".into()),
      ..Options::default()
    }
  }

  fn no_env(_: &str) -> Option<String> {
    None
  }

  /// An explicit `redisUrl` wins over whatever `env` holds.
  fn assert_explicit_url_wins(env: impl Fn(&str) -> Option<String>) {
    let explicit = Options {
      redis_url: Some("redis://127.0.0.1:1".into()),
      ..options()
    };
    let settings = Settings::new(explicit, env).unwrap();
    assert!(settings.redis == RedisTarget::Single("redis://127.0.0.1:1".into()));
  }

  /// An environment holding only `vars`.
  fn env_of(vars: &'static [(&str, &str)]) -> impl Fn(&str) -> Option<String> + Copy {
    move |name| {
      let found = vars.iter().find(|(var, _)| *var == name);
      found.map(|(_, value)| (*value).to_owned())
    }
  }

  #[test]
  fn defaults_apply_when_nothing_is_set() {
    let settings = Settings::new(options(), no_env).unwrap();
    assert_eq!(settings.ttl, Duration::from_secs(259_200));
    assert!(settings.redis == RedisTarget::Single(DEFAULT_REDIS_URL.into()));
    assert_eq!(settings.wechat_api_base, DEFAULT_WECHAT_API_BASE);
    assert_eq!(settings.http_timeout, Duration::from_millis(5_000));
    assert_eq!(settings.redis_pass, None);
    assert_eq!(settings.revoke_user_scan, Duration::from_secs(10));
  }

  #[test]
  fn environment_fills_unset_urls_and_options_win_over_it() {
    let env = env_of(&[
      (ENV_REDIS_URL, "redis://10.0.0.1:7000"),
      (ENV_WECHAT_API_BASE, "http://127.0.0.1:9/"),
    ]);
    let settings = Settings::new(options(), env).unwrap();
    assert!(settings.redis == RedisTarget::Single("redis://10.0.0.1:7000".into()));
    assert_eq!(settings.wechat_api_base, "http://127.0.0.1:9");
    assert_explicit_url_wins(env);
  }

  #[test]
  fn cluster_nodes_come_from_the_option_or_the_environment() {
    let env = env_of(&[
      (
        ENV_REDIS_CLUSTER_NODES,
        " redis://10.0.0.1:7000, redis://10.0.0.2:7000 ,",
      ),
      (ENV_REDIS_URL, "redis://10.0.0.9:6379"),
    ]);
    let from_env = Settings::new(options(), env).unwrap();
    assert!(
      from_env.redis
        == RedisTarget::Cluster(vec![
          "redis://10.0.0.1:7000".into(),
          "redis://10.0.0.2:7000".into()
        ])
    );
    // An explicit single URL beats cluster nodes from the environment.
    assert_explicit_url_wins(env);
    let option = Options {
      redis_cluster_nodes: Some(vec!["redis://127.0.0.1:7001".into()]),
      ..options()
    };
    assert!(
      Settings::new(option, no_env).unwrap().redis
        == RedisTarget::Cluster(vec!["redis://127.0.0.1:7001".into()])
    );
  }

  #[test]
  fn rejects_bad_values_with_the_right_kind() {
    let cases = [
      (
        Options {
          app_id: String::new(),
          ..options()
        },
        OptionProblem::Type,
      ),
      (
        Options {
          app_secret: String::new(),
          ..options()
        },
        OptionProblem::Type,
      ),
      (
        Options {
          db_path: Some(String::new()),
          ..options()
        },
        OptionProblem::Type,
      ),
      (
        Options {
          sku: "a|b".into(),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          db_path: Some(":memory:".into()),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          ttl: Some(0.0),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          ttl: Some(1.5),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          ttl: Some(-3.0),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          ttl: Some(f64::NAN),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          ttl: Some(1e12),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          http_timeout_ms: Some(0.0),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          revoke_user_scan_ms: Some(0.0),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          revoke_user_scan_ms: Some(2.5),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          redis_url: Some("nope".into()),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          redis_cluster_nodes: Some(vec![]),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          redis_cluster_nodes: Some(vec!["redis://127.0.0.1:7000".into(), "nope".into()]),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          redis_url: Some("redis://127.0.0.1:6379".into()),
          redis_cluster_nodes: Some(vec!["redis://127.0.0.1:7000".into()]),
          ..options()
        },
        OptionProblem::Range,
      ),
      (
        Options {
          wechat_api_base: Some("ftp://x".into()),
          ..options()
        },
        OptionProblem::Range,
      ),
    ];
    for (opts, kind) in cases {
      let err = Settings::new(opts.clone(), no_env).unwrap_err();
      let problem = match err {
        Error::InvalidOption { problem, .. } => Some(problem),
        _ => None,
      };
      assert_eq!(problem, Some(kind), "{err}");
    }
  }

  #[test]
  fn an_empty_redis_pass_means_no_password() {
    let opts = Options {
      redis_pass: Some(String::new()),
      ..options()
    };
    assert_eq!(Settings::new(opts, no_env).unwrap().redis_pass, None);
  }

  #[test]
  fn debug_output_hides_secrets() {
    let opts = Options {
      redis_pass: Some("hunter2".into()),
      ..options()
    };
    let shown = format!("{:?}", Settings::new(opts, no_env).unwrap());
    assert!(
      !shown.contains("secret") && !shown.contains("hunter2"),
      "{shown}"
    );
  }

  #[test]
  fn every_in_memory_spelling_is_refused_and_files_are_not() {
    for path in [
      ":memory:",
      "file::memory:",
      "file::memory:?cache=shared",
      "file:name?mode=memory",
      "file:name?cache=shared&mode=memory",
      "file:",
    ] {
      assert!(is_in_memory(path), "{path}");
    }
    for path in [
      "users.db",
      "/srv/app/users.db",
      "file:users.db",
      "file:users.db?mode=rwc",
      "memory.db",
    ] {
      assert!(!is_in_memory(path), "{path}");
    }
  }
}
