//! One mpauthx instance: the login flow and the token calls, orchestrating the WeChat
//! client, the decryption, the registered users, the sessions, the validation cache and the
//! app token.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::app_token::{self, AppTokenStore, RedisAppToken, SqliteAppToken};
use crate::config::{Backend, Settings};
use crate::crypto::{self, ProfileValue, Sealed};
use crate::error::{Error, Result};
use crate::sessions::{Issue, RedisSessions, SessionStore, SqliteSessions, TokenInfo};
use crate::store::now_us;
use crate::store::redis::Redis;
use crate::store::sqlite::{locks_refused, Database};
use crate::telemetry::{Link, LinkHealth, Snapshot, Telemetry};
use crate::token;
use crate::trace::Trace;
use crate::users::{ApplicationStore, Registrations, StoreCall, UserStore, UserTable};
use crate::validation_cache::{CachedToken, Tracking, Validity, Vouched};
use crate::wechat::{PhoneInfo, Refusal, WeChatClient};

/// Longest login code accepted; WeChat's are 32 characters.
pub const MAX_CODE_LEN: usize = 512;

pub struct Service {
  app_id: String,
  /// The instance's sku, checked where its tokens are issued.
  sku: String,
  wechat: WeChatClient,
  /// The tokens users hold: the store knows the sku.
  sessions: SessionStore,
  /// Live tokens remembered in memory, with Redis and a `validationCacheSize` above 0.
  validation_cache: Option<Arc<Tracking>>,
  /// WeChat's app token, cached and locked where the sessions are.
  app_token: AppTokenStore,
  users: UserStore,
  /// With Redis: the records that a user registered, for servers that do not share the
  /// SQLite file (which shares itself).
  registrations: Option<Registrations>,
  /// The Redis connection the sessions, the app token and the registrations share.
  redis: Option<Arc<Redis>>,
  /// The SQLite file, unless users live in `options.userStore` and tokens in Redis.
  database: Option<Database>,
  http_timeout: std::time::Duration,
  closed: AtomicBool,
  /// Set once [`Service::ready`]'s checks passed: they run before a login spends its code
  /// until then.
  checked: AtomicBool,
  /// Calls started and not yet finished; `close()` waits for them.
  in_flight: AtomicUsize,
  drained: Notify,
  /// The instance's counters and connection states (`stats()`, `health()`).
  telemetry: Arc<Telemetry>,
}

/// A call in progress, counted until it is dropped.
struct Call<'a>(&'a Service);

impl Drop for Call<'_> {
  fn drop(&mut self) {
    if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
      self.0.drained.notify_waiters();
    }
  }
}

impl Service {
  /// Sets up the instance without connecting to anything yet.
  /// Users go to `user_store` when the application gave one (`options.userStore`), else to
  /// the SQLite file's `user` table.
  pub fn new(settings: Settings, user_store: Option<StoreCall>) -> Result<Self> {
    let sku = settings.sku.clone();
    let database = settings.db_path.map(Database::new);
    let (mut redis, mut validation_cache, mut registrations) = (None, None, None);
    let (sessions, app_token) = match settings.token_store {
      Backend::Redis => {
        let (target, pass, tls) = (
          &settings.redis,
          settings.redis_pass.as_deref(),
          &settings.redis_tls,
        );
        let shared = Arc::new(Redis::new(target, pass, tls, None)?);
        validation_cache = match NonZeroUsize::new(settings.validation_cache_size) {
          Some(capacity) => Some(Tracking::new(target, pass, tls, capacity)?),
          None => None,
        };
        let ttls = (settings.ttl, settings.registration_ttl);
        let sessions = RedisSessions::new(
          shared.clone(),
          validation_cache.clone(),
          ttls,
          settings.sku.clone(),
          settings.sliding_ttl,
        )
        .with_revoke_user_scan(settings.revoke_user_scan);
        registrations = Some(Registrations::new(
          shared.clone(),
          settings.sku,
          settings.registration_ttl.max(settings.ttl),
        ));
        let app_token = AppTokenStore::Redis(RedisAppToken::new(shared.clone()));
        redis = Some(shared);
        (SessionStore::Redis(Box::new(sessions)), app_token)
      }
      Backend::Sqlite => {
        // Settings refuse `tokenStore: 'sqlite'` without a file.
        let file = database.clone().ok_or(Error::MissingParameter("db"))?;
        let (sku, sliding) = (settings.sku, settings.sliding_ttl);
        let sessions = SqliteSessions::new(file.clone(), settings.ttl, sku, sliding);
        let app_token = AppTokenStore::Sqlite(SqliteAppToken::new(file));
        (SessionStore::Sqlite(sessions), app_token)
      }
    };
    let users = match (user_store, &database) {
      (Some(call), _) => UserStore::Application(ApplicationStore::new(
        call,
        settings.user_store_timeout,
        settings.profile_writes,
      )),
      (None, Some(file)) => UserStore::Table(UserTable::new(file.clone(), settings.profile_writes)),
      (None, None) => return Err(Error::MissingParameter("db")),
    };
    Ok(Self {
      wechat: WeChatClient::new(
        &settings.wechat_api_base,
        &settings.app_id,
        &settings.app_secret,
        settings.http_timeout,
      )?,
      sessions,
      validation_cache,
      app_token,
      users,
      registrations,
      redis,
      database,
      http_timeout: settings.http_timeout,
      app_id: settings.app_id,
      sku,
      closed: AtomicBool::new(false),
      checked: AtomicBool::new(false),
      in_flight: AtomicUsize::new(0),
      drained: Notify::new(),
      telemetry: Arc::new(Telemetry::new()),
    })
  }

  /// Logs a mini-program user in: the user's live token for this sku, or a new one; the
  /// decrypted profile is written to the `user` table.
  pub async fn authorize(
    &self, code: Option<String>, encrypted_data: Option<String>, iv: Option<String>,
    trace: &mut Trace,
  ) -> Result<String> {
    let code = login_code(code)?;
    let encrypted_data = required("encryptedData", encrypted_data)?;
    let iv = required("iv", iv)?;
    // Data that cannot be valid is refused before the user's one-time code is spent.
    let sealed = Sealed::parse(&encrypted_data, &iv)?;
    let _call = self.enter()?;
    // So is a store that cannot be used.
    self.ready_for_login(trace).await?;
    let code_session = self.wechat.code_to_session(&code, trace).await?;
    let user = crypto::parse_user_info(&self.app_id, &sealed.open(&code_session.session_key)?)?;
    trace.record("user_data.decrypted", || {
      let id = if user.union_id.is_some() {
        "unionId"
      } else {
        "openId"
      };
      format!("user id is the {id}")
    });
    if user.open_id != code_session.open_id {
      return Err(Error::OpenIdMismatch);
    }
    self
      .sign_in(
        user.user_id(),
        &user.profile,
        &code_session.session_key,
        trace,
      )
      .await
  }

  /// Logs a user in with the code of `wx.login` alone: the user id is the unionid of the
  /// jscode2session reply when there is one, else its openid.
  pub async fn login(&self, code: Option<String>, trace: &mut Trace) -> Result<String> {
    let code = login_code(code)?;
    let _call = self.enter()?;
    // A store that cannot be used is found before the user's one-time code is spent.
    self.ready_for_login(trace).await?;
    let code_session = self.wechat.code_to_session(&code, trace).await?;
    self
      .sign_in(
        code_session.user_id(),
        &[],
        &code_session.session_key,
        trace,
      )
      .await
  }

  /// Checks the configuration without calling WeChat: the token store answers (Redis, or the
  /// SQLite file), and the user registry can be used (the `user` table, or the application's
  /// store). Runs anew at every call; once it passed, logins need not check again.
  pub async fn ready(&self, trace: &mut Trace) -> Result<bool> {
    let _call = self.enter()?;
    self.check_stores(trace).await?;
    Ok(true)
  }

  /// [`Service::ready`]'s checks, until they pass once.
  async fn ready_for_login(&self, trace: &mut Trace) -> Result<()> {
    if self.checked.load(Ordering::Acquire) {
      return Ok(());
    }
    self.check_stores(trace).await
  }

  /// Both stores' checks, remembered once they passed; reports SQLite refusing the OFD locks
  /// that keep the application's SQLite and this one apart.
  async fn check_stores(&self, trace: &mut Trace) -> Result<()> {
    tokio::try_join!(self.sessions.ready(), self.users.ready())?;
    self.checked.store(true, Ordering::Release);
    if let Some(why) = locks_refused() {
      trace.record("sqlite.locks", || why.into());
    }
    trace.record("stores.ready", || {
      "token store and user registry answer".into()
    });
    Ok(())
  }

  /// The token rules shared by both logins: reuse the live token, else register the user
  /// and issue one.
  async fn sign_in(
    &self, user_id: &str, profile: &[(&'static str, ProfileValue)], session_key: &str,
    trace: &mut Trace,
  ) -> Result<String> {
    token::check_user_id(user_id)?;
    token::check_sku(&self.sku)?;
    let (live, registered) = tokio::try_join!(
      self.sessions.live_token(user_id, session_key),
      self.users.ensure(user_id, profile)
    )?;
    trace.record("user.registered", || {
      if registered.added {
        "new user added"
      } else {
        "user already registered"
      }
      .into()
    });
    if let Some(why) = &registered.profile_refused {
      trace.record("user.profile_refused", || {
        format!("the user table refused the profile values, registered without them: {why}")
      });
    }
    if let Some(live) = live {
      trace.record("token.reused", || "live token found".into());
      return Ok(live);
    }
    if let Some(registrations) = &self.registrations {
      registrations.remember(user_id).await?;
    }
    let token = self
      .sessions
      .issue(user_id, Issue::ReuseLive { session_key })
      .await?;
    trace.record("token.issued", || "token stored with its ttl".into());
    Ok(token)
  }

  /// Decrypts any encrypted payload with the session key kept for a live token.
  pub async fn decrypt_data(
    &self, token: Option<String>, encrypted_data: Option<String>, iv: Option<String>,
  ) -> Result<String> {
    let encrypted_data = required("encryptedData", encrypted_data)?;
    let iv = required("iv", iv)?;
    let sealed = Sealed::parse(&encrypted_data, &iv)?;
    let session_key = self.session_key(token).await?;
    let data = crypto::parse_data(&self.app_id, &sealed.open(&session_key)?)?;
    Ok(serde_json::Value::Object(data).to_string())
  }

  /// Whether `signature` is `sha1(raw_data + session_key)` with the session key kept for a live token.
  pub async fn check_signature(
    &self, token: Option<String>, raw_data: Option<String>, signature: Option<String>,
  ) -> Result<bool> {
    let raw_data = required("rawData", raw_data)?;
    let signature = required("signature", signature)?;
    let session_key = self.session_key(token).await?;
    Ok(crypto::signature_matches(
      &raw_data,
      &session_key,
      &signature,
    ))
  }

  /// The app's access token, shared through the token store: `(token, seconds left)`.
  pub async fn access_token(&self, trace: &mut Trace) -> Result<(String, u64)> {
    let _call = self.enter()?;
    self.shared_access_token(None, trace).await
  }

  /// A user's phone number from a `getPhoneNumber` code; an access token that WeChat
  /// refuses as invalid or expired is replaced once.
  pub async fn phone_number(&self, code: Option<String>, trace: &mut Trace) -> Result<PhoneInfo> {
    let code = login_code(code)?;
    let _call = self.enter()?;
    let (mut access_token, _) = self.shared_access_token(None, trace).await?;
    for attempt in 0..2 {
      match self
        .wechat
        .phone_number(&access_token, &code, trace)
        .await?
      {
        Ok(info) => return Ok(info),
        Err(Refusal {
          errcode: 40001 | 42001,
          ..
        }) if attempt == 0 => {
          trace.record("access_token.refused", || "fetching a fresh one".into());
          access_token = self
            .shared_access_token(Some(&access_token), trace)
            .await?
            .0;
        }
        Err(refusal) => {
          return Err(Error::WeChat {
            endpoint: "getuserphonenumber",
            why: refusal.to_string(),
          })
        }
      }
    }
    unreachable!("the second attempt returns")
  }

  async fn shared_access_token(
    &self, refused: Option<&str>, trace: &mut Trace,
  ) -> Result<(String, u64)> {
    app_token::shared_access_token(
      &self.app_token,
      &self.wechat,
      &self.app_id,
      refused,
      self.http_timeout,
      trace,
    )
    .await
  }

  /// The session key kept for a live token; [`Error::InvalidToken`] when there is none.
  async fn session_key(&self, token: Option<String>) -> Result<String> {
    let token = required("token", token)?;
    let _call = self.enter()?;
    self
      .sessions
      .session_key(&token)
      .await?
      .ok_or(Error::InvalidToken)
  }

  /// Deletes a live token; says whether there was one.
  pub async fn revoke_token(&self, token: Option<String>, trace: &mut Trace) -> Result<bool> {
    let token = required("token", token)?;
    let _call = self.enter()?;
    let revoked = self.sessions.revoke(&token).await?;
    trace.record("token.revoked", || {
      if revoked {
        "token deleted"
      } else {
        "no live token"
      }
      .into()
    });
    Ok(revoked)
  }

  /// Logs the user out of this sku, or of every sku sharing the store with `all_skus`; says
  /// how many live tokens were deleted.
  pub async fn revoke_user(
    &self, user_id: Option<String>, all_skus: bool, trace: &mut Trace,
  ) -> Result<u64> {
    let user_id = required("userId", user_id)?;
    token::check_user_id(&user_id)?;
    let _call = self.enter()?;
    let revoked = self.sessions.revoke_user(&user_id, all_skus).await?;
    trace.record("token.revoked", || {
      let skus = if all_skus { "every sku" } else { "this sku" };
      format!("{revoked} tokens deleted, {skus}")
    });
    Ok(revoked)
  }

  /// What a live token stands for; [`Error::InvalidToken`] when it is not live.
  pub async fn verify_token(&self, token: Option<String>, trace: &mut Trace) -> Result<TokenInfo> {
    let token = required("token", token)?;
    let _call = self.enter()?;
    let info = self.sessions.describe(&token).await;
    self.report_cache_off(trace);
    let info = info?;
    trace.record("token.checked", || {
      if info.is_some() { "live" } else { "not live" }.into()
    });
    info.ok_or(Error::InvalidToken)
  }

  /// Replaces the user's token for this sku with a new one; the user must be registered, on
  /// this server (SQLite) or any other sharing the Redis.
  pub async fn refresh_token(&self, user_id: Option<String>, trace: &mut Trace) -> Result<String> {
    let requested_at_us = now_us();
    let user_id = required("userId", user_id)?;
    token::check_user_id(&user_id)?;
    token::check_sku(&self.sku)?;
    let _call = self.enter()?;
    // Known to this server's SQLite file or, registered on another server, to Redis.
    let recorded = match &self.registrations {
      Some(registrations) => registrations.knows(&user_id).await?,
      None => false,
    };
    if !recorded && !self.users.exists(&user_id).await? {
      return Err(Error::UserNotFound);
    }
    trace.record("user.found", || "user is registered".into());
    let mode = Issue::Replace { requested_at_us };
    let token = self.sessions.issue(&user_id, mode).await?;
    trace.record("token.issued", || "token replaced".into());
    Ok(token)
  }

  /// What the validation cache vouches for `token`, answered on the caller's thread; `None`
  /// when the store must be asked (unknown token, or the cache may not answer now).
  pub fn cached(&self, token: &str) -> Option<(CachedToken, Vouched)> {
    self.check_open().ok()?;
    self.validation_cache.as_ref()?.cached(token)
  }

  /// The validation cache's counters and lease, for JavaScript to read.
  pub fn validity(&self) -> Option<Arc<Validity>> {
    Some(self.validation_cache.as_ref()?.validity())
  }

  /// Checks many tokens at once, in one Redis round trip; each gets the outcome that
  /// `isTokenValid` would give it alone.
  pub async fn check_tokens(&self, tokens: &[String], trace: &mut Trace) -> Vec<Result<()>> {
    let present: Vec<&str> = tokens
      .iter()
      .map(String::as_str)
      .filter(|token| !token.is_empty())
      .collect();
    let live = match self.enter() {
      Ok(_call) if present.is_empty() => Ok(Vec::new()),
      Ok(_call) => self.sessions.are_live(&present).await,
      Err(err) => Err(err),
    };
    self.report_cache_off(trace);
    trace.record("token.checked", || match &live {
      Ok(live) => {
        let count = live.iter().filter(|&&live| live).count();
        format!("{} of {} tokens live, one round trip", count, tokens.len())
      }
      Err(_) => format!("{} tokens not checked", tokens.len()),
    });
    let mut live = match live {
      Ok(live) => live.into_iter(),
      Err(err) => return tokens.iter().map(|_| Err(err.clone())).collect(),
    };
    tokens
      .iter()
      .map(|token| {
        if token.is_empty() {
          Err(Error::MissingParameter("token"))
        } else if live.next() == Some(true) {
          Ok(())
        } else {
          Err(Error::InvalidToken)
        }
      })
      .collect()
  }

  /// Records, in the call that found out, that the validation cache was turned off for good.
  fn report_cache_off(&self, trace: &mut Trace) {
    if !trace.is_enabled() {
      return;
    }
    if let Some(why) = self
      .validation_cache
      .as_ref()
      .and_then(|cache| cache.off_notice())
    {
      trace.record("cache.off", || why);
    }
  }

  /// The instance's counters and connection states; calls record into them (see
  /// [`crate::telemetry::call::scope`]).
  pub fn telemetry(&self) -> &Arc<Telemetry> {
    &self.telemetry
  }

  /// The counters, and the validation cache's `(live entries, invalidations, on)` when the
  /// instance has one.
  pub fn stats(&self) -> (Snapshot, Option<(usize, u64, bool)>) {
    let cache = self.validation_cache.as_ref().map(|cache| cache.stats());
    (self.telemetry.snapshot(), cache)
  }

  /// Each link this instance uses as last observed, and whether the validation cache is on
  /// when it has one.
  pub fn health(&self) -> (Vec<LinkHealth>, Option<bool>) {
    let links = self.telemetry.health(|link| match link {
      Link::Redis => self.redis.is_some(),
      Link::Sqlite => self.database.is_some(),
      Link::UserStore => matches!(self.users, UserStore::Application(_)),
      Link::WeChat => true,
    });
    let cache_on = self
      .validation_cache
      .as_ref()
      .map(|cache| !cache.is_off() && !self.closed.load(Ordering::Relaxed));
    (links, cache_on)
  }

  /// Panics inside a call, to prove that a panic reaches JavaScript as a rejection.
  #[doc(hidden)]
  pub async fn panic_for_testing(&self) -> Result<String> {
    tokio::task::yield_now().await;
    panic!("panic injected by a test")
  }

  /// Refuses new calls from now on and answers nothing more from memory; the first step of
  /// [`Service::close`], run on the caller's thread so that no call made after `close()`
  /// returned slips in before it.
  pub fn stop_accepting(&self) {
    self.closed.store(true, Ordering::SeqCst);
    if let Some(cache) = &self.validation_cache {
      cache.forget_all();
    }
  }

  /// Closes both stores once the calls already started finished (each bounded by its own
  /// timeouts); closing again does nothing.
  pub async fn close(&self) {
    self.stop_accepting();
    loop {
      let drained = self.drained.notified();
      if self.in_flight.load(Ordering::SeqCst) == 0 {
        break;
      }
      drained.await;
    }
    if let Some(redis) = &self.redis {
      redis.close();
    }
    if let Some(cache) = &self.validation_cache {
      cache.close();
    }
    if let Some(database) = &self.database {
      database.close().await;
    }
  }

  /// Counts a call in, unless the instance is closed.
  fn enter(&self) -> Result<Call<'_>> {
    self.in_flight.fetch_add(1, Ordering::SeqCst);
    let call = Call(self);
    self.check_open()?;
    Ok(call)
  }

  fn check_open(&self) -> Result<()> {
    if self.closed.load(Ordering::SeqCst) {
      return Err(Error::Closed);
    }
    Ok(())
  }
}

/// The login code of `wx.login`: required, and no longer than any WeChat gives.
fn login_code(code: Option<String>) -> Result<String> {
  let code = required("code", code)?;
  if code.len() > MAX_CODE_LEN {
    return Err(Error::InvalidParameter(format!(
      "code is longer than {MAX_CODE_LEN} bytes"
    )));
  }
  Ok(code)
}

/// A parameter that must be a non-empty string (`index.js` passes non-strings as `None`).
fn required(name: &'static str, value: Option<String>) -> Result<String> {
  value
    .filter(|value| !value.is_empty())
    .ok_or(Error::MissingParameter(name))
}
