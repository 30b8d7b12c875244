//! "Keep me signed in": the password kept in the system's keychain (the
//! Secret Service, Credential Manager, Keychain), one entry per service
//! and user, and never in a file. A keychain that cannot be reached costs
//! a line in the log and a password typed next time, nothing more.

use nephele_platform::keychain::Secret;

fn secret(url: &str, user: &str) -> Option<Secret> {
    Secret::new(&format!("Nephele {url}"), user)
        .inspect_err(|e| tracing::warn!(error = %e, "no keychain"))
        .ok()
}

/// The password kept for `user` at `url`, if any.
pub(super) fn read(url: &str, user: &str) -> Option<String> {
    if user.is_empty() {
        return None;
    }
    match secret(url, user)?.get() {
        Ok(p) => p.filter(|p| !p.is_empty()),
        Err(e) => {
            tracing::warn!(error = %e, "reading the kept password");
            None
        }
    }
}

/// Keeps `password` for `user` at `url`; what to tell the person when the
/// keychain refused.
pub(super) fn keep(url: &str, user: &str, password: &str) -> Option<String> {
    let kept = secret(url, user).map(|s| s.set(password));
    match kept {
        Some(Ok(())) => {
            tracing::info!(%user, "password kept in the system keychain");
            None
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "keeping the password");
            Some(NOT_KEPT.into())
        }
        None => Some(NOT_KEPT.into()),
    }
}

const NOT_KEPT: &str =
    "This computer's keychain could not keep your password, so you will be asked for it next time.";

/// The device token kept for `user` at `url`: it marks this computer as
/// one the account signed in from, whose sign-ins others' guessing cannot
/// hold up. Kept whether or not the password is.
pub(super) fn device(url: &str, user: &str) -> Option<String> {
    let s = Secret::new(&format!("Nephele device {url}"), user).ok()?;
    s.get()
        .inspect_err(|e| tracing::warn!(error = %e, "reading the device token"))
        .ok()
        .flatten()
        .filter(|t| !t.is_empty())
}

/// Keeps the device token `token` for `user` at `url`.
pub(super) fn keep_device(url: &str, user: &str, token: &str) {
    let kept = Secret::new(&format!("Nephele device {url}"), user).and_then(|s| s.set(token));
    match kept {
        Ok(()) => tracing::info!(%user, "device token kept in the system keychain"),
        Err(e) => tracing::warn!(error = %e, "keeping the device token"),
    }
}

/// Forgets what is kept for `user` at `url`.
pub(super) fn forget(url: &str, user: &str) {
    if let Some(s) = secret(url, user)
        && let Err(e) = s.delete()
    {
        tracing::warn!(error = %e, "forgetting the kept password");
    }
}
