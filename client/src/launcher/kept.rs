//! "Keep me signed in": the password kept in the system's keychain (the
//! Secret Service, Credential Manager, Keychain), one entry per service
//! and user, and never in a file; and beside it the device token that
//! marks this computer as one the account signed in from. A keychain that
//! cannot be reached costs a line in the log and a password typed next
//! time, nothing more.

use nephele_platform::keychain::Secret;

/// What the keychain holds for a user of a service.
#[derive(Debug, Clone, Copy)]
enum Kept {
    Password,
    /// Whose sign-ins others' guessing cannot hold up; kept whether or
    /// not the password is.
    DeviceToken,
}

impl Kept {
    fn name(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::DeviceToken => "device token",
        }
    }

    fn entry(self, url: &str, user: &str) -> Option<Secret> {
        let service = match self {
            Self::Password => format!("Nephele {url}"),
            Self::DeviceToken => format!("Nephele device {url}"),
        };
        Secret::new(&service, user)
            .inspect_err(|e| tracing::warn!(error = %e, "no keychain"))
            .ok()
    }

    fn read(self, url: &str, user: &str) -> Option<String> {
        if user.is_empty() {
            return None;
        }
        match self.entry(url, user)?.get() {
            Ok(p) => p.filter(|p| !p.is_empty()),
            Err(e) => {
                tracing::warn!(error = %e, what = self.name(), "reading the keychain");
                None
            }
        }
    }

    /// Whether the keychain took `secret`.
    fn keep(self, url: &str, user: &str, secret: &str) -> bool {
        match self.entry(url, user).map(|s| s.set(secret)) {
            Some(Ok(())) => {
                tracing::info!(%user, "{} kept in the system keychain", self.name());
                true
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, what = self.name(), "keeping it in the keychain");
                false
            }
            None => false,
        }
    }
}

/// The password kept for `user` at `url`, if any.
pub(super) fn read(url: &str, user: &str) -> Option<String> {
    Kept::Password.read(url, user)
}

/// Keeps `password` for `user` at `url`; what to tell the person when the
/// keychain refused.
pub(super) fn keep(url: &str, user: &str, password: &str) -> Option<String> {
    (!Kept::Password.keep(url, user, password)).then(|| NOT_KEPT.into())
}

const NOT_KEPT: &str =
    "This computer's keychain could not keep your password, so you will be asked for it next time.";

/// The device token kept for `user` at `url`, if any.
pub(super) fn device(url: &str, user: &str) -> Option<String> {
    Kept::DeviceToken.read(url, user)
}

/// Keeps the device token `token` for `user` at `url`.
pub(super) fn keep_device(url: &str, user: &str, token: &str) {
    Kept::DeviceToken.keep(url, user, token);
}

/// Forgets the password kept for `user` at `url`.
pub(super) fn forget(url: &str, user: &str) {
    if let Some(s) = Kept::Password.entry(url, user)
        && let Err(e) = s.delete()
    {
        tracing::warn!(error = %e, "forgetting the kept password");
    }
}
