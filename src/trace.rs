//! Opt-in diagnostics: the steps of one call with their timings, reported to JavaScript
//! with the call's outcome. Details name what happened, never a secret, token or user id.

use std::time::{Duration, Instant};

/// One step of a call, `elapsed` counted from the start of the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
  pub name: &'static str,
  pub elapsed: Duration,
  pub detail: String,
}

/// The steps of one call; a disabled trace records nothing and builds no detail strings.
#[derive(Debug)]
pub struct Trace {
  start: Instant,
  steps: Option<Vec<Step>>,
}

impl Trace {
  pub fn new(enabled: bool) -> Self {
    Self {
      start: Instant::now(),
      steps: enabled.then(Vec::new),
    }
  }

  /// A trace that records nothing.
  pub fn disabled() -> Self {
    Self::new(false)
  }

  /// Whether steps are recorded (diagnostics are on).
  pub fn is_enabled(&self) -> bool {
    self.steps.is_some()
  }

  pub fn record(&mut self, name: &'static str, detail: impl FnOnce() -> String) {
    if let Some(steps) = &mut self.steps {
      steps.push(Step {
        name,
        elapsed: self.start.elapsed(),
        detail: detail(),
      });
    }
  }

  /// The recorded steps; `None` when the trace was disabled.
  pub fn into_steps(self) -> Option<Vec<Step>> {
    self.steps
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_disabled_trace_never_builds_details() {
    let mut trace = Trace::disabled();
    trace.record("step", || unreachable!("detail built for a disabled trace"));
    assert_eq!(trace.into_steps(), None);
  }

  #[test]
  fn an_enabled_trace_keeps_steps_in_order_with_growing_times() {
    let mut trace = Trace::new(true);
    trace.record("first", || "a".into());
    trace.record("second", || "b".into());
    let steps = trace.into_steps().expect("enabled");
    assert_eq!(
      steps
        .iter()
        .map(|s| (s.name, s.detail.as_str()))
        .collect::<Vec<_>>(),
      [("first", "a"), ("second", "b")]
    );
    assert!(steps[0].elapsed <= steps[1].elapsed);
  }
}
