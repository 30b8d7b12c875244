//! Programs a service starts on a user's behalf: run as another account
//! where the system has accounts, and ended with the process that started
//! them, so a killed host leaves no orphaned display or application.

use std::process::Command;

/// Errors finding an account.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No such account.
    #[error("there is no account `{0}` on this machine")]
    Unknown(String),
    /// The system has no accounts to run programs as.
    #[error("programs cannot be run as another account on this system")]
    Unsupported,
}

/// An account programs run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Sets `cmd` to run as `account`, and to be killed when the thread that
/// spawns it ends (Linux; elsewhere it outlives its parent). Spawn it
/// from a thread that lives as long as the service.
pub fn bind(cmd: &mut Command, account: Option<Account>) {
    imp::bind(cmd, account);
}

/// Asks a child to end (SIGTERM), so it can save what it holds; elsewhere
/// than Unix, it is killed.
pub fn terminate(child: &mut std::process::Child) {
    imp::terminate(child);
}

/// Looks up an account by name.
pub fn account(name: &str) -> Result<Account, AccountError> {
    imp::account(name)
}

#[cfg(unix)]
mod imp {
    use std::process::Command;

    use super::{Account, AccountError};

    pub fn bind(cmd: &mut Command, account: Option<Account>) {
        use std::os::unix::process::CommandExt;
        if let Some(a) = account {
            // std drops root's supplementary groups as it changes user.
            cmd.uid(a.uid).gid(a.gid);
        }
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // After the credential change std makes (which would clear it).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    pub fn terminate(child: &mut std::process::Child) {
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return;
        };
        // SAFETY: kill takes plain values; a child not yet waited for
        // still holds its pid, so the signal cannot reach another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }

    pub fn account(name: &str) -> Result<Account, AccountError> {
        let unknown = || AccountError::Unknown(name.to_string());
        let c = std::ffi::CString::new(name).map_err(|_| unknown())?;
        let mut pw = std::mem::MaybeUninit::<libc::passwd>::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is a C
        // string, `pw` and `buf` are writable for their sizes, and `found`
        // receives null or `pw`'s address.
        let rc = unsafe {
            libc::getpwnam_r(
                c.as_ptr(),
                pw.as_mut_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return Err(unknown());
        }
        // SAFETY: filled by the successful call (`found` points at it).
        let pw = unsafe { pw.assume_init() };
        Ok(Account {
            uid: pw.pw_uid,
            gid: pw.pw_gid,
        })
    }
}

#[cfg(not(unix))]
mod imp {
    use std::process::Command;

    use super::{Account, AccountError};

    pub fn bind(_cmd: &mut Command, _account: Option<Account>) {}

    pub fn terminate(child: &mut std::process::Child) {
        let _ = child.kill();
    }

    pub fn account(_name: &str) -> Result<Account, AccountError> {
        Err(AccountError::Unsupported)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_found_by_name_and_unknown_ones_said_so() {
        let root = account("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        match account("no-such-account-here") {
            Err(AccountError::Unknown(n)) => assert_eq!(n, "no-such-account-here"),
            other => panic!("{other:?}"),
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_bound_child_dies_with_the_thread_that_spawned_it() {
        let child = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            bind(&mut cmd, None);
            cmd.spawn().unwrap()
        })
        .join()
        .unwrap();
        let mut child = child;
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the child outlived its parent thread: {status}"
        );
    }
}
