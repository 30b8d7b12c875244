//! A password kept in the system's keychain: the Secret Service on Linux
//! (GNOME Keyring, KWallet…, over the session bus), Credential Manager on
//! Windows, Keychain on macOS. Never a file of ours.

/// The keychain could not be used (no Secret Service running, locked and
/// not unlocked, refused).
#[derive(Debug, thiserror::Error)]
#[error("the system keychain: {0}")]
pub struct KeychainError(String);

/// One kept secret: `service` names what it is for, `account` whose.
pub struct Secret(keyring::Entry);

impl Secret {
    /// The secret for `account` at `service`.
    pub fn new(service: &str, account: &str) -> Result<Self, KeychainError> {
        keyring::Entry::new(service, account)
            .map(Self)
            .map_err(|e| KeychainError(e.to_string()))
    }

    /// The kept secret, or `None` when there is none.
    pub fn get(&self) -> Result<Option<String>, KeychainError> {
        match self.0.get_password() {
            Ok(p) => Ok(Some(p)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(KeychainError(e.to_string())),
        }
    }

    /// Keeps `secret`, replacing what was kept.
    pub fn set(&self, secret: &str) -> Result<(), KeychainError> {
        self.0
            .set_password(secret)
            .map_err(|e| KeychainError(e.to_string()))
    }

    /// Forgets the secret (nothing kept is no error).
    pub fn delete(&self) -> Result<(), KeychainError> {
        match self.0.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(KeychainError(e.to_string())),
        }
    }
}
