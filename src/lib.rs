//! mpauthx: WeChat Mini-program login and the tokens it hands out, for Node.js.
//!
//! This file is the napi surface only; `index.js` wraps it into the factory of
//! mpauthx 1.3.2. The logic lives in plain Rust modules, one concern each.
//!
//! # Layout
//!
//! By concern, each over the infrastructure of `store/`, which knows no domain rules:
//!
//! - `service`: one instance; the login flow and the token calls, orchestrating the rest, and
//!   the glue where concerns meet.
//! - `config`: settings, their defaults, environment fallbacks and validation.
//! - `error`: the one error type (option problems included) and the mpauthx status codes.
//! - `wechat`: the WeChat API client (`jscode2session`, `stable_token`, phone numbers).
//! - `crypto`: decrypting user data, its watermark, and `checkSignature`.
//! - `token`: the shape of a token (`<userId>|<sku>|<64 hex>`) and its random part.
//! - `sessions/`: the tokens users hold and their rules (issue, reuse of the live token,
//!   refresh, slide, revoke, `revokeUser`): `redis.rs` with its index, `sqlite.rs`.
//! - `validation_cache.rs`: live tokens remembered in memory, answered without a round trip;
//!   `validation_cache/tracking.rs`: the connection whose client-side tracking keeps it exact.
//! - `app_token/`: WeChat's app token (`access_token`), cached and refreshed by one caller at
//!   a time (`mod.rs`), its cache and lock in `redis.rs` or `sqlite.rs`.
//! - `users/`: registered users: the SQLite `user` table (`user_table.rs`), the application's
//!   `options.userStore` called through JavaScript (`application.rs`), the records in Redis
//!   that a user registered (`registrations.rs`).
//! - `store/`: the infrastructure. `redis/`: the connection (`connection.rs`: one server, a
//!   Cluster, sentinels, TLS), the deadline and retry (`mod.rs`), every key (`keys.rs`), the
//!   Lua scripts (`scripts.rs` over `scripts/*.lua`). `sqlite/`: the file (`database.rs`), its
//!   OFD locks (`locks.rs`), every table (`schema.rs`). `opened.rs`: open once, close once.
//! - `trace`: the opt-in diagnostics steps of a call.
//! - `telemetry/`: what an operator sees: the counters of `stats()`, the connection states of
//!   `health()`, and a call's events for the diagnostics channels (`call.rs`, recorded through
//!   the call in progress).

mod app_token;
mod config;
mod crypto;
mod error;
mod service;
mod sessions;
mod store;
mod telemetry;
mod token;
mod trace;
mod users;
mod validation_cache;
mod wechat;

use std::sync::Arc;

use napi::bindgen_prelude::{ArrayBuffer, Function, Promise};
use napi::{Env, Status};
use napi_derive::napi;

use crate::config::{Options, Settings};
use crate::error::{status, Error, OptionProblem};
use crate::service::Service;
use crate::telemetry::call::{self, Event};
use crate::telemetry::Link;
use crate::trace::Trace;
use crate::users::StoreCallArgs;
use crate::validation_cache::Validity;

/// The token TTL when the factory is given none: 3 days, as in mpauthx 1.3.2.
#[napi]
pub const DEFAULT_TOKEN_TTL_SECONDS: u32 = 259_200;

/// Where the validation cache's memory (`Mpauthx#validity`) holds the lease, an `f64`.
#[napi]
pub const VALIDITY_LEASE_OFFSET: u32 = validation_cache::LEASE_OFFSET as u32;

/// Where the validation cache's memory holds the counters, `u32`s: the generation, then one
/// stamp per shard.
#[napi]
pub const VALIDITY_COUNTERS_OFFSET: u32 = validation_cache::COUNTERS_OFFSET as u32;

/// How many shards have a stamp in the validation cache's memory, after the generation.
#[napi]
pub const VALIDITY_SHARDS: u32 = validation_cache::SHARDS as u32;

/// The reply types of the calls, one per kind of success: `status_code`, `message`, the
/// call's `response` when it succeeded, and its `steps` when diagnostics are on. Failures
/// travel as values so that `index.js` can attach the numeric status `code`, which napi cannot
/// put on an async rejection.
macro_rules! replies {
  ($($name:ident($payload:ty) = $doc:literal;)*) => {$(
    #[doc = $doc]
    #[napi(object)]
    pub struct $name {
      pub status_code: u32,
      /// What `err.message` says: public words, 1.3.2's where 1.3.2 had them.
      pub message: String,
      /// What failed and where, for logs (`err.detail`), when the call failed.
      pub detail: Option<String>,
      /// What the call resolves with, when it succeeded.
      pub response: Option<$payload>,
      /// The steps of the call, when diagnostics are on.
      pub steps: Option<Vec<NativeStep>>,
      /// What the call did, for the diagnostics channels, while JavaScript listens.
      pub events: Option<Vec<NativeEvent>>,
    }

    impl $name {
      fn new(
        result: error::Result<impl Into<$payload>>, trace: Trace, events: Option<Vec<Event>>,
      ) -> Self {
        let steps = steps(trace);
        let events = native_events(events);
        match result {
          Ok(response) => Self {
            status_code: status::SUCCESS,
            message: "OK".into(),
            detail: None,
            response: Some(response.into()),
            steps,
            events,
          },
          Err(err) => Self {
            status_code: err.status_code(),
            message: err.message(),
            detail: Some(err.to_string()),
            response: None,
            steps,
            events,
          },
        }
      }
    }
  )*};
}

replies! {
  TokenReply(String) = "`authorize`, `login`, `refreshToken`: the token.";
  DataReply(String) = "`decryptData`: the decrypted object as JSON text.";
  BooleanReply(bool) = "`revokeToken`: whether a live token was deleted; `checkSignature`: whether it matches; `ready`: true.";
  CountReply(f64) = "`revokeUser`: how many live tokens were deleted.";
  TokenInfoReply(NativeTokenInfo) = "`verifyToken`: what the token stands for.";
  AccessTokenReply(AccessToken) = "`getAccessToken`: the app's shared access token.";
  PhoneReply(Phone) = "`getPhoneNumber`: the user's phone number.";
}

/// What a live token stands for, as `verifyToken` resolves it.
#[napi(object)]
pub struct NativeTokenInfo {
  /// The user id (the openId, or the unionId when WeChat gives one); `openId` as in 1.3.2.
  pub open_id: String,
  pub sku: String,
  /// Issue time, ms since the epoch.
  pub ctime: f64,
  /// Seconds left to live; `null` for a token without a TTL.
  pub expires_in: Option<f64>,
}

impl From<sessions::TokenInfo> for NativeTokenInfo {
  fn from(info: sessions::TokenInfo) -> Self {
    NativeTokenInfo {
      open_id: info.user_id,
      sku: info.sku,
      ctime: info.ctime_ms as f64,
      expires_in: info.expires_in.map(|seconds| seconds as f64),
    }
  }
}

/// The app's shared access token, as `getAccessToken` resolves it.
#[napi(object)]
pub struct AccessToken {
  pub access_token: String,
  /// Seconds it stays cached; it is refreshed before WeChat expires it.
  pub expires_in: f64,
}

impl From<(String, u64)> for AccessToken {
  /// The token and its seconds left, as the service gives them.
  fn from((access_token, seconds): (String, u64)) -> Self {
    AccessToken {
      access_token,
      expires_in: seconds as f64,
    }
  }
}

/// A user's phone number, as `getPhoneNumber` resolves it.
#[napi(object)]
pub struct Phone {
  pub phone_number: String,
  pub pure_phone_number: String,
  pub country_code: String,
}

impl From<wechat::PhoneInfo> for Phone {
  fn from(info: wechat::PhoneInfo) -> Self {
    Phone {
      phone_number: info.phone_number,
      pure_phone_number: info.pure_phone_number,
      country_code: info.country_code,
    }
  }
}

/// One step of a call for diagnostics.
#[napi(object)]
pub struct NativeStep {
  pub name: String,
  /// Milliseconds from the start of the native call.
  pub elapsed_ms: f64,
  pub detail: String,
}

/// A count by name.
#[napi(object)]
pub struct NamedCount {
  pub name: String,
  pub count: f64,
}

/// Round trips to one backend.
#[napi(object)]
pub struct StoreCounts {
  pub backend: String,
  pub round_trips: f64,
  pub retries: f64,
  pub failures: f64,
}

/// The last failure of any connection.
#[napi(object)]
pub struct NativeFailure {
  pub connection: String,
  pub kind: String,
  /// ms since the epoch.
  pub at: f64,
}

/// The validation cache's numbers.
#[napi(object)]
pub struct CacheCounts {
  pub entries: f64,
  pub invalidations: f64,
  pub on: bool,
}

/// The native counters; telemetry.js shapes them into `stats()`.
#[napi(object)]
pub struct NativeStats {
  pub wechat_requests: Vec<NamedCount>,
  pub latency_bounds_ms: Vec<f64>,
  /// Cumulative, one per bound.
  pub latency_counts: Vec<f64>,
  pub latency_count: f64,
  pub latency_sum_ms: f64,
  pub stores: Vec<StoreCounts>,
  pub reconnects: f64,
  pub last_failure: Option<NativeFailure>,
  pub access_token_fetches: f64,
  pub lock_waits: f64,
  pub cache: Option<CacheCounts>,
}

/// A connection as last observed.
#[napi(object)]
pub struct NativeLink {
  pub connection: String,
  /// `unknown`, `up` or `down`.
  pub state: String,
  /// When it became so, ms since the epoch.
  pub since: Option<f64>,
  pub last_error: Option<String>,
}

/// The native half of `health()`.
#[napi(object)]
pub struct NativeHealth {
  pub connections: Vec<NativeLink>,
  pub cache_on: Option<bool>,
}

/// A token the validation cache vouches for, and the counters it is vouched under: an answer
/// from JavaScript's memory holds while they are unchanged (see `Validity`).
#[napi(object)]
pub struct VouchedToken {
  /// Issue time, ms since the epoch.
  pub ctime: f64,
  /// When the token expires, on `performance.now()`'s clock; `null` for a token without a TTL.
  pub expires_at: Option<f64>,
  pub generation: u32,
  pub shard: u32,
  pub stamp: u32,
}

/// The outcomes of a batch of token checks, in the order of the tokens.
#[napi(object)]
pub struct CheckReply {
  pub status_codes: Vec<u32>,
  pub messages: Vec<String>,
  /// What failed and where, for each check (`err.detail`); empty for a live token.
  pub details: Vec<String>,
  /// The steps of the batch, when diagnostics are on.
  pub steps: Option<Vec<NativeStep>>,
  /// What the batch did, while JavaScript listens.
  pub events: Option<Vec<NativeEvent>>,
}

/// Something a call did or found, for the `mpauthx:wechat`, `mpauthx:store` and
/// `mpauthx:cache` channels (telemetry.js publishes it with the call's context).
#[napi(object)]
pub struct NativeEvent {
  /// `wechat`, `store` or `cache`.
  pub channel: String,
  /// The WeChat endpoint's path, or the store operation (`GET`, `pipeline`, `addUser`).
  pub name: Option<String>,
  /// `redis`, `sqlite` or `userStore`, for a store round trip or a link's change.
  pub backend: Option<String>,
  /// How a WeChat request ended (`ok`, `errcode`, …); `ok` or `failed` for a round trip.
  pub outcome: Option<String>,
  pub http_status: Option<u32>,
  pub errcode: Option<f64>,
  /// From the start of the native call.
  pub start_ms: Option<f64>,
  pub duration_ms: Option<f64>,
  /// A change of state: `up` or `down` for a link, `off` for the validation cache.
  pub state: Option<String>,
  /// Why a link is down: `timeout`, `disconnected`, `unreachable`, `busy`, `failed`, …
  pub error: Option<String>,
}

fn native_events(events: Option<Vec<Event>>) -> Option<Vec<NativeEvent>> {
  let ms = |duration: std::time::Duration| Some(duration.as_secs_f64() * 1000.0);
  let blank = |channel: &str| NativeEvent {
    channel: channel.to_owned(),
    name: None,
    backend: None,
    outcome: None,
    http_status: None,
    errcode: None,
    start_ms: None,
    duration_ms: None,
    state: None,
    error: None,
  };
  let events = events?.into_iter().map(|event| match event {
    Event::WeChat {
      endpoint,
      outcome,
      http_status,
      errcode,
      start,
      took,
    } => NativeEvent {
      name: Some(endpoint.to_owned()),
      outcome: Some(outcome.name().to_owned()),
      http_status: http_status.map(u32::from),
      errcode: errcode.map(|code| code as f64),
      start_ms: ms(start),
      duration_ms: ms(took),
      ..blank("wechat")
    },
    Event::Store {
      backend,
      operation,
      ok,
      start,
      took,
    } => NativeEvent {
      name: Some(operation),
      backend: Some(backend.name().to_owned()),
      outcome: Some(if ok { "ok" } else { "failed" }.to_owned()),
      start_ms: ms(start),
      duration_ms: ms(took),
      ..blank("store")
    },
    Event::LinkChanged { link, up, error } => NativeEvent {
      backend: (link != Link::WeChat).then(|| link.name().to_owned()),
      state: Some(if up { "up" } else { "down" }.to_owned()),
      error: error.map(str::to_owned),
      ..blank(if link == Link::WeChat {
        "wechat"
      } else {
        "store"
      })
    },
    Event::CacheOff => NativeEvent {
      state: Some("off".to_owned()),
      ..blank("cache")
    },
  });
  Some(events.collect())
}

fn steps(trace: Trace) -> Option<Vec<NativeStep>> {
  trace.into_steps().map(|steps| {
    steps
      .into_iter()
      .map(|step| NativeStep {
        name: step.name.to_owned(),
        elapsed_ms: step.elapsed.as_secs_f64() * 1000.0,
        detail: step.detail,
      })
      .collect()
  })
}

#[napi]
pub struct Mpauthx {
  service: Arc<Service>,
  diagnostics: bool,
  validation_cache_size: u32,
  sliding_window_ms: f64,
}

/// The body of a traced call: a trace for `options.logger`, the service's method, and the
/// reply JavaScript reads, with the outcome mapped by `.map(…)` when given.
macro_rules! traced {
  ($self:ident.$method:ident($($arg:expr),*) $(.map($map:expr))? => $reply:ident) => {{
    let mut trace = $self.trace();
    let work = $self.service.$method($($arg,)* &mut trace);
    let (result, events) = call::scope($self.service.telemetry(), work).await;
    $(let result = result.map($map);)?
    Ok($reply::new(result, trace, events))
  }};
}

#[napi]
impl Mpauthx {
  /// Validates the settings (throwing `TypeError`/`RangeError`) without connecting.
  /// `user_store`: `options.userStore`'s methods as one function `(call, userId, profile)`
  /// (index.js), when the application gave a store.
  #[napi(constructor)]
  pub fn new(
    env: Env, options: Options, user_store: Option<Function<StoreCallArgs, Promise<String>>>,
  ) -> napi::Result<Self> {
    let user_store = match user_store {
      Some(call) => Some(
        call
          .build_threadsafe_function::<StoreCallArgs>()
          .callee_handled::<false>()
          .weak::<true>()
          .build()?,
      ),
      None => None,
    };
    let diagnostics = options.diagnostics.unwrap_or(false);
    let settings = match Settings::new(options, |name| std::env::var(name).ok()) {
      Ok(settings) => settings,
      Err(Error::InvalidOption { problem, message }) => {
        match problem {
          OptionProblem::Type => env.throw_type_error(&message, None)?,
          OptionProblem::Range => env.throw_range_error(&message, None)?,
        }
        return Err(napi::Error::new(Status::PendingException, message));
      }
      Err(err) => return Err(napi::Error::new(Status::GenericFailure, err.to_string())),
    };
    let validation_cache_size = settings.validation_cache_size as u32;
    let sliding_window_ms = match settings.sliding_ttl {
      true => settings.ttl.as_millis() as f64 / 2.0,
      false => 0.0,
    };
    let service = Service::new(settings, user_store)
      .map_err(|err| napi::Error::new(Status::GenericFailure, err.to_string()))?;
    Ok(Self {
      service: Arc::new(service),
      diagnostics,
      validation_cache_size,
      sliding_window_ms,
    })
  }

  /// `authorize(code, encryptedData, iv)`: the user's token, registering the user with the
  /// decrypted profile.
  #[napi]
  pub async fn authorize(
    &self, code: Option<String>, encrypted_data: Option<String>, iv: Option<String>,
  ) -> napi::Result<TokenReply> {
    traced!(self.authorize(code, encrypted_data, iv) => TokenReply)
  }

  /// `login(code)`: the user's token, without a profile.
  #[napi]
  pub async fn login(&self, code: Option<String>) -> napi::Result<TokenReply> {
    traced!(self.login(code) => TokenReply)
  }

  /// `revokeUser(userId, { allSkus })`: how many of the user's live tokens were deleted.
  #[napi]
  pub async fn revoke_user(
    &self, user_id: Option<String>, all_skus: Option<bool>,
  ) -> napi::Result<CountReply> {
    let all_skus = all_skus.unwrap_or(false);
    traced!(self.revoke_user(user_id, all_skus).map(|count| count as f64) => CountReply)
  }

  /// `refreshToken(userId)`: a new token for a registered user; the old one stops working.
  #[napi]
  pub async fn refresh_token(&self, user_id: Option<String>) -> napi::Result<TokenReply> {
    traced!(self.refresh_token(user_id) => TokenReply)
  }

  /// `decryptData(token, encryptedData, iv)`: data WeChat encrypted with the session key.
  #[napi]
  pub async fn decrypt_data(
    &self, token: Option<String>, encrypted_data: Option<String>, iv: Option<String>,
  ) -> napi::Result<DataReply> {
    let work = self.service.decrypt_data(token, encrypted_data, iv);
    let (result, events) = call::scope(self.service.telemetry(), work).await;
    Ok(DataReply::new(result, self.trace(), events))
  }

  /// `checkSignature(token, rawData, signature)`: whether WeChat signed `rawData`.
  #[napi]
  pub async fn check_signature(
    &self, token: Option<String>, raw_data: Option<String>, signature: Option<String>,
  ) -> napi::Result<BooleanReply> {
    let work = self.service.check_signature(token, raw_data, signature);
    let (result, events) = call::scope(self.service.telemetry(), work).await;
    Ok(BooleanReply::new(result, self.trace(), events))
  }

  /// `verifyToken(token)`: what a live token stands for.
  #[napi]
  pub async fn verify_token(&self, token: Option<String>) -> napi::Result<TokenInfoReply> {
    traced!(self.verify_token(token) => TokenInfoReply)
  }

  /// `revokeToken(token)`: whether a live token was deleted.
  #[napi]
  pub async fn revoke_token(&self, token: Option<String>) -> napi::Result<BooleanReply> {
    traced!(self.revoke_token(token) => BooleanReply)
  }

  /// `ready()`: whether the stores can be used, checked without calling WeChat.
  #[napi]
  pub async fn ready(&self) -> napi::Result<BooleanReply> {
    traced!(self.ready() => BooleanReply)
  }

  /// `getAccessToken()`: WeChat's app token, shared through Redis or the SQLite file.
  #[napi]
  pub async fn get_access_token(&self) -> napi::Result<AccessTokenReply> {
    traced!(self.access_token() => AccessTokenReply)
  }

  /// `getPhoneNumber(code)`: the user's phone number, from a phone-number code.
  #[napi]
  pub async fn get_phone_number(&self, code: Option<String>) -> napi::Result<PhoneReply> {
    traced!(self.phone_number(code) => PhoneReply)
  }

  /// Live tokens the validation cache remembers at most (`options.validationCacheSize`).
  #[napi(getter)]
  pub fn validation_cache_size(&self) -> u32 {
    self.validation_cache_size
  }

  /// With `options.slidingTtl`, how long before its expiry (ms) a remembered token is no
  /// longer answered from memory, so that its check reaches the store and extends it (half
  /// the TTL); 0 without.
  #[napi(getter)]
  pub fn sliding_window_ms(&self) -> f64 {
    self.sliding_window_ms
  }

  /// What the validation cache vouches for `token`, answered on the calling thread; `null`
  /// when the store must be asked.
  #[napi]
  pub fn cached_token(&self, token: String) -> Option<VouchedToken> {
    let (cached, vouched) = self.service.cached(&token)?;
    let validity = self.service.validity()?;
    Some(VouchedToken {
      ctime: cached.ctime_ms as f64,
      expires_at: match cached.expires_at {
        Some(at) => Some(validity.js_ms(at)?),
        None => None,
      },
      generation: vouched.generation,
      shard: vouched.shard as u32,
      stamp: vouched.stamp,
    })
  }

  /// The validation cache's counters and lease as memory that JavaScript reads without a
  /// call (laid out as `Validity` in src/validation_cache.rs); `null` without a cache, or
  /// on a runtime that copies external memory (a copy would never see an invalidation).
  /// `js_now_ms` is `performance.now()`, read just before: times cross on that clock.
  #[napi]
  pub fn validity<'env>(
    &self, env: &'env Env, js_now_ms: f64,
  ) -> napi::Result<Option<ArrayBuffer<'env>>> {
    let Some(validity) = self.service.validity() else {
      return Ok(None);
    };
    validity.calibrate(js_now_ms);
    let data = Arc::as_ptr(&validity).cast_mut().cast::<u8>();
    let len = std::mem::size_of::<Validity>();
    // SAFETY: `data` points to `len` bytes that live as long as the `Arc` the buffer's
    // finalizer drops; they are only written through atomics.
    let buffer = unsafe {
      ArrayBuffer::from_external(env, data, len, validity, |_, validity| drop(validity))
    }?;
    Ok((buffer.as_ptr() == data.cast_const()).then_some(buffer))
  }

  /// Checks the tokens of every `isTokenValid` call made in the same tick, in one Redis
  /// round trip (`index.js` gathers them).
  #[napi]
  pub async fn check_tokens(&self, tokens: Vec<String>) -> napi::Result<CheckReply> {
    let mut trace = self.trace();
    let work = self.service.check_tokens(&tokens, &mut trace);
    let (results, events) = call::scope(self.service.telemetry(), work).await;
    let mut reply = CheckReply {
      status_codes: Vec::with_capacity(results.len()),
      messages: Vec::with_capacity(results.len()),
      details: Vec::with_capacity(results.len()),
      steps: None,
      events: native_events(events),
    };
    for result in results {
      let (code, message, detail) = match result {
        Ok(()) => (status::SUCCESS, String::from("OK"), String::new()),
        Err(err) => (err.status_code(), err.message(), err.to_string()),
      };
      reply.status_codes.push(code);
      reply.messages.push(message);
      reply.details.push(detail);
    }
    Ok(CheckReply {
      steps: steps(trace),
      ..reply
    })
  }

  /// Does nothing: measures the cost of an async call across the napi boundary.
  #[napi]
  pub async fn noop(&self) -> napi::Result<u32> {
    Ok(status::SUCCESS)
  }

  /// Panics inside an async call; only the test suite reaches it.
  #[napi]
  pub async fn panic_for_testing(&self) -> napi::Result<TokenReply> {
    Ok(TokenReply::new(
      self.service.panic_for_testing().await,
      Trace::disabled(),
      None,
    ))
  }

  fn trace(&self) -> Trace {
    Trace::new(self.diagnostics)
  }

  /// Whether calls collect their events for the diagnostics channels: JavaScript says so
  /// when their subscribers come or go.
  #[napi]
  pub fn observe(&self, observed: bool) {
    self.service.telemetry().set_observed(observed);
  }

  /// The native half of `stats()`: counters, and the validation cache's numbers.
  #[napi]
  pub fn stats(&self) -> NativeStats {
    let (snapshot, cache) = self.service.stats();
    NativeStats {
      wechat_requests: snapshot
        .wechat_outcomes
        .into_iter()
        .map(|(outcome, count)| NamedCount {
          name: outcome.to_owned(),
          count: count as f64,
        })
        .collect(),
      latency_bounds_ms: telemetry::LATENCY_BUCKETS_MS.to_vec(),
      latency_counts: snapshot
        .latency_counts
        .into_iter()
        .map(|c| c as f64)
        .collect(),
      latency_count: snapshot.latency_count as f64,
      latency_sum_ms: snapshot.latency_sum_ms,
      stores: snapshot
        .stores
        .into_iter()
        .map(|(backend, round_trips, retries, failures)| StoreCounts {
          backend: backend.to_owned(),
          round_trips: round_trips as f64,
          retries: retries as f64,
          failures: failures as f64,
        })
        .collect(),
      reconnects: snapshot.reconnects as f64,
      last_failure: snapshot.last_failure.map(|failure| NativeFailure {
        connection: failure.link.name().to_owned(),
        kind: failure.kind.to_owned(),
        at: failure.at_ms,
      }),
      access_token_fetches: snapshot.access_token_fetches as f64,
      lock_waits: snapshot.lock_waits as f64,
      cache: cache.map(|(entries, invalidations, on)| CacheCounts {
        entries: entries as f64,
        invalidations: invalidations as f64,
        on,
      }),
    }
  }

  /// The native half of `health()`: each connection as last observed, without I/O.
  #[napi]
  pub fn health(&self) -> NativeHealth {
    let (links, cache_on) = self.service.health();
    NativeHealth {
      connections: links
        .into_iter()
        .map(|link| NativeLink {
          connection: link.link.name().to_owned(),
          state: link.state.to_owned(),
          since: link.since_ms,
          last_error: link.last_error.map(str::to_owned),
        })
        .collect(),
      cache_on,
    }
  }

  /// The synchronous first step of `close()`: new calls are refused, and nothing more is
  /// answered from memory, before `close()` returns its promise.
  #[napi]
  pub fn stop_accepting(&self) {
    self.service.stop_accepting();
  }

  #[napi]
  pub async fn close(&self) -> napi::Result<()> {
    self.service.close().await;
    Ok(())
  }
}
