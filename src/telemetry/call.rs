//! The call in progress, as the infrastructure records into it: a task-local set around each
//! napi call ([`scope`]), so that the WeChat client, the Redis and SQLite layers and the user
//! store record their round trips without being handed anything. The counters of
//! [`Telemetry`] always count; the events are collected only while JavaScript listens
//! ([`Telemetry::is_observed`]), and cross with the call's reply.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Backend, Link, Telemetry, WeChatOutcome};

tokio::task_local! {
  static CALL: Call;
}

struct Call {
  telemetry: Arc<Telemetry>,
  started: Instant,
  /// `None` when nobody listens: nothing is collected or formatted.
  events: Option<RefCell<Vec<Event>>>,
}

/// What a call publishes on the `mpauthx:wechat`, `mpauthx:store` and `mpauthx:cache`
/// channels; times count from the start of the native call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
  /// One WeChat request: its path, how it ended, the HTTP status and errcode when there were.
  WeChat {
    endpoint: &'static str,
    outcome: WeChatOutcome,
    http_status: Option<u16>,
    errcode: Option<i64>,
    start: Duration,
    took: Duration,
  },
  /// One store round trip: the command (`GET`, `EVALSHA`, `pipeline`), the SQLite work or the
  /// `userStore` method; never a key or a value.
  Store {
    backend: Backend,
    operation: String,
    ok: bool,
    start: Duration,
    took: Duration,
  },
  /// A link found up or down (see `Telemetry::link`), published by the next observed call.
  LinkChanged {
    link: Link,
    up: bool,
    error: Option<&'static str>,
  },
  /// The validation cache was turned off for good.
  CacheOff,
}

/// Runs `work` as a call of `telemetry`'s instance: what it records is counted there, and
/// its events, the changes of state it found included, are returned when JavaScript listens.
pub async fn scope<F: Future>(
  telemetry: &Arc<Telemetry>, work: F,
) -> (F::Output, Option<Vec<Event>>) {
  let observed = telemetry.is_observed();
  let call = Call {
    telemetry: telemetry.clone(),
    started: Instant::now(),
    events: observed.then(|| RefCell::new(Vec::new())),
  };
  CALL
    .scope(call, async move {
      let output = work.await;
      let events = CALL.with(|call| Some(call.events.as_ref()?.take()));
      (output, events)
    })
    .await
}

/// Runs `record` on the call in progress; outside a call, nothing.
fn with_call(record: impl FnOnce(&Call)) {
  let _ = CALL.try_with(record);
}

impl Call {
  fn push(&self, event: impl FnOnce(Duration) -> Event) {
    if let Some(events) = &self.events {
      // Built before the borrow, so that building it may record too.
      let event = event(self.started.elapsed());
      events.borrow_mut().push(event);
    }
  }

  /// A change of state this call found, published with it.
  fn changed(&self, change: Option<Event>) {
    if let Some(change) = change {
      self.push(|_| change);
    }
  }
}

/// A WeChat request that began at `started` ended as `outcome`.
pub fn wechat_request(
  endpoint: &'static str, started: Instant, outcome: WeChatOutcome, http_status: Option<u16>,
  errcode: Option<i64>,
) {
  with_call(|call| {
    let took = started.elapsed();
    let change = call.telemetry.wechat(outcome, took);
    call.push(|now| Event::WeChat {
      endpoint,
      outcome,
      http_status,
      errcode,
      start: now.saturating_sub(took),
      took,
    });
    call.changed(change);
  });
}

/// A round trip to `backend` that began at `started` ended; `operation` names it, built only
/// when JavaScript listens.
pub fn store_round_trip(
  backend: Backend, started: Instant, ok: bool, operation: impl FnOnce() -> String,
) {
  with_call(|call| {
    call.telemetry.store(backend, ok);
    let took = started.elapsed();
    call.push(|now| Event::Store {
      backend,
      operation: operation(),
      ok,
      start: now.saturating_sub(took),
      took,
    });
  });
}

/// An operation on `backend` failed with no round trip to publish: a Redis reply that did not
/// come before the call's deadline, a SQLite file that did not open.
pub fn store_failure(backend: Backend) {
  with_call(|call| call.telemetry.store(backend, false));
}

/// An operation on `backend` runs again after a dead connection.
pub fn store_retry(backend: Backend) {
  with_call(|call| call.telemetry.retry(backend));
}

/// What an exchange with `link` showed: up (it answered) or down, and why.
pub fn link(link: Link, up: bool, error: Option<&'static str>) {
  with_call(|call| call.changed(call.telemetry.link(link, up, error)));
}

/// This caller fetches WeChat's app token.
pub fn access_token_fetch() {
  with_call(|call| call.telemetry.access_token_fetch());
}

/// This caller waits for another's fetch of the app token.
pub fn lock_wait() {
  with_call(|call| call.telemetry.lock_wait());
}

/// The validation cache was just turned off for good.
pub fn cache_off() {
  with_call(|call| call.changed(Some(Event::CacheOff)));
}

#[cfg(test)]
mod tests {
  use super::*;

  #[tokio::test]
  async fn events_are_collected_only_while_observed_and_counters_always() {
    let telemetry = Arc::new(Telemetry::new());
    let work = || async {
      store_round_trip(Backend::Redis, Instant::now(), true, || "GET".into());
      store_round_trip(Backend::Redis, Instant::now(), false, || {
        unreachable!("no name built while nobody listens")
      });
    };
    let ((), events) = scope(&telemetry, async {
      store_round_trip(Backend::Redis, Instant::now(), true, || {
        unreachable!("no name built while nobody listens")
      });
    })
    .await;
    assert_eq!(events, None);
    telemetry.set_observed(true);
    let ((), events) = scope(&telemetry, async {
      store_round_trip(Backend::Redis, Instant::now(), true, || "GET".into());
    })
    .await;
    let events = events.expect("observed");
    assert!(
      matches!(&events[..], [Event::Store { operation, ok: true, .. }] if operation == "GET")
    );
    assert_eq!(
      telemetry.snapshot().stores[0].1,
      2,
      "both round trips counted"
    );
    // Outside a call nothing is recorded.
    work().await;
    assert_eq!(telemetry.snapshot().stores[0].1, 2);
  }

  #[tokio::test]
  async fn a_change_of_state_goes_with_the_call_that_found_it() {
    let telemetry = Arc::new(Telemetry::new());
    telemetry.set_observed(true);
    let (_, first) = scope(&telemetry, async { link(Link::Redis, true, None) }).await;
    assert_eq!(first, Some(vec![]), "a first answer is no change");
    let (_, found) = scope(&telemetry, async {
      link(Link::Redis, false, Some("timeout"));
    })
    .await;
    assert_eq!(
      found,
      Some(vec![Event::LinkChanged {
        link: Link::Redis,
        up: false,
        error: Some("timeout")
      }])
    );
    let (_, later) = scope(&telemetry, async {}).await;
    assert_eq!(later, Some(vec![]), "not published again by a later call");
  }
}
