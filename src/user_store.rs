//! Registered users in the application's SQLite `user` table (the schema of mpauthx 1.3.2).
//!
//! The file is often open in the application too (node-sqlite3, better-sqlite3), so it is
//! used in WAL mode with a busy timeout, and every statement binds its parameters and
//! matches user ids exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use crate::crypto::{ProfileValue, PROFILE_FIELDS};
use crate::error::{Error, Result};

/// How long a statement waits for another writer (this process or another) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The table mpauthx 1.3.2's README asks for, created when the file has no `user` table.
const CREATE_USER_TABLE: &str =
  "CREATE TABLE IF NOT EXISTS user(openId text primary key not null, \
     city text, country text, gender integer, language text, nickName text, province text)";

/// A database file open in this process: its one connection, and the registrations waiting
/// to be committed together.
struct Database {
  connection: Mutex<Connection>,
  /// The profile fields the `user` table has columns for, read when the file is opened.
  profile_columns: Vec<&'static str>,
  pending: Mutex<Vec<Registration>>,
}

/// A user to add, and where to say whether it was added.
struct Registration {
  user_id: String,
  profile: Vec<(&'static str, ProfileValue)>,
  done: oneshot::Sender<Result<Registered>>,
}

/// What registering a user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
  /// Whether the row was added (else it was there).
  pub added: bool,
  /// Why the table refused the profile values (a CHECK, a trigger, a STRICT column's type),
  /// when it did: the user is registered without them, and the login goes on.
  pub profile_refused: Option<String>,
}

enum Handle {
  NotYetOpened,
  Open(Arc<Database>),
  Closed,
}

/// One connection per database file in this process, shared by every instance: the OFD
/// locks of `sqlite_locks` belong to one open file, so a second connection of this SQLite
/// copy to the same file could leave a lock behind that only the first one could release.
static DATABASES: LazyLock<Mutex<HashMap<PathBuf, Weak<Database>>>> =
  LazyLock::new(Default::default);

fn shared_database(path: &Path) -> Result<Arc<Database>> {
  let key = connection_key(path);
  let mut databases = lock(&DATABASES);
  if let Some(database) = databases.get(&key).and_then(Weak::upgrade) {
    return Ok(database);
  }
  let connection = open(path)?;
  let profile_columns = profile_columns(&connection)
    .map_err(|err| Error::Store(format!("SQLite: cannot read the user table: {err}")))?;
  let database = Arc::new(Database {
    connection: Mutex::new(connection),
    profile_columns,
    pending: Mutex::new(Vec::new()),
  });
  databases.retain(|_, weak| weak.strong_count() > 0);
  databases.insert(key, Arc::downgrade(&database));
  Ok(database)
}

/// A poisoned lock only means a statement panicked; the connection itself is still sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Database {
  /// Adds the user when missing and writes the profile fields the table has columns for; a
  /// profile the table refuses is left out (rolled back to before it), not the user.
  fn register(&self, db: &Connection, registration: &Registration) -> rusqlite::Result<Registered> {
    let added = insert(db, &registration.user_id)?;
    let fields: Vec<&(&str, ProfileValue)> = registration
      .profile
      .iter()
      .filter(|(field, _)| self.profile_columns.contains(field))
      .collect();
    if fields.is_empty() {
      return Ok(Registered {
        added,
        profile_refused: None,
      });
    }
    // Only rows whose profile changed are written: a returning user costs no write.
    let assignments: Vec<String> = fields.iter().map(|(f, _)| format!("\"{f}\" = ?")).collect();
    let changes: Vec<String> = fields
      .iter()
      .map(|(f, _)| format!("\"{f}\" IS NOT ?"))
      .collect();
    let sql = format!(
      "UPDATE user SET {} WHERE openId = ? AND ({})",
      assignments.join(", "),
      changes.join(" OR ")
    );
    let values = fields.iter().map(|(_, value)| sql_value(value));
    let params: Vec<rusqlite::types::Value> = values
      .clone()
      .chain([rusqlite::types::Value::Text(registration.user_id.clone())])
      .chain(values)
      .collect();
    db.execute_batch("SAVEPOINT profile")?;
    let written = db
      .prepare_cached(&sql)
      .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(params)));
    match written {
      Ok(_) => {
        db.execute_batch("RELEASE profile")?;
        Ok(Registered {
          added,
          profile_refused: None,
        })
      }
      Err(err) if err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
        db.execute_batch("ROLLBACK TO profile; RELEASE profile")?;
        Ok(Registered {
          added,
          profile_refused: Some(err.to_string()),
        })
      }
      Err(err) => {
        let _ = db.execute_batch("ROLLBACK TO profile; RELEASE profile");
        Err(err)
      }
    }
  }

  fn register_all(
    &self,
    db: &mut Connection,
    batch: &[Registration],
  ) -> rusqlite::Result<Vec<Registered>> {
    let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let added = batch
      .iter()
      .map(|registration| self.register(&transaction, registration))
      .collect::<rusqlite::Result<_>>()?;
    transaction.commit()?;
    Ok(added)
  }

  /// Commits every waiting registration in one transaction, so concurrent logins of new
  /// users share one fsync (group commit); a lone registration commits at once.
  fn commit_pending(&self) {
    let mut connection = lock(&self.connection);
    let batch = std::mem::take(&mut *lock(&self.pending));
    if batch.is_empty() {
      return;
    }
    let outcomes: Vec<Result<Registered>> = match self.register_all(&mut connection, &batch) {
      Ok(registered) => registered.into_iter().map(Ok).collect(),
      Err(err) if is_busy(&err) => {
        let err = Error::from(err);
        batch.iter().map(|_| Err(err.clone())).collect()
      }
      // A row the table refuses (a trigger, a constraint) must not fail the others: each
      // alone, in its own transaction, so a refused one leaves nothing behind.
      Err(_) => batch
        .iter()
        .map(|registration| {
          let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
          let registered = self.register(&transaction, registration)?;
          transaction.commit()?;
          Ok(registered)
        })
        .collect(),
    };
    for (registration, outcome) in batch.into_iter().zip(outcomes) {
      let _ = registration.done.send(outcome);
    }
  }
}

/// Adds the user unless a row with this exact `openId` exists, and says whether it did;
/// safe under concurrency and whether or not the table declares `openId` a primary key.
fn insert(db: &Connection, user_id: &str) -> rusqlite::Result<bool> {
  const INSERT: &str = "INSERT INTO user(openId) \
    SELECT ?1 WHERE NOT EXISTS (SELECT 1 FROM user WHERE openId = ?1)";
  Ok(db.prepare_cached(INSERT)?.execute([user_id])? == 1)
}

fn sql_value(value: &ProfileValue) -> rusqlite::types::Value {
  match value {
    ProfileValue::Text(text) => rusqlite::types::Value::Text(text.clone()),
    ProfileValue::Integer(number) => rusqlite::types::Value::Integer(*number),
  }
}

/// The profile fields the `user` table has columns for (SQLite matches names in any case).
fn profile_columns(db: &Connection) -> rusqlite::Result<Vec<&'static str>> {
  let mut statement = db.prepare("SELECT name FROM pragma_table_info('user')")?;
  let columns: Vec<String> = statement
    .query_map([], |row| row.get::<_, String>(0))?
    .collect::<rusqlite::Result<_>>()?;
  Ok(
    PROFILE_FIELDS
      .into_iter()
      .filter(|field| {
        columns
          .iter()
          .any(|column| column.eq_ignore_ascii_case(field))
      })
      .collect(),
  )
}

fn is_busy(err: &rusqlite::Error) -> bool {
  matches!(
    err.sqlite_error_code(),
    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
  )
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

#[derive(Clone)]
pub struct UserStore {
  path: PathBuf,
  handle: Arc<Mutex<Handle>>,
}

impl UserStore {
  /// Prepares the store; the file is opened on first use, off the JavaScript thread.
  pub fn new(path: PathBuf) -> Self {
    Self {
      path,
      handle: Arc::new(Mutex::new(Handle::NotYetOpened)),
    }
  }

  /// Adds the user unless a row with this exact `openId` exists, and says whether it did;
  /// writes the profile fields the table has columns for. Registrations made at the same
  /// time are committed together.
  pub async fn ensure(
    &self,
    user_id: &str,
    profile: &[(&'static str, ProfileValue)],
  ) -> Result<Registered> {
    let database = self.database().await?;
    let (done, outcome) = oneshot::channel();
    let first = {
      let mut pending = lock(&database.pending);
      pending.push(Registration {
        user_id: user_id.to_owned(),
        profile: profile.to_vec(),
        done,
      });
      pending.len() == 1
    };
    // The first waiting registration starts a commit; later ones join it until it runs.
    if first {
      tokio::task::spawn_blocking(move || database.commit_pending());
    }
    outcome.await.map_err(|_| task_failed())?
  }

  /// Opens the file now if it is not open yet, so that a file that cannot be used (a missing
  /// directory, no permission, not a database) is found before a login spends the user's
  /// one-time code.
  pub async fn ready(&self) -> Result<()> {
    self.database().await.map(|_| ())
  }

  /// Whether the `user` table holds exactly this `openId`.
  pub async fn exists(&self, user_id: &str) -> Result<bool> {
    let user_id = user_id.to_owned();
    self
      .run(move |db| {
        let found = db
          .prepare_cached("SELECT 1 FROM user WHERE openId = ?1 LIMIT 1")?
          .query_row([&user_id], |_| Ok(()))
          .optional()?;
        Ok(found.is_some())
      })
      .await
  }

  /// Closes the file; later calls fail with [`Error::Closed`].
  pub async fn close(&self) {
    let handle = self.handle.clone();
    // Closing may wait on an in-flight statement: not on the JavaScript thread.
    let _ = tokio::task::spawn_blocking(move || {
      *lock(&handle) = Handle::Closed;
    })
    .await;
  }

  /// This store's database, opened on first use (off the JavaScript thread).
  async fn database(&self) -> Result<Arc<Database>> {
    match &*lock(&self.handle) {
      Handle::Open(database) => return Ok(database.clone()),
      Handle::Closed => return Err(Error::Closed),
      Handle::NotYetOpened => {}
    }
    let handle = self.handle.clone();
    let path = self.path.clone();
    tokio::task::spawn_blocking(move || {
      let mut handle = lock(&handle);
      match &*handle {
        Handle::Open(database) => Ok(database.clone()),
        Handle::Closed => Err(Error::Closed),
        Handle::NotYetOpened => {
          let database = shared_database(&path)?;
          *handle = Handle::Open(database.clone());
          Ok(database)
        }
      }
    })
    .await
    .map_err(|_| task_failed())?
  }

  /// Runs `work` on the file's one connection, off the JavaScript thread.
  pub(crate) async fn run<T: Send + 'static>(
    &self,
    work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
  ) -> Result<T> {
    let database = self.database().await?;
    tokio::task::spawn_blocking(move || work(&lock(&database.connection)))
      .await
      .map_err(|_| task_failed())?
  }
}

fn task_failed() -> Error {
  Error::Store("SQLite task failed".into())
}

fn open(path: &Path) -> Result<Connection> {
  prepare(path)
    .map_err(|err| Error::Store(format!("SQLite: cannot open {}: {err}", path.display())))
}

fn prepare(path: &Path) -> rusqlite::Result<Connection> {
  crate::sqlite_locks::install();
  let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
    | OpenFlags::SQLITE_OPEN_CREATE
    | OpenFlags::SQLITE_OPEN_NO_MUTEX
    | OpenFlags::SQLITE_OPEN_URI;
  let db = Connection::open_with_flags(path, flags)?;
  db.busy_timeout(BUSY_TIMEOUT)?;
  switch_to_wal(&db)?;
  let has_user_table: bool = db.query_row(
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'user')",
    [],
    |row| row.get(0),
  )?;
  if !has_user_table {
    db.execute(CREATE_USER_TABLE, [])?;
  }
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

  fn count(path: &std::path::Path, user_id: &str) -> i64 {
    Connection::open(path)
      .unwrap()
      .query_row(
        "SELECT count(*) FROM user WHERE openId = ?1",
        [user_id],
        |row| row.get(0),
      )
      .unwrap()
  }

  #[tokio::test]
  async fn registers_each_user_once_and_finds_exact_matches_only() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let users = UserStore::new(path.clone());
    users.ensure("o_1%", &[]).await?;
    users.ensure("o_1%", &[]).await?;
    assert_eq!(count(&path, "o_1%"), 1);
    assert!(users.exists("o_1%").await?);
    assert!(!users.exists("o%").await?);
    assert!(!users.exists("o_1_").await?);
    assert!(!users.exists("' OR '1'='1").await?);
    Ok(())
  }

  #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
  async fn concurrent_registrations_each_get_their_own_answer() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let users = UserStore::new(path.clone());
    users.ensure("u0", &[]).await?;
    // u0 exists already; every other id is registered twice at once, so exactly one of
    // each pair adds the row.
    let ids: Vec<String> = (0..200).map(|i| format!("u{}", i / 2)).collect();
    let calls = ids.iter().map(|id| {
      let users = users.clone();
      let id = id.clone();
      tokio::spawn(async move { users.ensure(&id, &[]).await })
    });
    let mut added = std::collections::HashMap::<String, usize>::new();
    for (id, call) in ids.iter().zip(calls.collect::<Vec<_>>()) {
      if call.await.expect("task")?.added {
        *added.entry(id.clone()).or_default() += 1;
      }
    }
    assert!(!added.contains_key("u0"));
    assert_eq!(added.len(), 99);
    assert!(added.values().all(|&count| count == 1));
    for i in 0..100 {
      assert_eq!(count(&path, &format!("u{i}")), 1);
    }
    Ok(())
  }

  #[tokio::test]
  async fn a_row_the_table_refuses_fails_alone() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    Connection::open(&path)
      .unwrap()
      .execute_batch(
        "CREATE TABLE user(openId text primary key not null);
         CREATE TRIGGER refuse BEFORE INSERT ON user WHEN NEW.openId = 'banned'
         BEGIN SELECT RAISE(ABORT, 'banned user'); END;",
      )
      .unwrap();
    let users = UserStore::new(path.clone());
    let (banned, fine) = tokio::join!(users.ensure("banned", &[]), users.ensure("fine", &[]));
    assert_eq!(banned.unwrap_err().status_code(), 6000);
    assert!(fine?.added);
    assert_eq!(count(&path, "fine"), 1);
    Ok(())
  }

  #[tokio::test]
  async fn works_with_a_table_that_has_only_open_id_and_no_key() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    Connection::open(&path)
      .unwrap()
      .execute("CREATE TABLE user(openId text)", [])
      .unwrap();
    let users = UserStore::new(path.clone());
    users.ensure("a", &[]).await?;
    users.ensure("a", &[]).await?;
    assert_eq!(count(&path, "a"), 1);
    Ok(())
  }

  #[tokio::test]
  async fn a_missing_directory_is_a_store_error() {
    let users = UserStore::new("/nonexistent-dir-mpauthx/users.db".into());
    let err = users.exists("a").await.unwrap_err();
    assert_eq!(err.status_code(), 6000);
    assert!(err.to_string().contains("cannot open"), "{err}");
  }

  #[tokio::test]
  async fn stores_of_one_file_share_a_connection_and_close_independently() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let first = UserStore::new(dir.path().join("users.db"));
    let second = UserStore::new(dir.path().join(".").join("users.db"));
    first.ensure("a", &[]).await?;
    assert!(second.exists("a").await?);
    let shared = |store: &UserStore| match &*store.handle.lock().unwrap() {
      Handle::Open(database) => Some(database.clone()),
      _ => None,
    };
    assert!(Arc::ptr_eq(
      &shared(&first).unwrap(),
      &shared(&second).unwrap()
    ));
    first.close().await;
    assert!(second.exists("a").await?);
    Ok(())
  }

  #[tokio::test]
  async fn calls_after_close_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let users = UserStore::new(dir.path().join("users.db"));
    users.close().await;
    assert_eq!(users.exists("a").await.unwrap_err(), Error::Closed);
  }
}
