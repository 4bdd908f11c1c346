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

/// State changes kept for the next observed call at most; older ones are dropped (the
/// counters and `health()` still tell).
const MAX_PENDING_CHANGES: usize = 32;

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
  reconnects: AtomicU64,
  last_failure: Mutex<Option<Failure>>,
  access_token_fetches: AtomicU64,
  lock_waits: AtomicU64,
  /// State changes since the last observed call, for it to publish.
  changes: Mutex<Vec<call::Event>>,
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

  fn wechat(&self, outcome: WeChatOutcome, took: Duration) {
    let index = WeChatOutcome::ALL.iter().position(|&o| o == outcome);
    self.wechat_outcomes[index.unwrap_or(0)].fetch_add(1, Ordering::Relaxed);
    let ms = took.as_secs_f64() * 1000.0;
    for (bound, count) in LATENCY_BUCKETS_MS.iter().zip(&self.latency) {
      if ms <= *bound {
        count.fetch_add(1, Ordering::Relaxed);
      }
    }
    self.latency_count.fetch_add(1, Ordering::Relaxed);
    self
      .latency_sum_us
      .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    let kind = match outcome {
      WeChatOutcome::Timeout => Some("timeout"),
      WeChatOutcome::Network => Some("network"),
      WeChatOutcome::BadReply => Some("badReply"),
      _ => None,
    };
    self.link(Link::WeChat, outcome.answered(), kind);
  }

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

  /// Records what a round trip on `link` showed: up (it answered) or down, with why. A change
  /// of state is kept for the next observed call; down to up counts a reconnect.
  fn link(&self, link: Link, up: bool, error: Option<&'static str>) {
    let state = &self.links[link as usize];
    let new = if up { UP } else { DOWN };
    let old = state.state.load(Ordering::Relaxed);
    if !up {
      let at_ms = now_ms();
      *lock(&self.last_failure) = Some(Failure {
        link,
        kind: error.unwrap_or("failed"),
        at_ms,
      });
    }
    if old == new && (up || lock(&state.details).last_error == error) {
      return;
    }
    let mut details = lock(&state.details);
    // Another thread may have made the same change meanwhile.
    let old = state.state.swap(new, Ordering::Relaxed);
    if old != new {
      details.since_ms = now_ms();
    }
    if !up {
      details.last_error = error;
    }
    drop(details);
    if old == DOWN && up {
      self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    // A first answer is no change worth publishing; a first failure is.
    if old != new && !(old == 0 && up) {
      self.changed(call::Event::LinkChanged {
        link,
        up,
        error: if up { None } else { error },
      });
    }
  }

  /// Keeps a state change for the next observed call, within [`MAX_PENDING_CHANGES`], while
  /// JavaScript listens: a subscriber that comes later is not given old news.
  pub fn changed(&self, event: call::Event) {
    if !self.is_observed() {
      return;
    }
    let mut changes = lock(&self.changes);
    if changes.len() >= MAX_PENDING_CHANGES {
      changes.remove(0);
    }
    changes.push(event);
  }

  fn take_changes(&self) -> Vec<call::Event> {
    std::mem::take(&mut *lock(&self.changes))
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
      latency_counts: self.latency.iter().map(load).collect(),
      latency_count: load(&self.latency_count),
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
    let state = |t: &Telemetry| t.health(|link| link == Link::Redis)[0].state;
    assert_eq!(state(&telemetry), "unknown");
    telemetry.set_observed(true);
    telemetry.link(Link::Redis, true, None);
    telemetry.link(Link::Redis, true, None);
    telemetry.link(Link::Redis, false, Some("timeout"));
    telemetry.link(Link::Redis, false, Some("timeout"));
    assert_eq!(state(&telemetry), "down");
    telemetry.link(Link::Redis, true, None);
    assert_eq!(state(&telemetry), "up");
    assert_eq!(telemetry.snapshot().reconnects, 1);
    let changes = telemetry.take_changes();
    assert_eq!(changes.len(), 2, "down, up: the first answer is no change");
    assert_eq!(telemetry.snapshot().last_failure.unwrap().kind, "timeout");
  }

  #[test]
  fn pending_changes_are_bounded() {
    let telemetry = Telemetry::new();
    telemetry.set_observed(true);
    for i in 0..100 {
      telemetry.link(Link::WeChat, i % 2 == 0, Some("network"));
    }
    assert_eq!(telemetry.take_changes().len(), MAX_PENDING_CHANGES);
  }
}
