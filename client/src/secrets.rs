//! Where the password comes from. Never from the settings file and never
//! into a log: `$NEPHELE_PASSWORD`, else a systemd credential named
//! `nephele-password` (`LoadCredentialEncrypted=` in the kiosk's unit keeps
//! it encrypted at rest), else a prompt on the terminal.

use std::path::PathBuf;

/// The systemd credential holding the password.
pub const CREDENTIAL: &str = "nephele-password";

/// Why no password could be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Nothing provided one and there is no terminal to ask on.
    #[error(
        "no password: set NEPHELE_PASSWORD, give the service a systemd credential named {CREDENTIAL}, or run where a terminal can ask ({0})"
    )]
    NoSource(std::io::Error),
}

/// The password for `user`; `ask` allows a terminal prompt.
pub fn password_for(user: &str, ask: bool) -> Result<String, SecretError> {
    if let Ok(p) = std::env::var("NEPHELE_PASSWORD") {
        return Ok(p);
    }
    if let Some(p) = credential() {
        return Ok(p);
    }
    if !ask {
        return Err(SecretError::NoSource(std::io::Error::other(
            "kiosk mode does not prompt",
        )));
    }
    rpassword::prompt_password(format!("Password for {user}: ")).map_err(SecretError::NoSource)
}

/// `$CREDENTIALS_DIRECTORY/nephele-password`, without its final newline.
fn credential() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CREDENTIALS_DIRECTORY")?);
    let text = std::fs::read_to_string(dir.join(CREDENTIAL)).ok()?;
    Some(text.strip_suffix('\n').unwrap_or(&text).to_string())
}
