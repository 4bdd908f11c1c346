//! The app's access token, shared by every instance and process that uses the same token
//! store: cached there, and refreshed by one caller at a time, ahead of its expiry.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::{FetchLock, TokenStore, MAX_LEASE};
use crate::token;
use crate::trace::Trace;
use crate::wechat::WeChatClient;

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
  store: &TokenStore, wechat: &WeChatClient, app_id: &str, refused: Option<&str>,
  fetch_limit: Duration, trace: &mut Trace,
) -> Result<(String, u64)> {
  if let Some(refused) = refused {
    store.drop_access_token(app_id, refused).await?;
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
  loop {
    if let Some((token, seconds)) = usable(store.cached_access_token(app_id).await?) {
      trace.record("access_token.cached", || format!("{seconds} s left"));
      return Ok((token, seconds));
    }
    if store.lock_access_token(lock, lease).await? {
      // The caller before may have stored a token and released the lock since the look above.
      if let Some(cached) = usable(store.cached_access_token(app_id).await?) {
        store.unlock_access_token(lock).await?;
        return Ok(cached);
      }
      trace.record("access_token.fetch", || "this caller refreshes it".into());
      return match wechat.stable_token(refused.is_some(), trace).await {
        Ok((token, expires_in)) => {
          let keep = cache_time(expires_in);
          store.store_access_token(app_id, &token, keep).await?;
          store.unlock_access_token(lock).await?;
          Ok((token, keep.as_secs()))
        }
        Err(err) => {
          store.unlock_access_token(lock).await?;
          Err(err)
        }
      };
    }
    if Instant::now() >= stop_waiting {
      return fetch_without_lock(store, wechat, app_id, refused, trace).await;
    }
    tokio::time::sleep(POLL).await;
  }
}

/// A waiter's own fetch after the holder's outlasted its patience: normal mode only (a forced
/// refresh is the holder's to make), offered to the cache without replacing what a holder
/// stored meanwhile, and the cache's token returned when there is one.
async fn fetch_without_lock(
  store: &TokenStore, wechat: &WeChatClient, app_id: &str, refused: Option<&str>, trace: &mut Trace,
) -> Result<(String, u64)> {
  trace.record("access_token.fetch", || {
    "another caller's fetch outlasted this caller's httpTimeoutMs: fetching in normal mode".into()
  });
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
  store.offer_access_token(app_id, &token, keep).await?;
  match store.cached_access_token(app_id).await? {
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
