//! WeChat's app token (`access_token`), shared by every instance and process that uses the
//! same store: cached there, and refreshed by one caller at a time, ahead of its expiry. The
//! cache and the lock on fetching live in Redis ([`RedisAppToken`]) or in the SQLite file
//! ([`SqliteAppToken`]), wherever the instance keeps its sessions.

mod redis;
mod sqlite;

use std::time::{Duration, Instant};

pub use self::redis::RedisAppToken;
pub use self::sqlite::SqliteAppToken;
use crate::error::{Error, Result};
use crate::store::delegate;
use crate::telemetry::call;
use crate::token;
use crate::trace::Trace;
use crate::wechat::WeChatClient;

/// One caller's hold on the right to fetch an app's new access token: the app, and a random
/// name only the holder knows, so that only the holder releases the lock, even after its
/// lease passed.
#[derive(Debug, Clone, Copy)]
pub struct FetchLock<'a> {
  pub app_id: &'a str,
  pub owner: &'a str,
}

/// The longest lease the app token's lock is held for, whatever `httpTimeoutMs` says; the
/// SQLite store takes over a lock whose stored lease claims more.
pub const MAX_LEASE: Duration = Duration::from_secs(600);

/// Where the app token is cached and locked: the backend of the instance's sessions.
pub enum AppTokenStore {
  Redis(RedisAppToken),
  Sqlite(SqliteAppToken),
}

impl AppTokenStore {
  delegate! {
    /// The app's access token cached by any process sharing the store, with its seconds left.
    pub async fn cached(&self, app_id: &str) -> Result<Option<(String, u64)>>;
    /// Takes the right to fetch a new access token for a lease of `lease`; false when another
    /// caller holds it.
    pub async fn lock(&self, lock: FetchLock<'_>, lease: Duration) -> Result<bool>;
    /// Caches a fresh access token for `ttl`, in place of any cached one.
    pub async fn store(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()>;
    /// Caches `token` for `ttl` unless a live one is cached already; no lock is touched.
    pub async fn offer(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()>;
    /// Releases the lock, once the fetched token is stored or the fetch failed; a lock taken
    /// over since is left alone.
    pub async fn unlock(&self, lock: FetchLock<'_>) -> Result<()>;
    /// Forgets the cached access token if it is still `token` (which WeChat refused).
    pub async fn drop_refused(&self, app_id: &str, token: &str) -> Result<()>;
  }
}

/// A cached token is dropped this long before WeChat would expire it, so that callers
/// never hold one that dies in flight.
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// The shortest time a fetched token is cached, whatever WeChat says.
const MIN_CACHE: Duration = Duration::from_secs(60);

/// How often a caller waiting for another caller's fetch looks at the cache.
const POLL: Duration = Duration::from_millis(20);

/// The app's access token and its remaining seconds. `refused`, when given, is a token that
/// WeChat refused (errcode 40001 or 42001): it is dropped and a fresh one fetched.
///
/// One caller at a time fetches, holding a lease on the lock (`fetch_limit` and a second);
/// the others wait for the cache. A waiter waits at most `fetch_limit` of its own, however
/// long the holder's lease: then it fetches in stable_token's normal mode itself, which hands
/// every caller the same token, so no caller depends on another's `httpTimeoutMs`.
pub async fn shared_access_token(
  store: &AppTokenStore, wechat: &WeChatClient, app_id: &str, refused: Option<&str>,
  fetch_limit: Duration, trace: &mut Trace,
) -> Result<(String, u64)> {
  if let Some(refused) = refused {
    store.drop_refused(app_id, refused).await?;
  }
  // The lease outlives a fetch, so a caller that dies mid-fetch only delays the next one.
  let lease = (fetch_limit + Duration::from_secs(1)).min(MAX_LEASE);
  let stop_waiting = Instant::now() + fetch_limit;
  let owner = lock_owner()?;
  let lock = FetchLock {
    app_id,
    owner: &owner,
  };
  let usable =
    |cached: Option<(String, u64)>| cached.filter(|(token, _)| Some(token.as_str()) != refused);
  // Whether this caller waited for another's fetch, counted once.
  let mut waited = false;
  loop {
    if let Some((token, seconds)) = usable(store.cached(app_id).await?) {
      trace.record("access_token.cached", || format!("{seconds} s left"));
      return Ok((token, seconds));
    }
    if store.lock(lock, lease).await? {
      // The caller before may have stored a token and released the lock since the look above.
      if let Some(cached) = usable(store.cached(app_id).await?) {
        store.unlock(lock).await?;
        return Ok(cached);
      }
      trace.record("access_token.fetch", || "this caller refreshes it".into());
      call::access_token_fetch();
      return match wechat.stable_token(refused.is_some(), trace).await {
        Ok((token, expires_in)) => {
          let keep = cache_time(expires_in);
          store.store(app_id, &token, keep).await?;
          store.unlock(lock).await?;
          Ok((token, keep.as_secs()))
        }
        Err(err) => {
          store.unlock(lock).await?;
          Err(err)
        }
      };
    }
    if Instant::now() >= stop_waiting {
      return fetch_without_lock(store, wechat, app_id, refused, trace).await;
    }
    if !waited {
      waited = true;
      call::lock_wait();
    }
    tokio::time::sleep(POLL).await;
  }
}

/// A waiter's own fetch after the holder's outlasted its patience: normal mode only (a forced
/// refresh is the holder's to make), offered to the cache without replacing what a holder
/// stored meanwhile, and the cache's token returned when there is one.
async fn fetch_without_lock(
  store: &AppTokenStore, wechat: &WeChatClient, app_id: &str, refused: Option<&str>,
  trace: &mut Trace,
) -> Result<(String, u64)> {
  trace.record("access_token.fetch", || {
    "another caller's fetch outlasted this caller's httpTimeoutMs: fetching in normal mode".into()
  });
  call::access_token_fetch();
  let (token, expires_in) = wechat.stable_token(false, trace).await?;
  if Some(token.as_str()) == refused {
    return Err(Error::WeChat {
      endpoint: "stable_token",
      why: "WeChat still returns the access token it refused, and another caller's forced \
            refresh did not finish within httpTimeoutMs"
        .into(),
    });
  }
  let keep = cache_time(expires_in);
  store.offer(app_id, &token, keep).await?;
  match store.cached(app_id).await? {
    Some(cached) if Some(cached.0.as_str()) != refused => Ok(cached),
    _ => Ok((token, keep.as_secs())),
  }
}

/// How long a token WeChat gave for `expires_in` seconds is cached.
fn cache_time(expires_in: u64) -> Duration {
  Duration::from_secs(expires_in)
    .saturating_sub(REFRESH_AHEAD)
    .max(MIN_CACHE)
}

/// A random name for this caller's hold on the lock.
fn lock_owner() -> Result<String> {
  token::random_hex::<16>()
}
