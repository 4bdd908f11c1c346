//! Makes the addon's SQLite lock files with open-file-description (OFD) locks on Linux.
//!
//! The application often holds the same database open through node-sqlite3 or better-sqlite3,
//! each bundling its own SQLite, in this very process. Classic POSIX locks belong to the
//! process, so two SQLite copies in one process never exclude each other and their concurrent
//! writes corrupt the file. OFD locks belong to the open file and conflict with classic locks
//! even inside one process, so routing this copy's `fcntl` locking through them restores
//! mutual exclusion with the application's copy (and with other processes, as before).
//! It relies on this copy holding one connection per file, which `database` ensures.

#[cfg(target_os = "linux")]
mod linux {
  use std::ffi::{c_int, c_void};
  use std::sync::OnceLock;

  use rusqlite::ffi;

  /// SQLite calls its `fcntl` through a variadic pointer, always with one third argument,
  /// which sits where a fixed third parameter does on Linux's calling conventions.
  unsafe extern "C" fn ofd_fcntl(fd: c_int, op: c_int, arg: *mut c_void) -> c_int {
    let ofd_op = match op {
      libc::F_SETLK => libc::F_OFD_SETLK,
      libc::F_SETLKW => libc::F_OFD_SETLKW,
      libc::F_GETLK => libc::F_OFD_GETLK,
      other => return unsafe { libc::fcntl(fd, other, arg) },
    };
    // OFD locks require l_pid to be zero on the way in.
    unsafe {
      (*arg.cast::<libc::flock>()).l_pid = 0;
      libc::fcntl(fd, ofd_op, arg)
    }
  }

  /// Whether the OFD `fcntl` is installed, once [`install`] ran.
  pub static INSTALLED: OnceLock<bool> = OnceLock::new();

  /// Installs the OFD `fcntl` in the default VFS once per process; `false` when SQLite refused.
  pub fn install() -> bool {
    *INSTALLED.get_or_init(|| unsafe {
      let vfs = ffi::sqlite3_vfs_find(std::ptr::null());
      let Some(set) = vfs.as_ref().and_then(|vfs| vfs.xSetSystemCall) else {
        return false;
      };
      let replacement: unsafe extern "C" fn(c_int, c_int, *mut c_void) -> c_int = ofd_fcntl;
      let pointer: ffi::sqlite3_syscall_ptr = Some(std::mem::transmute::<
        unsafe extern "C" fn(c_int, c_int, *mut c_void) -> c_int,
        unsafe extern "C" fn(),
      >(replacement));
      set(vfs, c"fcntl".as_ptr(), pointer) == ffi::SQLITE_OK
    })
  }
}

/// Switches this process's copy of SQLite to OFD locks where the platform has them.
pub fn install() {
  #[cfg(target_os = "linux")]
  linux::install();
}

/// Why this copy of SQLite runs without OFD locks although the platform has them (SQLite
/// refused the replacement), once [`install`] ran; `None` when they are in place or the
/// platform has none.
pub fn refused() -> Option<&'static str> {
  #[cfg(target_os = "linux")]
  if linux::INSTALLED.get() == Some(&false) {
    return Some(
      "SQLite refused the OFD locks: in this process, the addon's SQLite and the \
       application's may not exclude each other's writes",
    );
  }
  None
}
