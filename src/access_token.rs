//! The app's access token, shared by every instance and process that uses the same token
//! store: cached there, and refreshed by one caller at a time, ahead of its expiry.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sessions::Sessions;
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
pub async fn shared_access_token(
  sessions: &Sessions,
  wechat: &WeChatClient,
  app_id: &str,
  refused: Option<&str>,
  fetch_limit: Duration,
  trace: &mut Trace,
) -> Result<(String, u64)> {
  if let Some(refused) = refused {
    sessions.drop_access_token(app_id, refused).await?;
  }
  // The lock outlives a fetch, so a caller that dies mid-fetch only delays the next one.
  let lock_ttl = fetch_limit + Duration::from_secs(1);
  let give_up = Instant::now() + lock_ttl + fetch_limit;
  // Who holds the lock: only its holder releases it, even after its TTL passed.
  let owner = lock_owner()?;
  let usable =
    |cached: Option<(String, u64)>| cached.filter(|(token, _)| Some(token.as_str()) != refused);
  loop {
    if let Some((token, seconds)) = usable(sessions.cached_access_token(app_id).await?) {
      trace.record("access_token.cached", || format!("{seconds} s left"));
      return Ok((token, seconds));
    }
    if sessions.lock_access_token(app_id, &owner, lock_ttl).await? {
      // The caller before may have stored a token and released the lock since the look above.
      if let Some(cached) = usable(sessions.cached_access_token(app_id).await?) {
        sessions.unlock_access_token(app_id, &owner).await?;
        return Ok(cached);
      }
      trace.record("access_token.fetch", || "this caller refreshes it".into());
      return match wechat.stable_token(refused.is_some(), trace).await {
        Ok((token, expires_in)) => {
          let keep = Duration::from_secs(expires_in)
            .saturating_sub(REFRESH_AHEAD)
            .max(MIN_CACHE);
          sessions
            .store_access_token(app_id, &token, keep, &owner)
            .await?;
          Ok((token, keep.as_secs()))
        }
        Err(err) => {
          sessions.unlock_access_token(app_id, &owner).await?;
          Err(err)
        }
      };
    }
    if Instant::now() > give_up {
      return Err(Error::Store(
        "no access token: another caller's refresh did not finish in time".into(),
      ));
    }
    tokio::time::sleep(POLL).await;
  }
}

/// A random name for this caller's hold on the lock.
fn lock_owner() -> Result<String> {
  let mut bytes = [0u8; 16];
  getrandom::fill(&mut bytes)
    .map_err(|err| Error::Store(format!("no randomness for the access-token lock: {err}")))?;
  Ok(hex::encode(bytes))
}
