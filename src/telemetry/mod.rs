//! What an operator sees of an instance: counters that only grow and gauges (`auth.stats()`),
//! the state of each connection as last observed (`auth.health()`), and the events of a call
//! for the `mpauthx:wechat`, `mpauthx:store` and `mpauthx:cache` diagnostics channels while
//! JavaScript has subscribers there ([`call`]).
//!
//! The infrastructure records through the call in progress ([`call::record_store`] and the
//! other functions of [`call`]): nothing is handed down the layers, and nothing outside a call
//! (the validation cache's heartbeat) is counted. Every number here is an atomic bumped once
//! per round trip; nothing names a user, a token, a code or a key.

pub mod call;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::opened::lock;

/// Upper bounds (ms) of the WeChat latency histogram: Prometheus' default buckets (5 ms to
/// 10 s), the last bucket (`+Inf`) being the count.
pub const LATENCY_BUCKETS_MS: [f64; 11] = [
  5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
];

/// Where a store round trip went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
  Redis,
  Sqlite,
  /// `options.userStore`, the application's own.
  UserStore,
}

impl Backend {
  pub const ALL: [Backend; 3] = [Backend::Redis, Backend::Sqlite, Backend::UserStore];

  /// The name JavaScript sees (`stats().store`, `health()`, the `mpauthx:store` channel).
  pub fn name(self) -> &'static str {
    match self {
      Backend::Redis => "redis",
      Backend::Sqlite => "sqlite",
      Backend::UserStore => "userStore",
    }
  }
}

/// Something an instance talks to, whose state `health()` reports as last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
  /// The token store's Redis connection (not the validation cache's own).
  Redis,
  Sqlite,
  WeChat,
  UserStore,
}

impl Link {
  pub const ALL: [Link; 4] = [Link::Redis, Link::Sqlite, Link::WeChat, Link::UserStore];

  pub fn name(self) -> &'static str {
    match self {
      Link::Redis => "redis",
      Link::Sqlite => "sqlite",
      Link::WeChat => "wechat",
      Link::UserStore => "userStore",
    }
  }
}

/// How a WeChat request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeChatOutcome {
  /// HTTP 2xx and no errcode (or 0).
  Ok,
  /// WeChat answered with an errcode of its own.
  Errcode,
  /// An HTTP status other than 2xx.
  HttpStatus,
  /// No whole reply within `httpTimeoutMs`.
  Timeout,
  /// Not reached, or the connection failed.
  Network,
  /// A reply that is not JSON, or too large.
  BadReply,
}

impl WeChatOutcome {
  pub const ALL: [WeChatOutcome; 6] = [
    WeChatOutcome::Ok,
    WeChatOutcome::Errcode,
    WeChatOutcome::HttpStatus,
    WeChatOutcome::Timeout,
    WeChatOutcome::Network,
    WeChatOutcome::BadReply,
  ];

  pub fn name(self) -> &'static str {
    match self {
      WeChatOutcome::Ok => "ok",
      WeChatOutcome::Errcode => "errcode",
      WeChatOutcome::HttpStatus => "httpStatus",
      WeChatOutcome::Timeout => "timeout",
      WeChatOutcome::Network => "network",
      WeChatOutcome::BadReply => "badReply",
    }
  }

  /// Whether WeChat answered (the link is up), whatever it said.
  fn answered(self) -> bool {
    matches!(
      self,
      WeChatOutcome::Ok | WeChatOutcome::Errcode | WeChatOutcome::HttpStatus
    )
  }
}

/// One instance's numbers and connection states.
#[derive(Default)]
pub struct Telemetry {
  /// Whether JavaScript has subscribers on the channels that carry a call's events.
  observed: AtomicBool,
  wechat_outcomes: [AtomicU64; 6],
  /// Cumulative: `latency[i]` counts the requests that took at most `LATENCY_BUCKETS_MS[i]`.
  latency: [AtomicU64; 11],
  latency_count: AtomicU64,
  latency_sum_us: AtomicU64,
  /// Per [`Backend`]: round trips, retries on a dead connection, failures.
  round_trips: [AtomicU64; 3],
  retries: [AtomicU64; 3],
  store_failures: [AtomicU64; 3],
  links: [LinkState; 4],
  /// The token store's Redis connection found up again after it was down.
  reconnects: AtomicU64,
  last_failure: Mutex<Option<Failure>>,
  access_token_fetches: AtomicU64,
  lock_waits: AtomicU64,
}

/// The state of a [`Link`]: 0 not used yet, [`UP`], [`DOWN`]; the details change with it.
#[derive(Default)]
struct LinkState {
  state: AtomicU8,
  details: Mutex<LinkDetails>,
}

const UP: u8 = 1;
const DOWN: u8 = 2;

#[derive(Default, Clone)]
struct LinkDetails {
  /// When the state last changed, ms since the epoch.
  since_ms: f64,
  last_error: Option<&'static str>,
}

/// The last failure of any link.
#[derive(Clone)]
pub struct Failure {
  pub link: Link,
  pub kind: &'static str,
  pub at_ms: f64,
}

/// A link as `health()` reports it.
pub struct LinkHealth {
  pub link: Link,
  /// `unknown` (not used yet), `up` or `down`.
  pub state: &'static str,
  pub since_ms: Option<f64>,
  pub last_error: Option<&'static str>,
}

/// A snapshot of the counters (`stats()`), gauges aside.
pub struct Snapshot {
  pub wechat_outcomes: Vec<(&'static str, u64)>,
  pub latency_counts: Vec<u64>,
  pub latency_count: u64,
  pub latency_sum_ms: f64,
  /// Per backend: `(name, round trips, retries, failures)`.
  pub stores: Vec<(&'static str, u64, u64, u64)>,
  pub reconnects: u64,
  pub last_failure: Option<Failure>,
  pub access_token_fetches: u64,
  pub lock_waits: u64,
}

impl Telemetry {
  pub fn new() -> Self {
    Self::default()
  }

  /// Whether calls collect their events now; JavaScript says so when its subscribers change.
  pub fn set_observed(&self, observed: bool) {
    self.observed.store(observed, Ordering::Relaxed);
  }

  pub fn is_observed(&self) -> bool {
    self.observed.load(Ordering::Relaxed)
  }

  /// Counts a WeChat request; says what it showed of WeChat when that changed.
  fn wechat(&self, outcome: WeChatOutcome, took: Duration) -> Option<call::Event> {
    let index = WeChatOutcome::ALL.iter().position(|&o| o == outcome);
    self.wechat_outcomes[index.unwrap_or(0)].fetch_add(1, Ordering::Relaxed);
    let ms = took.as_secs_f64() * 1000.0;
    // The count first and the buckets after, read in the other order by `snapshot`: a reader
    // never sees a bucket above the count.
    self.latency_count.fetch_add(1, Ordering::Release);
    self
      .latency_sum_us
      .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    for (bound, count) in LATENCY_BUCKETS_MS.iter().zip(&self.latency) {
      if ms <= *bound {
        count.fetch_add(1, Ordering::Release);
      }
    }
    let kind = match outcome {
      WeChatOutcome::Timeout => Some("timeout"),
      WeChatOutcome::Network => Some("network"),
      WeChatOutcome::BadReply => Some("badReply"),
      _ => None,
    };
    self.link(Link::WeChat, outcome.answered(), kind)
  }

  /// Counts a round trip to `backend`.
  fn store(&self, backend: Backend, ok: bool) {
    let i = backend as usize;
    self.round_trips[i].fetch_add(1, Ordering::Relaxed);
    if !ok {
      self.store_failures[i].fetch_add(1, Ordering::Relaxed);
    }
  }

  fn retry(&self, backend: Backend) {
    self.retries[backend as usize].fetch_add(1, Ordering::Relaxed);
  }

  fn access_token_fetch(&self) {
    self.access_token_fetches.fetch_add(1, Ordering::Relaxed);
  }

  fn lock_wait(&self) {
    self.lock_waits.fetch_add(1, Ordering::Relaxed);
  }

  /// Records what an exchange with `link` showed: up (it answered) or down, with why. Gives
  /// the change of state, for the call that found it to publish; a first answer is no change
  /// worth publishing, a first failure is. Redis found up after it was down counts a
  /// reconnect.
  fn link(&self, link: Link, up: bool, error: Option<&'static str>) -> Option<call::Event> {
    let state = &self.links[link as usize];
    let new = if up { UP } else { DOWN };
    if !up {
      *lock(&self.last_failure) = Some(Failure {
        link,
        kind: error.unwrap_or("failed"),
        at_ms: now_ms(),
      });
    }
    let old = state.state.load(Ordering::Relaxed);
    if old == new && (up || lock(&state.details).last_error == error) {
      return None;
    }
    let mut details = lock(&state.details);
    // Another thread may have made the same change meanwhile: only one reports it.
    let old = state.state.swap(new, Ordering::Relaxed);
    if old != new {
      details.since_ms = now_ms();
    }
    details.last_error = if up { None } else { error };
    drop(details);
    if old == DOWN && up && link == Link::Redis {
      self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    (old != new && !(old == 0 && up)).then_some(call::Event::LinkChanged {
      link,
      up,
      error: if up { None } else { error },
    })
  }

  /// Each link as last observed, the ones this instance uses.
  pub fn health(&self, used: impl Fn(Link) -> bool) -> Vec<LinkHealth> {
    Link::ALL
      .into_iter()
      .filter(|&link| used(link))
      .map(|link| {
        let state = &self.links[link as usize];
        let details = lock(&state.details).clone();
        let (state, since_ms) = match state.state.load(Ordering::Relaxed) {
          UP => ("up", Some(details.since_ms)),
          DOWN => ("down", Some(details.since_ms)),
          _ => ("unknown", None),
        };
        LinkHealth {
          link,
          state,
          since_ms,
          last_error: details.last_error,
        }
      })
      .collect()
  }

  pub fn snapshot(&self) -> Snapshot {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    Snapshot {
      wechat_outcomes: WeChatOutcome::ALL
        .iter()
        .zip(&self.wechat_outcomes)
        .map(|(outcome, count)| (outcome.name(), load(count)))
        .collect(),
      latency_counts: self
        .latency
        .iter()
        .map(|count| count.load(Ordering::Acquire))
        .collect(),
      latency_count: self.latency_count.load(Ordering::Acquire),
      latency_sum_ms: load(&self.latency_sum_us) as f64 / 1000.0,
      stores: Backend::ALL
        .iter()
        .map(|&backend| {
          let i = backend as usize;
          (
            backend.name(),
            load(&self.round_trips[i]),
            load(&self.retries[i]),
            load(&self.store_failures[i]),
          )
        })
        .collect(),
      reconnects: load(&self.reconnects),
      last_failure: lock(&self.last_failure).clone(),
      access_token_fetches: load(&self.access_token_fetches),
      lock_waits: load(&self.lock_waits),
    }
  }
}

/// Now, in ms since the epoch.
fn now_ms() -> f64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map_or(0.0, |since| since.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn the_latency_histogram_is_cumulative_and_counts_every_request() {
    let telemetry = Telemetry::new();
    telemetry.wechat(WeChatOutcome::Ok, Duration::from_millis(3));
    telemetry.wechat(WeChatOutcome::Ok, Duration::from_millis(30));
    telemetry.wechat(WeChatOutcome::Timeout, Duration::from_secs(20));
    let snapshot = telemetry.snapshot();
    assert_eq!(snapshot.latency_counts[0], 1, "≤ 5 ms");
    assert_eq!(snapshot.latency_counts[3], 2, "≤ 50 ms");
    assert_eq!(
      snapshot.latency_counts[10], 2,
      "≤ 10 s: the timeout is above"
    );
    assert_eq!(snapshot.latency_count, 3);
    assert!((snapshot.latency_sum_ms - 20_033.0).abs() < 0.01);
    assert_eq!(snapshot.wechat_outcomes[0], ("ok", 2));
    assert_eq!(snapshot.wechat_outcomes[3], ("timeout", 1));
  }

  #[test]
  fn a_link_reports_each_change_once_and_counts_a_reconnect() {
    let telemetry = Telemetry::new();
    let health = |t: &Telemetry| {
      let link = &t.health(|link| link == Link::Redis)[0];
      (link.state, link.last_error)
    };
    assert_eq!(health(&telemetry), ("unknown", None));
    let changes: Vec<_> = [
      telemetry.link(Link::Redis, true, None),
      telemetry.link(Link::Redis, true, None),
      telemetry.link(Link::Redis, false, Some("timeout")),
      telemetry.link(Link::Redis, false, Some("timeout")),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(health(&telemetry), ("down", Some("timeout")));
    assert_eq!(
      changes.len(),
      1,
      "the first answer is no change; down is, once"
    );
    assert!(
      telemetry.link(Link::Redis, true, None).is_some(),
      "up again"
    );
    assert_eq!(
      health(&telemetry),
      ("up", None),
      "an error is cleared by an answer"
    );
    assert_eq!(telemetry.snapshot().reconnects, 1);
    assert_eq!(telemetry.snapshot().last_failure.unwrap().kind, "timeout");
  }

  #[test]
  fn only_redis_coming_back_is_a_reconnect() {
    let telemetry = Telemetry::new();
    for link in [Link::WeChat, Link::Sqlite, Link::UserStore] {
      telemetry.link(link, false, Some("failed"));
      telemetry.link(link, true, None);
    }
    assert_eq!(telemetry.snapshot().reconnects, 0);
  }
}
