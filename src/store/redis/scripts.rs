//! The Lua scripts, one `.lua` file each in `scripts/`, whose header comment states its KEYS,
//! ARGV, reply and invariants. Scripts that act on a token check first that the key is one (a
//! hash with `ctime`): a key of another type is no token (`WRONGTYPE`, read with `pcall`), and
//! any other refusal (an ACL that denies a command, say) is returned as the error it is, never
//! taken to mean "no such token".
//!
//! Every script is a [`Lua`], invoked in one of two ways: alone with [`Lua::key`], as
//! `EVALSHA`, which redis-rs follows with `SCRIPT LOAD` and a retry when the server does not
//! know the script (a restart, a failover, `SCRIPT FLUSH`); or inside a pipeline of one command
//! per token with [`Lua::eval`], as `EVAL` with the script's text. A pipeline cannot take the
//! first way: redis-rs's `pipe.invoke_script` sends `EVALSHA` and never loads the script, so
//! after a restart every command of the pipeline would fail with `NOSCRIPT`.

use std::sync::LazyLock;

use redis::{Cmd, Script, ScriptInvocation};

/// A script, without its header comment (sent with every `EVAL`), and its SHA.
pub struct Lua {
  body: String,
  script: Script,
}

impl Lua {
  fn new(source: &str) -> Self {
    let body: String = source
      .lines()
      .skip_while(|line| line.starts_with("--"))
      .flat_map(|line| [line, "\n"])
      .collect();
    Self {
      script: Script::new(&body),
      body,
    }
  }

  /// An invocation sent alone (`EVALSHA`, loading the script when the server lacks it), with
  /// `key` as `KEYS[1]`.
  pub fn key(&self, key: &str) -> ScriptInvocation<'_> {
    self.script.key(key)
  }

  /// The script with `keys`, as one command of a pipeline (`EVAL`; see the module's doc); the
  /// caller adds the `ARGV`.
  pub fn eval(&self, keys: &[&str]) -> Cmd {
    let mut eval = redis::cmd("EVAL");
    eval.arg(&self.body).arg(keys.len()).arg(keys);
    eval
  }
}

macro_rules! scripts {
  ($($name:ident = $file:literal;)*) => {$(
    #[doc = concat!("`scripts/", $file, "`.")]
    pub static $name: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!(concat!("scripts/", $file))));
  )*};
}

scripts! {
  CACHED_APP_TOKEN = "cached_app_token.lua";
  COMPARE_AND_DELETE = "compare_and_delete.lua";
  COMPARE_AND_SET_INDEX = "compare_and_set_index.lua";
  CREATE_TOKEN = "create_token.lua";
  KEEP_SESSION_KEY = "keep_session_key.lua";
  LIVE_AND_SLIDE = "live_and_slide.lua";
  READ_TOKEN = "read_token.lua";
  REVOKE_TOKEN = "revoke_token.lua";
  SESSION_KEY = "session_key.lua";
  SLIDE_INDEX = "slide_index.lua";
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn the_header_stays_in_the_file_and_the_code_is_sent() {
    let lua = &*COMPARE_AND_DELETE;
    assert!(lua
      .body
      .starts_with("if redis.call('GET', KEYS[1]) == ARGV[1]"));
    assert!(!lua.body.contains("--"));
    for lua in [
      &*LIVE_AND_SLIDE,
      &*REVOKE_TOKEN,
      &*READ_TOKEN,
      &*CACHED_APP_TOKEN,
    ] {
      assert!(lua.body.starts_with("local "), "{}", lua.body);
    }
  }
}
