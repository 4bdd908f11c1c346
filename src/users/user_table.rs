//! Registered users in the application's SQLite `user` table (the schema of mpauthx 1.3.2,
//! whose `openId` column holds the user id: the openId, or the unionId when WeChat gives one).
//! Every statement binds its parameters and matches user ids exactly.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::OnceCell;

use super::Registered;
use crate::config::ProfileWrites;
use crate::crypto::{is_placeholder, ProfileValue, PROFILE_FIELDS};
use crate::error::{Error, Result};
use crate::store::sqlite::{schema, Database};

/// The `user` table of one instance's file.
#[derive(Clone)]
pub struct UserTable {
  database: Database,
  /// What a login writes of the profile (`options.profileWrites`).
  writes: ProfileWrites,
  /// The profile fields the table has columns for, read on first use (which creates the
  /// table when the file has none).
  profile_columns: Arc<OnceCell<Arc<Vec<&'static str>>>>,
}

impl UserTable {
  pub fn new(database: Database, writes: ProfileWrites) -> Self {
    Self {
      database,
      writes,
      profile_columns: Arc::default(),
    }
  }

  /// Opens the file and finds the table now if not done yet, so that a file that cannot be
  /// used (a missing directory, no permission, not a database) is found before a login
  /// spends the user's one-time code.
  pub async fn ready(&self) -> Result<()> {
    self.profile_columns().await.map(drop)
  }

  /// Adds the user unless a row with this exact `openId` exists, and says whether it did;
  /// writes the profile fields the table has columns for, as `options.profileWrites` says.
  /// Registrations made at the same time are committed together.
  pub async fn ensure(
    &self, user_id: &str, profile: &[(&'static str, ProfileValue)],
  ) -> Result<Registered> {
    let columns = self.profile_columns().await?;
    let user_id = user_id.to_owned();
    let profile: Vec<(&'static str, ProfileValue)> = profile
      .iter()
      .filter(|(field, _)| columns.contains(field))
      .cloned()
      .collect();
    let writes = self.writes;
    self
      .database
      .write_together(move |db| register(db, &user_id, &profile, writes))
      .await
  }

  /// Whether the `user` table holds exactly this `openId`.
  pub async fn exists(&self, user_id: &str) -> Result<bool> {
    self.ready().await?;
    let user_id = user_id.to_owned();
    self
      .database
      .run(move |db| {
        let found = db
          .prepare_cached("SELECT 1 FROM user WHERE openId = ?1 LIMIT 1")?
          .query_row([&user_id], |_| Ok(()))
          .optional()?;
        Ok(found.is_some())
      })
      .await
  }

  async fn profile_columns(&self) -> Result<Arc<Vec<&'static str>>> {
    let database = &self.database;
    self
      .profile_columns
      .get_or_try_init(|| async {
        database
          .run(|db| {
            schema::create_user_table(db)?;
            let columns = profile_columns(db)
              .map_err(|err| Error::sqlite("cannot read the user table", err))?;
            Ok(Arc::new(columns))
          })
          .await
      })
      .await
      .cloned()
  }
}

/// How a login writes one profile field into the row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
  /// Over whatever the row holds.
  Over,
  /// Only where the column is empty (NULL).
  IntoEmpty,
}

/// How each field is written: a row just created takes the whole profile; a returning user's
/// row takes real values only (placeholders never), over its values with `'always'`, into its
/// empty columns with `'insert'`, and nothing with `'never'`.
fn writes_for<'a>(
  fields: &'a [(&'static str, ProfileValue)], added: bool, writes: ProfileWrites,
) -> Vec<(&'static str, &'a ProfileValue, Write)> {
  let returning = match writes {
    ProfileWrites::Never => return Vec::new(),
    _ if added => Write::Over,
    ProfileWrites::Always => Write::Over,
    ProfileWrites::Insert => Write::IntoEmpty,
  };
  fields
    .iter()
    .filter(|(field, value)| added || !is_placeholder(field, value))
    .map(|(field, value)| (*field, value, returning))
    .collect()
}

/// Adds the user when missing and writes the profile fields as `writes` says; a profile the
/// table refuses is left out (rolled back to before it), not the user.
fn register(
  db: &Connection, user_id: &str, fields: &[(&'static str, ProfileValue)], writes: ProfileWrites,
) -> rusqlite::Result<Registered> {
  let added = insert(db, user_id)?;
  let fields = writes_for(fields, added, writes);
  if fields.is_empty() {
    return Ok(Registered::without_refusal(added));
  }
  // Only rows where a write changes something are written: a returning user costs no write.
  // Each field's assignment, and the condition under which it changes the row.
  let (assignments, changes): (Vec<String>, Vec<String>) = fields
    .iter()
    .map(|(f, _, write)| match write {
      Write::Over => (format!("\"{f}\" = ?"), format!("\"{f}\" IS NOT ?")),
      Write::IntoEmpty => (
        format!("\"{f}\" = coalesce(\"{f}\", ?)"),
        format!("\"{f}\" IS NULL"),
      ),
    })
    .unzip();
  let sql = format!(
    "UPDATE user SET {} WHERE openId = ? AND ({})",
    assignments.join(", "),
    changes.join(" OR ")
  );
  let compared = fields
    .iter()
    .filter(|(_, _, write)| *write == Write::Over)
    .map(|(_, value, _)| sql_value(value));
  let params: Vec<rusqlite::types::Value> = fields
    .iter()
    .map(|(_, value, _)| sql_value(value))
    .chain([rusqlite::types::Value::Text(user_id.to_owned())])
    .chain(compared)
    .collect();
  db.execute_batch("SAVEPOINT profile")?;
  let written = db
    .prepare_cached(&sql)
    .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(params)));
  match written {
    Ok(_) => {
      db.execute_batch("RELEASE profile")?;
      Ok(Registered::without_refusal(added))
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

#[cfg(test)]
mod tests {
  use super::*;

  /// A new database file, with the tables `schema` creates when given, and its users.
  fn users_in(schema: Option<&str>) -> (tempfile::TempDir, std::path::PathBuf, UserTable) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    if let Some(schema) = schema {
      Connection::open(&path)
        .unwrap()
        .execute_batch(schema)
        .unwrap();
    }
    let users = UserTable::new(Database::new(path.clone()), ProfileWrites::Insert);
    (dir, path, users)
  }

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
    let (_dir, path, users) = users_in(None);
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
    let (_dir, path, users) = users_in(None);
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
    let (_dir, path, users) = users_in(Some(
      "CREATE TABLE user(openId text primary key not null);
       CREATE TRIGGER refuse BEFORE INSERT ON user WHEN NEW.openId = 'banned'
       BEGIN SELECT RAISE(ABORT, 'banned user'); END;",
    ));
    let (banned, fine) = tokio::join!(users.ensure("banned", &[]), users.ensure("fine", &[]));
    assert_eq!(banned.unwrap_err().status_code(), 6000);
    assert!(fine?.added);
    assert_eq!(count(&path, "fine"), 1);
    Ok(())
  }

  #[tokio::test]
  async fn a_returning_login_writes_as_profile_writes_says() -> Result<()> {
    let text = |value: &str| ProfileValue::Text(value.into());
    let first = [("nickName", text("Ann")), ("city", text("Hangzhou"))];
    let later = [
      ("nickName", text("Anna")),
      ("city", text("")),
      ("country", text("CN")),
    ];
    let placeholders = [
      ("nickName", text("微信用户")),
      ("gender", ProfileValue::Integer(0)),
    ];
    for (writes, after_later) in [
      (ProfileWrites::Insert, "Ann|Hangzhou|CN|"),
      (ProfileWrites::Always, "Anna|Hangzhou|CN|"),
      (ProfileWrites::Never, "|||"),
    ] {
      let dir = tempfile::tempdir().unwrap();
      let path = dir.path().join("users.db");
      let users = UserTable::new(Database::new(path.clone()), writes);
      let row = || -> String {
        Connection::open(&path)
          .unwrap()
          .query_row(
            "SELECT coalesce(nickName, '') || '|' || coalesce(city, '') || '|' || \
             coalesce(country, '') || '|' || coalesce(gender, '') FROM user",
            [],
            |row| row.get(0),
          )
          .unwrap()
      };
      assert!(users.ensure("u", &first).await?.added);
      assert!(!users.ensure("u", &later).await?.added);
      assert_eq!(row(), after_later, "{writes:?}");
      users.ensure("u", &placeholders).await?;
      assert_eq!(row(), after_later, "{writes:?}: placeholders never land");
    }
    Ok(())
  }

  #[tokio::test]
  async fn works_with_a_table_that_has_only_open_id_and_no_key() -> Result<()> {
    let (_dir, path, users) = users_in(Some("CREATE TABLE user(openId text)"));
    users.ensure("a", &[]).await?;
    users.ensure("a", &[]).await?;
    assert_eq!(count(&path, "a"), 1);
    Ok(())
  }
}
