//! What both backends open on first use and close once: the Redis connection and the SQLite
//! file.

use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// A resource opened on first use, shared by clones, and closed once: after [`Opened::close`],
/// every use fails with [`Error::Closed`].
pub struct Opened<T: Clone> {
  state: Mutex<State<T>>,
}

enum State<T> {
  NotYetOpened,
  Open(T),
  Closed,
}

impl<T: Clone> Opened<T> {
  pub fn new() -> Self {
    Self {
      state: Mutex::new(State::NotYetOpened),
    }
  }

  /// The resource when it is open, `None` before its first use.
  pub fn current(&self) -> Result<Option<T>> {
    match &*lock(&self.state) {
      State::Open(resource) => Ok(Some(resource.clone())),
      State::NotYetOpened => Ok(None),
      State::Closed => Err(Error::Closed),
    }
  }

  /// Keeps `opened` as the resource, unless a concurrent first use kept another first (which
  /// is returned instead) or the resource was closed meanwhile.
  pub fn keep(&self, opened: T) -> Result<T> {
    let mut state = lock(&self.state);
    match &*state {
      State::Open(existing) => Ok(existing.clone()),
      State::Closed => Err(Error::Closed),
      State::NotYetOpened => {
        *state = State::Open(opened.clone());
        Ok(opened)
      }
    }
  }

  /// Drops an open resource so that the next use opens it again; says whether there was one.
  pub fn reopen_on_next_use(&self) -> bool {
    let mut state = lock(&self.state);
    let open = matches!(*state, State::Open(_));
    if open {
      *state = State::NotYetOpened;
    }
    open
  }

  /// Drops the resource; later uses fail with [`Error::Closed`].
  pub fn close(&self) {
    *lock(&self.state) = State::Closed;
  }
}

/// Locks `mutex` even when a thread panicked while holding it: the state it guards is never
/// left half-written (a statement or a store that panicked leaves the connection sound).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex.lock().unwrap_or_else(|e| e.into_inner())
}
