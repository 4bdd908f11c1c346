//! Sessions: the tokens users hold and their rules, over either backend: a TTL, reuse of the
//! live token, refresh, revoke, one live token per user and sku. In Redis (the default) in the
//! layout of mpauthx 1.3.2 with an index per user and sku ([`RedisSessions`]), or in the
//! application's SQLite file, for a single server without Redis ([`SqliteSessions`]).

mod redis;
mod sqlite;

pub use self::redis::RedisSessions;
pub use self::sqlite::SqliteSessions;
use crate::error::Result;
use crate::store::delegate;

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

/// The sessions of an instance, in one of the backends. It issues and looks up the tokens of
/// its instance's sku, and checks, describes and revokes a token of any sku.
pub enum SessionStore {
  Redis(Box<RedisSessions>),
  Sqlite(SqliteSessions),
}

impl SessionStore {
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
  }
}
