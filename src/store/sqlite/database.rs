//! The application's SQLite file: one connection per file in this process, opened on first
//! use in WAL mode with a busy timeout, and writes that arrive together committed together.
//!
//! The file is often open in the application too (node-sqlite3, better-sqlite3), so every
//! statement waits for the other writers rather than failing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::oneshot;

use super::locks;
use crate::error::{Error, Result};
use crate::store::opened::{lock, Opened};
use crate::telemetry::{call, Backend, Link};

/// Records a round trip to the file that began at `started`: the file is up unless SQLite
/// gave up waiting for another writer.
fn round_trip<T>(started: Instant, outcome: &Result<T>, operation: &'static str) {
  call::store_round_trip(Backend::Sqlite, started, outcome.is_ok(), || {
    operation.to_owned()
  });
  match outcome {
    Err(err) if err.is_busy() => call::link(Link::Sqlite, false, Some("busy")),
    Err(Error::Closed) => {}
    _ => call::link(Link::Sqlite, true, None),
  }
}

/// How long a statement waits for another writer (this process or another) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The file of one instance, shared by its token store and its user table; opened on first
/// use, off the JavaScript thread, and closed once.
#[derive(Clone)]
pub struct Database {
  path: PathBuf,
  file: Arc<Opened<Arc<OpenFile>>>,
}

/// A database file open in this process: its one connection, and the writes waiting to be
/// committed together.
struct OpenFile {
  connection: Mutex<Connection>,
  pending: Mutex<Vec<Box<dyn Write>>>,
}

/// Tables a store creates on first use: `create` runs before the first statement that needs
/// them, and again after a failed attempt.
#[derive(Clone)]
pub struct Schema {
  create: fn(&mut Connection) -> rusqlite::Result<()>,
  ready: Arc<AtomicBool>,
}

impl Schema {
  pub fn new(create: fn(&mut Connection) -> rusqlite::Result<()>) -> Self {
    Self {
      create,
      ready: Arc::new(AtomicBool::new(false)),
    }
  }
}

/// One connection per database file in this process, shared by every instance: the OFD
/// locks of [`locks`] belong to one open file, so a second connection of this SQLite copy
/// to the same file could leave a lock behind that only the first one could release.
static OPEN_FILES: LazyLock<Mutex<HashMap<PathBuf, Weak<OpenFile>>>> =
  LazyLock::new(Default::default);

impl Database {
  /// Names the file; it is opened on first use.
  pub fn new(path: PathBuf) -> Self {
    Self {
      path,
      file: Arc::new(Opened::new()),
    }
  }

  /// Runs `work` on the file's one connection, off the JavaScript thread.
  pub async fn run<T: Send + 'static>(
    &self, work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
  ) -> Result<T> {
    let started = Instant::now();
    let file = self.file().await?;
    let outcome = tokio::task::spawn_blocking(move || work(&mut lock(&file.connection)))
      .await
      .map_err(|_| task_failed())?;
    round_trip(started, &outcome, "statements");
    outcome
  }

  /// [`run`](Self::run), once the tables of `schema` exist.
  pub async fn run_in<T: Send + 'static>(
    &self, schema: &Schema, work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
  ) -> Result<T> {
    let Schema { create, ready } = schema.clone();
    self
      .run(move |db| {
        if !ready.load(Ordering::Acquire) {
          create(db)?;
          ready.store(true, Ordering::Release);
        }
        work(db)
      })
      .await
  }

  /// Runs `write` in a transaction shared with the writes of every caller waiting at the same
  /// time, so that they share one fsync (group commit); a lone write commits at once. When
  /// the shared transaction fails, each write runs again alone, so that one the table refuses
  /// fails alone; `write` must therefore be safe to run twice.
  pub async fn write_together<T: Send + 'static>(
    &self, write: impl Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
  ) -> Result<T> {
    let started = Instant::now();
    let file = self.file().await?;
    let (done, outcome) = oneshot::channel();
    let first = {
      let mut pending = lock(&file.pending);
      pending.push(Box::new(Pending {
        write,
        output: None,
        done,
      }));
      pending.len() == 1
    };
    // The first waiting write starts a commit; later ones join it until it runs.
    if first {
      tokio::task::spawn_blocking(move || file.commit_pending());
    }
    let outcome = outcome.await.map_err(|_| task_failed())?;
    round_trip(started, &outcome, "commit");
    outcome
  }

  /// Closes the file for this instance (the connection closes with its last instance);
  /// later calls fail with [`Error::Closed`].
  pub async fn close(&self) {
    let file = self.file.clone();
    // Closing may wait on an in-flight statement: not on the JavaScript thread.
    let _ = tokio::task::spawn_blocking(move || file.close()).await;
  }

  /// The open file, opened now if this is its first use.
  async fn file(&self) -> Result<Arc<OpenFile>> {
    if let Some(file) = self.file.current()? {
      return Ok(file);
    }
    let path = self.path.clone();
    // Concurrent first uses get the same file: one connection per file in this process.
    let file = tokio::task::spawn_blocking(move || OpenFile::shared(&path))
      .await
      .map_err(|_| task_failed())?;
    if file.is_err() {
      call::store_failure(Backend::Sqlite);
      call::link(Link::Sqlite, false, Some("unavailable"));
    }
    self.file.keep(file?)
  }

  #[cfg(test)]
  fn shares_connection_with(&self, other: &Database) -> bool {
    match (self.file.current(), other.file.current()) {
      (Ok(Some(one)), Ok(Some(other))) => Arc::ptr_eq(&one, &other),
      _ => false,
    }
  }
}

impl OpenFile {
  /// The file at `path`, opened now unless this process has it open already.
  fn shared(path: &Path) -> Result<Arc<OpenFile>> {
    let key = connection_key(path);
    let mut open_files = lock(&OPEN_FILES);
    if let Some(file) = open_files.get(&key).and_then(Weak::upgrade) {
      return Ok(file);
    }
    let connection =
      open(path).map_err(|err| Error::sqlite(format!("cannot open {}", path.display()), err))?;
    let file = Arc::new(OpenFile {
      connection: Mutex::new(connection),
      pending: Mutex::new(Vec::new()),
    });
    open_files.retain(|_, weak| weak.strong_count() > 0);
    open_files.insert(key, Arc::downgrade(&file));
    Ok(file)
  }

  /// Commits every waiting write in one transaction; see [`Database::write_together`].
  fn commit_pending(&self) {
    let mut connection = lock(&self.connection);
    let mut batch = std::mem::take(&mut *lock(&self.pending));
    if batch.is_empty() {
      return;
    }
    let outcomes: Vec<Result<()>> = match write_all(&mut connection, &mut batch) {
      Ok(()) => batch.iter().map(|_| Ok(())).collect(),
      Err(err) if err.is_busy() => batch.iter().map(|_| Err(err.clone())).collect(),
      Err(_) => batch
        .iter_mut()
        .map(|write| {
          let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
          write.apply(&transaction)?;
          transaction.commit()?;
          Ok(())
        })
        .collect(),
    };
    for (write, outcome) in batch.into_iter().zip(outcomes) {
      write.finish(outcome);
    }
  }
}

fn write_all(db: &mut Connection, batch: &mut [Box<dyn Write>]) -> Result<()> {
  let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
  for write in batch {
    write.apply(&transaction)?;
  }
  Ok(transaction.commit()?)
}

/// A write waiting for the next group commit, whatever it returns.
trait Write: Send {
  /// Runs the write inside the current transaction, keeping what it returns.
  fn apply(&mut self, db: &Connection) -> rusqlite::Result<()>;
  /// Hands the caller what the write returned once its transaction is committed, or why not.
  fn finish(self: Box<Self>, outcome: Result<()>);
}

struct Pending<T, F> {
  write: F,
  output: Option<T>,
  done: oneshot::Sender<Result<T>>,
}

impl<T: Send, F: Fn(&Connection) -> rusqlite::Result<T> + Send> Write for Pending<T, F> {
  fn apply(&mut self, db: &Connection) -> rusqlite::Result<()> {
    self.output = Some((self.write)(db)?);
    Ok(())
  }

  fn finish(self: Box<Self>, outcome: Result<()>) {
    let Pending { output, done, .. } = *self;
    let _ = done.send(outcome.and_then(|()| output.ok_or_else(task_failed)));
  }
}

/// The same file reached by different paths gets the same key.
fn connection_key(path: &Path) -> PathBuf {
  if let Ok(canonical) = path.canonicalize() {
    return canonical;
  }
  match (path.parent().map(Path::canonicalize), path.file_name()) {
    (Some(Ok(dir)), Some(name)) => dir.join(name),
    _ => path.to_path_buf(),
  }
}

fn task_failed() -> Error {
  Error::Store {
    public: "the SQLite database is unavailable",
    why: "SQLite task failed".into(),
  }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
  locks::install();
  let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
    | OpenFlags::SQLITE_OPEN_CREATE
    | OpenFlags::SQLITE_OPEN_NO_MUTEX
    | OpenFlags::SQLITE_OPEN_URI;
  let db = Connection::open_with_flags(path, flags)?;
  db.busy_timeout(BUSY_TIMEOUT)?;
  switch_to_wal(&db)?;
  Ok(db)
}

/// Switching to WAL upgrades a read lock to an exclusive one, which SQLite refuses at once,
/// without its busy handler, while another connection is writing: retry until the timeout.
fn switch_to_wal(db: &Connection) -> rusqlite::Result<()> {
  let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
  loop {
    match db.query_row("PRAGMA journal_mode=WAL", [], |row| row.get::<_, String>(0)) {
      Err(rusqlite::Error::SqliteFailure(err, _))
        if err.code == rusqlite::ErrorCode::DatabaseBusy
          && std::time::Instant::now() < deadline =>
      {
        std::thread::sleep(Duration::from_millis(10));
      }
      result => return result.map(drop),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[tokio::test]
  async fn a_missing_directory_is_a_store_error() {
    let database = Database::new("/nonexistent-dir-mpauthx/users.db".into());
    let err = database.run(|_| Ok(())).await.unwrap_err();
    assert_eq!(err.status_code(), 6000);
    assert!(err.to_string().contains("cannot open"), "{err}");
  }

  #[tokio::test]
  async fn databases_of_one_file_share_a_connection_and_close_independently() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let first = Database::new(dir.path().join("users.db"));
    let second = Database::new(dir.path().join(".").join("users.db"));
    first.run(|_| Ok(())).await?;
    second.run(|_| Ok(())).await?;
    assert!(first.shares_connection_with(&second));
    first.close().await;
    second.run(|_| Ok(())).await?;
    Ok(())
  }

  #[tokio::test]
  async fn calls_after_close_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::new(dir.path().join("users.db"));
    database.close().await;
    assert!(matches!(
      database.run(|_| Ok(())).await.unwrap_err(),
      Error::Closed
    ));
  }
}
