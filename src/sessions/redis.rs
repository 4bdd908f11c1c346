//! Sessions in Redis, laid out as mpauthx 1.3.2 kept them, plus an index for O(1) look-ups
//! (see `store::redis::keys`): issuing, reusing, checking, sliding and revoking tokens.
//!
//! The index is only ever replaced by compare-and-set, and a token that loses a race is
//! deleted before anyone sees it. Checks read through the validation cache's tracking
//! connection when there is one, and drop from it what this instance changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{AsyncCommands, Value};

use super::{Issue, TokenInfo};
use crate::config::DEFAULT_REVOKE_USER_SCAN_MS;
use crate::error::{Error, Result};
use crate::store::redis::keys::{self, CTIME_FIELD};
use crate::store::redis::{per_key, scripts, Redis, RedisConnection, Scan};
use crate::token;
use crate::validation_cache::{read_untracked, Tracking};

/// How many times `revokeUser` deletes the token an index names and then the index, when the
/// index named another token by then (a concurrent refresh or login), before it gives up.
const MAX_REVOKE_ROUNDS: usize = 5;

/// How often a caller retries after losing a compare-and-set to a concurrent caller.
/// Each loss means another caller succeeded, so a few rounds always settle.
const MAX_ATTEMPTS: usize = 8;

/// The sessions in Redis, with the validation cache when there is one.
pub struct RedisSessions {
  redis: Arc<Redis>,
  tracking: Option<Arc<Tracking>>,
  ttl: Duration,
  /// How long the record of a registered user lives after its latest token was issued or
  /// slid; never less than `ttl`.
  registration_ttl: Duration,
  /// The instance's sku: the tokens it issues and looks up.
  sku: String,
  /// `slidingTtl`: checks give this sku's tokens, in the second half of their TTL, the whole
  /// TTL back; other skus' tokens keep the TTL their own instances gave them.
  sliding: bool,
  /// How long `revokeUser`'s pass over the keyspace may take (`revokeUserScanMs`).
  revoke_user_scan: Duration,
}

impl RedisSessions {
  /// Sessions over `redis`, checked through `tracking`'s cache when given. Tokens live `ttl`,
  /// the record of a registered user `registration_ttl` after its latest token; with
  /// `sliding`, checks extend `sku`'s tokens in the second half of their TTL.
  pub fn new(
    redis: Arc<Redis>, tracking: Option<Arc<Tracking>>,
    (ttl, registration_ttl): (Duration, Duration), sku: String, sliding: bool,
  ) -> Self {
    Self {
      redis,
      tracking,
      ttl,
      registration_ttl: registration_ttl.max(ttl),
      sku,
      sliding,
      revoke_user_scan: Duration::from_millis(DEFAULT_REVOKE_USER_SCAN_MS as u64),
    }
  }

  /// Bounds `revokeUser`'s pass over the keyspace by `budget` in all (each `SCAN` step by
  /// the call deadline); 10 s unless set.
  pub fn with_revoke_user_scan(mut self, budget: Duration) -> Self {
    self.revoke_user_scan = budget;
    self
  }

  /// Whether Redis answers (`PING`), with the password and TLS settings given.
  pub async fn ready(&self) -> Result<()> {
    self.redis.ping().await
  }

  /// For each token, whether it is live; all are checked in one pipelined round trip
  /// (on a cluster, in one round trip per node).
  /// With `slidingTtl`, the live tokens in the second half of their TTL get it whole back.
  pub async fn are_live(&self, tokens: &[&str]) -> Result<Vec<bool>> {
    self
      .redis
      .within_deadline(|| async {
        if let Some(reads) = self.try_tracked(tokens).await? {
          let due: Vec<&str> = tokens
            .iter()
            .zip(&reads)
            .filter(|&(&token, read)| read.is_some_and(|(_, pttl)| self.due(token, pttl)))
            .map(|(&token, _)| token)
            .collect();
          if !due.is_empty() {
            self.slide(&mut self.redis.get().await?, &due).await?;
          }
          return Ok(reads.into_iter().map(|read| read.is_some()).collect());
        }
        self.check_all_live(tokens).await
      })
      .await
  }

  /// Reads `tokens` through the validation cache's tracking connection; `None` when there is
  /// no cache or it cannot read now (see [`Tracking::try_read`]).
  async fn try_tracked(&self, tokens: &[&str]) -> Result<Option<Vec<Option<(u64, i64)>>>> {
    match &self.tracking {
      Some(tracking) => tracking.try_read(&self.redis, tokens).await,
      None => Ok(None),
    }
  }

  /// Drops a token this instance deleted, replaced or extended from the validation cache.
  fn forget(&self, token: &str) {
    if let Some(tracking) = &self.tracking {
      tracking.forget(token);
    }
  }

  /// Whether a live token with `pttl` ms left is due to slide: of the sliding sku, with less
  /// than half its TTL left.
  fn due(&self, token: &str, pttl: i64) -> bool {
    self.slides(token) && u128::try_from(pttl).is_ok_and(|left| left < self.ttl.as_millis() / 2)
  }

  /// Whether checks extend `token`: sliding is on and it is of this store's sku.
  fn slides(&self, token: &str) -> bool {
    self.sliding && token::sku(token) == Some(self.sku.as_str())
  }

  /// Runs `live_and_slide.lua` on each token: which are live. Only tokens due to slide are
  /// written, and on a cluster their index and the record of their user after them.
  async fn slide(&self, redis: &mut RedisConnection, tokens: &[&str]) -> Result<Vec<bool>> {
    let cluster = redis.is_cluster();
    let ttl = self.ttl.as_secs();
    let half_ms = (self.ttl.as_millis() / 2) as u64;
    let registration_ttl = self.registration_ttl.as_secs();
    let replies: Vec<redis::RedisResult<i64>> = per_key(redis, tokens, |token| {
      let mut slide = match keys::index_of(token).filter(|_| !cluster) {
        Some(index) => {
          scripts::LIVE_AND_SLIDE.eval(&[token, &index, &keys::registration_of(token)])
        }
        None => scripts::LIVE_AND_SLIDE.eval(&[token]),
      };
      // A window of 0 only checks: other skus' tokens are never extended.
      slide
        .arg(ttl)
        .arg(if self.slides(token) { half_ms } else { 0 })
        .arg(registration_ttl);
      slide
    })
    .await?;
    let mut live = Vec::with_capacity(tokens.len());
    for (&token, reply) in tokens.iter().zip(replies) {
      let outcome = reply?;
      if outcome == 2 {
        if let (true, Some(index)) = (cluster, keys::index_of(token)) {
          let mut record = redis.clone();
          let mut slide_index = scripts::SLIDE_INDEX.key(&index);
          slide_index.arg(token).arg(ttl);
          let (slid, renewed) = tokio::join!(
            slide_index.invoke_async::<i64>(redis),
            record.expire::<_, i64>(keys::registration_of(token), registration_ttl as i64)
          );
          slid?;
          renewed?;
        }
        // What this instance remembers expires too early now; the invalidation Redis sends
        // may arrive just after.
        self.forget(token);
      }
      live.push(outcome > 0);
    }
    Ok(live)
  }

  /// Deletes `token` if it is a live token; says whether it was. The index may go
  /// on naming it until its TTL: a token that is not live is never handed out again.
  pub async fn revoke(&self, token: &str) -> Result<bool> {
    if !token::is_well_formed(token) {
      return Ok(false);
    }
    self
      .redis
      .run(|mut redis| async move {
        let deleted: i64 = scripts::REVOKE_TOKEN
          .key(token)
          .invoke_async(&mut redis)
          .await?;
        self.forget(token);
        Ok(deleted == 1)
      })
      .await
  }

  /// Deletes the user's live tokens of this sku, or with `all_skus` of every sku in this
  /// Redis, and the indexes naming them; says how many tokens were deleted.
  ///
  /// The indexed token goes first (under the call's deadline), so that it is revoked even if
  /// the rest fails. Then a `SCAN` of the user's keys (on every master of a cluster) finds the
  /// tokens no index names: tokens in mpauthx 1.3.2's layout, tokens whose index was deleted
  /// or evicted. It runs under its own budget, `revoke_user_scan` (`revokeUserScanMs`), each
  /// step under the call's deadline, and revokes what each step found at once: what was
  /// revoked stays revoked when the budget runs out. Last, the index of every sku seen is
  /// emptied again, so that a token issued meanwhile (a refresh, a login) is revoked too.
  pub async fn revoke_user(&self, user_id: &str, all_skus: bool) -> Result<u64> {
    let mut revoked = self.revoke_indexed(user_id, &self.sku).await?;
    let own_sku = (!all_skus).then_some(self.sku.as_str());
    let mut skus = BTreeSet::from([self.sku.clone()]);
    let budget = tokio::time::Instant::now() + self.revoke_user_scan;
    let mut scan = Scan::new(keys::tokens_of(user_id, own_sku));
    while !scan.is_done() {
      let step = async {
        let (keys, next) = self
          .redis
          .within_deadline(|| async { Ok(scan.step(&mut self.redis.get().await?).await?) })
          .await?;
        let mut tokens: Vec<&str> = keys
          .iter()
          .map(String::as_str)
          .filter(|key| token::is_token_of(key, user_id, own_sku))
          .collect();
        tokens.sort_unstable();
        tokens.dedup();
        let deleted = match tokens.is_empty() {
          true => 0,
          false => {
            self
              .redis
              .within_deadline(|| async {
                self.revoke_all(&mut self.redis.get().await?, &tokens).await
              })
              .await?
          }
        };
        skus.extend(
          tokens
            .iter()
            .filter_map(|&token| token::sku(token))
            .map(str::to_owned),
        );
        Ok::<_, Error>((next, deleted))
      };
      match tokio::time::timeout_at(budget, step).await {
        Ok(outcome) => {
          let (next, deleted) = outcome?;
          scan = next;
          revoked += deleted;
        }
        Err(_) => {
          return Err(Error::Store {
            public: "revokeUser did not finish",
            why: format!(
              "the scan for the user's tokens did not finish within revokeUserScanMs ({} ms); \
               the {revoked} tokens revoked before it stopped stay revoked",
              self.revoke_user_scan.as_millis()
            ),
          })
        }
      }
    }
    for sku in &skus {
      revoked += self.revoke_indexed(user_id, sku).await?;
    }
    Ok(revoked)
  }

  /// Deletes the token the user's index of `sku` names, if it is a token of that user and
  /// sku, then the index if it still names that token; when the index changed meanwhile (a
  /// refresh or a login replaced it), does so again with the token it names now, at most
  /// [`MAX_REVOKE_ROUNDS`] times. Says how many tokens were deleted.
  async fn revoke_indexed(&self, user_id: &str, sku: &str) -> Result<u64> {
    let index = keys::index(user_id, sku);
    self
      .redis
      .run(|mut redis| {
        let index = &index;
        async move {
          let mut revoked = 0;
          for _ in 0..MAX_REVOKE_ROUNDS {
            let indexed: Option<String> = match redis.get(index).await {
              Ok(indexed) => indexed,
              Err(err) if err.code() == Some("WRONGTYPE") => return Ok(revoked),
              Err(err) => return Err(err.into()),
            };
            let Some(token) = indexed else {
              return Ok(revoked);
            };
            // Only a token of this user and of the index's sku; the script deletes only tokens.
            if keys::index_of(&token).as_ref() == Some(index) {
              let deleted: i64 = scripts::REVOKE_TOKEN
                .key(&token)
                .invoke_async(&mut redis)
                .await?;
              self.forget(&token);
              revoked += deleted as u64;
            }
            let mut script = scripts::COMPARE_AND_DELETE.key(index);
            let emptied: i64 = script.arg(&token).invoke_async(&mut redis).await?;
            if emptied == 1 {
              return Ok(revoked);
            }
          }
          Err(Error::Store {
            public: "the user's token kept changing",
            why: format!(
              "revokeUser gave up: the user's token kept changing (the index named another \
               token each of {MAX_REVOKE_ROUNDS} times it was to be deleted); the tokens \
               revoked stay revoked"
            ),
          })
        }
      })
      .await
  }

  /// Runs `revoke_token.lua` on each token, in one round trip (one per node on a cluster);
  /// says how many were tokens and are deleted now.
  async fn revoke_all(&self, redis: &mut RedisConnection, tokens: &[&str]) -> Result<u64> {
    let replies: Vec<redis::RedisResult<i64>> =
      per_key(redis, tokens, |token| scripts::REVOKE_TOKEN.eval(&[token])).await?;
    let mut revoked = 0;
    for (&token, reply) in tokens.iter().zip(replies) {
      let deleted = reply?;
      self.forget(token);
      revoked += deleted as u64;
    }
    Ok(revoked)
  }

  /// What `token` stands for, if it is live.
  pub async fn describe(&self, token: &str) -> Result<Option<TokenInfo>> {
    if !token::is_well_formed(token) {
      return Ok(None);
    }
    self
      .redis
      .within_deadline(|| async {
        let found = match self.try_tracked(&[token]).await? {
          Some(mut reads) => reads.pop().flatten(),
          None => read_untracked(&mut self.redis.get().await?, token).await?,
        };
        let Some((ctime, mut pttl)) = found else {
          return Ok(None);
        };
        if self.due(token, pttl)
          && self.slide(&mut self.redis.get().await?, &[token]).await? == [true]
        {
          pttl = self.ttl.as_millis() as i64;
        }
        Ok(token::sku(token).map(|sku| TokenInfo {
          user_id: token::user_id(token).to_owned(),
          sku: sku.to_owned(),
          ctime_ms: ctime,
          // Rounded as Redis's own `TTL` rounds.
          expires_in: u64::try_from(pttl).ok().map(|ms| (ms + 500) / 1000),
        }))
      })
      .await
  }

  /// The user's live token, if any, keeping `session_key` with it.
  pub async fn live_token(&self, user_id: &str, session_key: &str) -> Result<Option<String>> {
    self
      .redis
      .run(|redis| self.find_live_token(redis, user_id, session_key))
      .await
  }

  /// The session key kept with a live token.
  pub async fn session_key(&self, token: &str) -> Result<Option<String>> {
    if !token::is_well_formed(token) {
      return Ok(None);
    }
    self
      .redis
      .run(|mut redis| async move {
        Ok(
          scripts::SESSION_KEY
            .key(token)
            .invoke_async(&mut redis)
            .await?,
        )
      })
      .await
  }

  /// Issues a token for the user and sku and makes it the indexed one, or, with
  /// [`Issue::ReuseLive`], returns the live token another caller indexed first.
  pub async fn issue(&self, user_id: &str, mode: Issue<'_>) -> Result<String> {
    self
      .redis
      .run(|redis| self.issue_token(redis, user_id, mode))
      .await
  }

  /// Whether `token` is live, keeping `session_key` with it when given.
  async fn keep(
    &self, redis: &mut RedisConnection, token: &str, session_key: Option<&str>,
  ) -> Result<bool> {
    match session_key {
      None => check_live(redis, token).await,
      Some(key) => {
        let live: i64 = scripts::KEEP_SESSION_KEY
          .key(token)
          .arg(key)
          .invoke_async(redis)
          .await?;
        Ok(live == 1)
      }
    }
  }

  async fn check_all_live(&self, tokens: &[&str]) -> Result<Vec<bool>> {
    let mut live = vec![false; tokens.len()];
    let candidates = token::well_formed(tokens);
    if candidates.is_empty() {
      return Ok(live);
    }
    let mut redis = self.redis.get().await?;
    let checked: Vec<&str> = candidates.iter().map(|&i| tokens[i]).collect();
    let found = if self.sliding {
      self.slide(&mut redis, &checked).await?
    } else {
      let replies = per_key(&mut redis, &checked, |token| {
        let mut hexists = redis::cmd("HEXISTS");
        hexists.arg(token).arg(CTIME_FIELD);
        hexists
      })
      .await?;
      replies.into_iter().map(is_token).collect::<Result<_>>()?
    };
    for (i, found) in candidates.into_iter().zip(found) {
      live[i] = found;
    }
    Ok(live)
  }

  async fn find_live_token(
    &self, mut redis: RedisConnection, user_id: &str, session_key: &str,
  ) -> Result<Option<String>> {
    let indexed: Option<String> = redis.get(keys::index(user_id, &self.sku)).await?;
    match indexed {
      Some(token) if self.keep(&mut redis, &token, Some(session_key)).await? => Ok(Some(token)),
      _ => Ok(None),
    }
  }

  async fn issue_token(
    &self, mut redis: RedisConnection, user_id: &str, mode: Issue<'_>,
  ) -> Result<String> {
    let session_key = mode.session_key();
    let index = keys::index(user_id, &self.sku);
    // What the index held when this caller last lost a compare-and-set.
    let mut lost_to: Option<Option<String>> = None;
    for _ in 0..MAX_ATTEMPTS {
      let indexed: Option<String> = redis.get(&index).await?;
      // A refresh that lost to a concurrent refresh takes the winner's token: it was
      // issued after this call began, so "a new token" holds, and only one stays live.
      let reuse = match mode {
        Issue::ReuseLive { .. } => true,
        Issue::Replace { .. } => lost_to.as_ref().is_some_and(|seen| *seen != indexed),
      };
      if let Some(current) = indexed.as_deref().filter(|_| reuse) {
        if self.keep(&mut redis, current, session_key).await? {
          return Ok(current.to_owned());
        }
      }
      // A refresh carries the session key of the token it replaces: on one Redis the swap
      // moves it, in a Cluster (the tokens live in other slots) it is read here.
      let cluster = redis.is_cluster();
      let carried: Option<String> = match (session_key, indexed.as_deref(), cluster) {
        (None, Some(old), true) => {
          scripts::SESSION_KEY
            .key(old)
            .invoke_async(&mut redis)
            .await?
        }
        _ => None,
      };
      let token = token::generate(user_id, &self.sku)?;
      let key = session_key.or(carried.as_deref()).unwrap_or("");
      self.create(&mut redis, &token, key).await?;
      let expected = indexed.as_deref().unwrap_or("");
      let mut swap = scripts::COMPARE_AND_SET_INDEX.key(&index);
      if let (Some(old), false) = (&indexed, cluster) {
        swap.key(old);
        if session_key.is_none() {
          swap.key(&token);
        }
      }
      let swapped: bool = swap
        .arg(expected)
        .arg(&token)
        .arg(self.ttl.as_secs())
        .invoke_async(&mut redis)
        .await?;
      if swapped {
        if let Some(old) = indexed {
          if cluster {
            let _: Value = scripts::REVOKE_TOKEN
              .key(&old)
              .invoke_async(&mut redis)
              .await?;
          }
          self.forget(&old);
        }
        return Ok(token);
      }
      // Another caller indexed its token first: ours was never handed out.
      let _: () = redis.del(&token).await?;
      lost_to = Some(indexed);
    }
    Err(Error::Store {
      public: "too many concurrent logins of one user",
      why: format!(
        "gave up issuing a token after {MAX_ATTEMPTS} concurrent updates of the same index"
      ),
    })
  }

  async fn create(
    &self, redis: &mut RedisConnection, token: &str, session_key: &str,
  ) -> Result<()> {
    let _: i64 = scripts::CREATE_TOKEN
      .key(token)
      .arg(now_ms())
      .arg(self.ttl.as_secs())
      .arg(session_key)
      .invoke_async(redis)
      .await?;
    Ok(())
  }
}

/// Whether `token` is live (a hash with `ctime`), on the caller's connection.
async fn check_live(redis: &mut RedisConnection, token: &str) -> Result<bool> {
  if !token::is_well_formed(token) {
    return Ok(false);
  }
  is_token(redis.hexists(token, CTIME_FIELD).await)
}

/// Reads the answer to `HEXISTS <key> ctime`: a key of another type is some key of the
/// application's own, not a token.
fn is_token(reply: redis::RedisResult<bool>) -> Result<bool> {
  match reply {
    Ok(exists) => Ok(exists),
    Err(err) if err.code() == Some("WRONGTYPE") => Ok(false),
    Err(err) => Err(err.into()),
  }
}

/// Milliseconds since the epoch: a token's `ctime`, as mpauthx 1.3.2 writes it.
fn now_ms() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::config::{RedisTarget, RedisTls};
  use crate::store::redis::keys::{glob_escape, index_of};
  use crate::token::is_token_of;

  #[test]
  fn only_the_users_tokens_are_revoked_and_no_other_key() {
    let token = "oUser|sku|0123";
    assert_eq!(index_of(token).as_deref(), Some("mpauthx|index|sku|oUser"));
    assert_eq!(
      index_of("mpauthx|index|sku|oUser"),
      None,
      "an index is not a token"
    );
    let hex = "ab".repeat(32);
    let own = format!("oUser|sku|{hex}");
    assert!(is_token_of(&own, "oUser", Some("sku")) && is_token_of(&own, "oUser", None));
    assert!(!is_token_of(&own, "oUser", Some("other")), "another sku");
    assert!(is_token_of(&format!("oUser||{hex}"), "oUser", None));
    assert!(!is_token_of(&format!("oUserX|sku|{hex}"), "oUser", None));
    assert!(!is_token_of(&format!("oUse|sku|{hex}"), "oUser", None));
    assert!(!is_token_of("oUser|sku|x|y", "oUser", None), "four parts");
    assert!(!is_token_of("mpauthx|index|sku|oUser", "oUser", None));
    assert!(!is_token_of("mpauthx|user|sku|oUser", "mpauthx", None));
    assert_eq!(glob_escape(r"o*?[a]\x"), r"o\*\?\[a\]\\x");
    assert_eq!(glob_escape("oUser-1_^"), "oUser-1_^");
  }

  #[test]
  fn a_token_is_due_to_slide_in_the_second_half_of_its_ttl_only_when_sliding() {
    let target = RedisTarget::Single("redis://127.0.0.1:6379".into());
    let store = |sliding: bool| {
      let tls = RedisTls::default();
      let redis = Arc::new(Redis::new(&target, None, &tls, None).unwrap());
      RedisSessions::new(
        redis,
        None,
        (Duration::from_secs(4), Duration::from_secs(4)),
        "shop".into(),
        sliding,
      )
    };
    let (sliding, fixed) = (store(true), store(false));
    let (own, other) = (
      format!("o|shop|{}", "a".repeat(64)),
      format!("o|admin|{}", "a".repeat(64)),
    );
    assert!(sliding.due(&own, 1_999) && sliding.due(&own, 0));
    assert!(!sliding.due(&own, 2_000) && !sliding.due(&own, -1) && !sliding.due(&own, -2));
    assert!(
      !sliding.due(&other, 1),
      "another sku's token keeps its own TTL"
    );
    assert!(!fixed.due(&own, 1));
  }
}
