//! Where tokens live: the token store, in Redis in the layout of mpauthx 1.3.2 (the default),
//! or in the application's SQLite file, for a single server that runs without Redis. Both
//! keep the same rules: a TTL, reuse of the live token, refresh, revoke, one live token per
//! user and sku. The store also caches the app's WeChat access token for every process that
//! shares it. [`sqlite`] holds the `user` table as well, which every backend uses, and
//! [`opened`] what both open on first use.

mod opened;
mod redis;
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use self::redis::RedisTokens;
pub use self::sqlite::{locks_refused, Database, Registered, SqliteTokens, Users};
use crate::error::Result;
use crate::validation_cache::{CachedToken, Validity, Vouched};

/// Whether an existing live token is handed back or replaced, and the WeChat session key
/// the token keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue<'a> {
  /// `authorize` and `login`: return the user's live token when there is one, keeping this
  /// login's session key with it.
  ReuseLive { session_key: &'a str },
  /// `refreshToken`: issue a new token and delete the old one; the new token carries the
  /// old one's session key. A refresh that finds a token issued after it was asked for (by
  /// a concurrent refresh) takes that one, so concurrent refreshes leave one live token.
  Replace { requested_at_us: u64 },
}

impl Issue<'_> {
  /// The session key this issue brings: a login's, none for a refresh.
  pub fn session_key(&self) -> Option<&str> {
    match self {
      Issue::ReuseLive { session_key } => Some(session_key),
      Issue::Replace { .. } => None,
    }
  }
}

/// One caller's hold on the right to fetch an app's new access token: the app, and a random
/// name only the holder knows, so that only the holder releases the lock, even after its
/// lease passed.
#[derive(Debug, Clone, Copy)]
pub struct FetchLock<'a> {
  pub app_id: &'a str,
  pub owner: &'a str,
}

/// What a live token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
  pub user_id: String,
  pub sku: String,
  /// When the token was issued, in ms since the epoch.
  pub ctime_ms: u64,
  /// Seconds it has left to live; `None` for a token without a TTL (not written by mpauthx).
  pub expires_in: Option<u64>,
}

/// The longest lease the app's access-token lock is held for, whatever `httpTimeoutMs` says;
/// the SQLite store takes over a lock whose stored lease claims more.
pub const MAX_LEASE: Duration = Duration::from_secs(600);

/// The token store of an instance, one of the backends; calls go to the one it is. A store
/// issues and looks up the tokens of its instance's sku, and checks, describes and revokes
/// a token of any sku.
pub enum TokenStore {
  Redis(Box<RedisTokens>),
  Sqlite(SqliteTokens),
}

/// The methods both backends have, each sent to the one the store is: declared once here,
/// with their documentation, and written out by the macro.
macro_rules! delegate {
  ($($(#[$doc:meta])* pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
    $(
      $(#[$doc])*
      pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
        match self {
          TokenStore::Redis(store) => store.$name($($arg),*).await,
          TokenStore::Sqlite(store) => store.$name($($arg),*).await,
        }
      }
    )*
  };
}

impl TokenStore {
  /// What the validation cache vouches for `token`, without a round trip. Only the Redis
  /// store has a cache: other processes write a SQLite file without telling anyone.
  pub fn cached(&self, token: &str) -> Option<(CachedToken, Vouched)> {
    match self {
      TokenStore::Redis(store) => store.cached(token),
      TokenStore::Sqlite(_) => None,
    }
  }

  /// Why the validation cache was just turned off for good, once (see
  /// `RedisTokens::cache_off_notice`).
  pub fn cache_off_notice(&self) -> Option<String> {
    match self {
      TokenStore::Redis(store) => store.cache_off_notice(),
      TokenStore::Sqlite(_) => None,
    }
  }

  /// The validation cache's counters and lease, for JavaScript to read.
  pub fn validity(&self) -> Option<Arc<Validity>> {
    match self {
      TokenStore::Redis(store) => store.validity(),
      TokenStore::Sqlite(_) => None,
    }
  }

  delegate! {
    /// Whether the store can be used now: Redis answers, or the SQLite file opens.
    pub async fn ready(&self) -> Result<()>;
    /// For each token, whether it is live.
    pub async fn are_live(&self, tokens: &[&str]) -> Result<Vec<bool>>;
    /// The user's live token, if any, keeping `session_key` with it.
    pub async fn live_token(&self, user_id: &str, session_key: &str) -> Result<Option<String>>;
    /// Issues a token for the user, or hands back the one the rules of `mode` reuse.
    pub async fn issue(&self, user_id: &str, mode: Issue<'_>) -> Result<String>;
    /// The WeChat session key kept with a live token; never leaves the library.
    pub async fn session_key(&self, token: &str) -> Result<Option<String>>;
    /// Deletes `token` if it is live; says whether it was.
    pub async fn revoke(&self, token: &str) -> Result<bool>;
    /// Deletes the user's live tokens of this sku, or with `all_skus` of every sku; says how many.
    pub async fn revoke_user(&self, user_id: &str, all_skus: bool) -> Result<u64>;
    /// What `token` stands for, if it is live.
    pub async fn describe(&self, token: &str) -> Result<Option<TokenInfo>>;
    /// The app's access token cached by any process sharing the store, with its seconds left.
    pub async fn cached_access_token(&self, app_id: &str) -> Result<Option<(String, u64)>>;
    /// Takes the right to fetch a new access token for a lease of `lease`; false when another
    /// caller holds it.
    pub async fn lock_access_token(&self, lock: FetchLock<'_>, lease: Duration) -> Result<bool>;
    /// Caches a fresh access token for `ttl`, in place of any cached one.
    pub async fn store_access_token(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()>;
    /// Caches `token` for `ttl` unless a live one is cached already; no lock is touched.
    pub async fn offer_access_token(&self, app_id: &str, token: &str, ttl: Duration) -> Result<()>;
    /// Releases the lock, once the fetched token is stored or the fetch failed.
    pub async fn unlock_access_token(&self, lock: FetchLock<'_>) -> Result<()>;
    /// Forgets the cached access token if it is still `token`.
    pub async fn drop_access_token(&self, app_id: &str, token: &str) -> Result<()>;
  }

  /// Records a registered user for servers that share the store but not the SQLite file;
  /// the SQLite store shares the file, so it has nothing to record.
  pub async fn remember_user(&self, user_id: &str) -> Result<()> {
    match self {
      TokenStore::Redis(store) => store.remember_user(user_id).await,
      TokenStore::Sqlite(_) => Ok(()),
    }
  }

  /// Whether another server recorded the user as registered.
  pub async fn knows_user(&self, user_id: &str) -> Result<bool> {
    match self {
      TokenStore::Redis(store) => store.knows_user(user_id).await,
      TokenStore::Sqlite(_) => Ok(false),
    }
  }

  /// Drops the store's connection; the SQLite store's file closes with the instance's `Database`.
  pub fn close(&self) {
    if let TokenStore::Redis(store) = self {
      store.close();
    }
  }

  /// Stops answering anything from memory (the validation cache empties), while the store
  /// stays open for the calls still in flight.
  pub fn forget_all(&self) {
    if let TokenStore::Redis(store) = self {
      store.forget_all();
    }
  }
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map_or(0, |since| since.as_micros() as u64)
}
