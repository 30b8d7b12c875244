//! Signed tokens: Ed25519 JSON Web Tokens (`alg: EdDSA`).
//!
//! The directory signs two kinds, told apart by their audience:
//!
//! * a **user token** (audience [`AUD_DIRECTORY`]) after sign-in, which the
//!   client presents to the directory's own API;
//! * a **resume token** (audience [`AUD_RESUME`]) with each session, long
//!   lived, with which the client fetches fresh session tokens for the same
//!   session after a long disconnect;
//! * a **session token** (audience [`AUD_GATEWAY`]) when a session is
//!   created, naming the session, the user and the host assigned to it. The
//!   client presents it in its probes and in its `Hello`; gateways verify it
//!   offline with the directory's public key, so no gateway asks the directory
//!   anything per session or per packet.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Audience of user tokens.
pub const AUD_DIRECTORY: &str = "nephele-directory";
/// Audience of session tokens.
pub const AUD_GATEWAY: &str = "nephele-gateway";
/// Audience of resume tokens.
pub const AUD_RESUME: &str = "nephele-resume";

/// Audience of device tokens: the device signed in to this account before
/// (sign-ins presenting one skip the guessing limits and have a lane of
/// their own at the password check).
pub const AUD_DEVICE: &str = "nephele-device";
/// Issuer of every token.
pub const ISSUER: &str = "nephele-directory";
/// Clock difference tolerated between the directory and its verifiers.
const LEEWAY_S: u64 = 30;

/// Why a token was refused, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("no session token was presented")]
    Missing,
    /// The token is past its expiry.
    #[error("the token has expired")]
    Expired,
    /// The signature does not match the directory's key.
    #[error("the token's signature is not the directory's (forged or from another directory)")]
    BadSignature,
    /// Signed for another audience (say, a user token shown to a gateway).
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// Not a token at all, or missing claims.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The key could not be made or read.
    #[error("signing key: {0}")]
    Key(String),
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            _ => Self::Malformed(e.to_string()),
        }
    }
}

/// The claims of a user token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    /// User name.
    pub sub: String,
    /// Tenant the user belongs to.
    pub tenant: String,
    /// Audience: [`AUD_DIRECTORY`].
    pub aud: String,
    /// Issuer.
    pub iss: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Session id.
    pub sid: String,
    /// User name.
    pub sub: String,
    /// Tenant.
    pub tenant: String,
    /// Desktop or app the session opens.
    pub desktop: String,
    /// UDP address of the desktop host assigned to the session.
    pub host: String,
    /// UDP address of the backup host the session's state is replicated to
    /// and that takes it over when the primary fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The directory's idle policy for the session: warn, pause and
    /// suspend thresholds in milliseconds (0: never). Absent: the gateway's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<[u32; 3]>,
    /// Most picture pixels a second the session may stream (width ×
    /// height × frame rate), set by the directory; hosts apply the lower of
    /// this and their own cap. Absent: the host's cap alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixels: Option<u64>,
    /// How many times the directory had handed the session out when it
    /// issued this token (a reconnect from the catalog, a renewal): a
    /// client with a later grant takes the session over from one still
    /// holding an earlier, where the same grant (a copied token) is
    /// refused while its holder is connected.
    #[serde(default)]
    pub grant: u32,
    /// The entry is an application: the host starts it on a display of
    /// the session's own, with the user's profile (asked of the directory
    /// with this token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub app: bool,
    /// Audience: [`AUD_GATEWAY`].
    pub aud: String,
    /// Issuer.
    pub iss: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// The claims of a resume token: the session it may fetch fresh session
/// tokens for, through the directory, until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeClaims {
    /// Session id.
    pub sid: String,
    /// User name.
    pub sub: String,
    /// Tenant.
    pub tenant: String,
    /// Audience: [`AUD_RESUME`].
    pub aud: String,
    /// Issuer.
    pub iss: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Which of the session's resume tokens this is: each is good once,
    /// and its use issues the next.
    #[serde(default)]
    pub generation: u32,
}

/// The 64-bit id of a directory session between gateways and hosts: the
/// same on every gateway and host of one build.
pub fn session_number(sid: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // `DefaultHasher::new()` is keyed the same everywhere, so every gateway
    // and host (of one build) maps a session id to the same number; the
    // session id itself is the directory's 128 random bits.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sid.hash(&mut h);
    h.finish()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The directory's signing key.
pub struct Signer {
    key: EncodingKey,
    public: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public_key_b64())
            .finish()
    }
}

impl Signer {
    /// A new random key, as PKCS#8 bytes to store and the signer.
    pub fn generate() -> Result<(Vec<u8>, Self), TokenError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let signer = Self::from_pkcs8(pkcs8.as_ref())?;
        Ok((pkcs8.as_ref().to_vec(), signer))
    }

    /// The signer for a stored PKCS#8 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, TokenError> {
        use ring::signature::KeyPair as _;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self {
            key: EncodingKey::from_ed_der(pkcs8),
            public: pair.public_key().as_ref().to_vec(),
        })
    }

    /// The public key, base64url without padding (as published by the directory).
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.public)
    }

    /// A verifier for this signer's tokens.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            key: DecodingKey::from_ed_der(&self.public),
        }
    }

    /// Signs claims.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, TokenError> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            claims,
            &self.key,
        )?)
    }

    /// A user token valid for `ttl`.
    pub fn user_token(
        &self,
        tenant: &str,
        user: &str,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        self.user_claims(tenant, user, ttl, AUD_DIRECTORY)
    }

    /// A device token: this device signed in to this account.
    pub fn device_token(
        &self,
        tenant: &str,
        user: &str,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        self.user_claims(tenant, user, ttl, AUD_DEVICE)
    }

    fn user_claims(
        &self,
        tenant: &str,
        user: &str,
        ttl: Duration,
        aud: &str,
    ) -> Result<String, TokenError> {
        let now = unix_now();
        self.sign(&UserClaims {
            sub: user.into(),
            tenant: tenant.into(),
            aud: aud.into(),
            iss: ISSUER.into(),
            iat: now,
            exp: now + ttl.as_secs(),
        })
    }
}

/// Checks tokens with the directory's public key; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

impl Verifier {
    /// From the public key as the directory publishes it (base64url).
    pub fn from_public_b64(key: &str) -> Result<Self, TokenError> {
        let raw = URL_SAFE_NO_PAD
            .decode(key.trim())
            .map_err(|e| TokenError::Key(format!("public key is not base64url: {e}")))?;
        if raw.len() != 32 {
            return Err(TokenError::Key(format!(
                "an Ed25519 public key has 32 bytes, this one {}",
                raw.len()
            )));
        }
        Ok(Self {
            key: DecodingKey::from_ed_der(&raw),
        })
    }

    fn validation(audience: &str) -> Validation {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[audience]);
        v.set_issuer(&[ISSUER]);
        v.leeway = LEEWAY_S;
        v.set_required_spec_claims(&["exp", "aud", "iss"]);
        v
    }

    /// Verifies a session token for gateways.
    pub fn session(&self, token: &[u8]) -> Result<SessionClaims, TokenError> {
        self.session_with(token, Self::validation(AUD_GATEWAY))
    }

    /// Verifies a session token's signature, issuer and audience but not
    /// its age: for a host that already holds the session it names (a
    /// session outlives its first token; the failover of a long session
    /// presents the token its client connected with).
    pub fn session_any_age(&self, token: &[u8]) -> Result<SessionClaims, TokenError> {
        let mut v = Self::validation(AUD_GATEWAY);
        v.validate_exp = false;
        self.session_with(token, v)
    }

    fn session_with(&self, token: &[u8], v: Validation) -> Result<SessionClaims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let token =
            std::str::from_utf8(token).map_err(|_| TokenError::Malformed("not text".into()))?;
        let claims: serde_json::Value = jsonwebtoken::decode(token, &self.key, &v)?.claims;
        serde_json::from_value(claims).map_err(|e| TokenError::Malformed(e.to_string()))
    }

    /// Checks signature, expiry, issuer and audience before looking at the
    /// claims' shape, so a refusal names the real reason.
    fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<C, TokenError> {
        let claims: serde_json::Value =
            jsonwebtoken::decode(token, &self.key, &Self::validation(audience))?.claims;
        serde_json::from_value(claims).map_err(|e| TokenError::Malformed(e.to_string()))
    }

    /// Verifies a resume token for the directory's API.
    pub fn resume(&self, token: &str) -> Result<ResumeClaims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        self.decode(token, AUD_RESUME)
    }

    /// Verifies a user token for the directory's API.
    pub fn user(&self, token: &str) -> Result<UserClaims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        self.decode(token, AUD_DIRECTORY)
    }

    /// Verifies a device token.
    pub fn device(&self, token: &str) -> Result<UserClaims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        self.decode(token, AUD_DEVICE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(signer: &Signer, aud: &str, exp: u64) -> String {
        signer
            .sign(&SessionClaims {
                sid: "s1".into(),
                sub: "alice".into(),
                tenant: "default".into(),
                desktop: "demo".into(),
                host: "127.0.0.1:7400".into(),
                backup: None,
                idle: None,
                pixels: None,
                grant: 0,
                app: false,
                aud: aud.into(),
                iss: ISSUER.into(),
                iat: unix_now(),
                exp,
            })
            .unwrap()
    }

    #[test]
    fn valid_session_token_is_accepted_and_published_key_round_trips() {
        let (_, signer) = Signer::generate().unwrap();
        let v = Verifier::from_public_b64(&signer.public_key_b64()).unwrap();
        let t = session(&signer, AUD_GATEWAY, unix_now() + 60);
        let c = v.session(t.as_bytes()).unwrap();
        assert_eq!((c.sid.as_str(), c.host.as_str()), ("s1", "127.0.0.1:7400"));
    }

    #[test]
    fn forged_expired_and_wrong_audience_tokens_are_refused_with_their_reason() {
        let (_, signer) = Signer::generate().unwrap();
        let (_, other) = Signer::generate().unwrap();
        let v = signer.verifier();
        let forged = session(&other, AUD_GATEWAY, unix_now() + 60);
        assert_eq!(v.session(forged.as_bytes()), Err(TokenError::BadSignature));
        let expired = session(&signer, AUD_GATEWAY, unix_now() - 3600);
        assert_eq!(v.session(expired.as_bytes()), Err(TokenError::Expired));
        let user = signer
            .user_token("default", "alice", Duration::from_secs(60))
            .unwrap();
        assert_eq!(v.session(user.as_bytes()), Err(TokenError::WrongAudience));
        assert_eq!(v.session(b""), Err(TokenError::Missing));
        assert!(matches!(
            v.session(b"not.a.jwt"),
            Err(TokenError::Malformed(_))
        ));
        // A tampered payload breaks the signature.
        let good = session(&signer, AUD_GATEWAY, unix_now() + 60);
        let mut parts: Vec<&str> = good.split('.').collect();
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let evil = String::from_utf8(payload)
            .unwrap()
            .replace("127.0.0.1:7400", "10.0.0.66:7400");
        let evil = URL_SAFE_NO_PAD.encode(evil);
        parts[1] = &evil;
        assert_eq!(
            v.session(parts.join(".").as_bytes()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            v.user(&good),
            Err(TokenError::WrongAudience),
            "a session token is not a user token"
        );
    }

    #[test]
    fn stored_key_signs_the_same() {
        let (pkcs8, signer) = Signer::generate().unwrap();
        let again = Signer::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(signer.public_key_b64(), again.public_key_b64());
        assert!(Verifier::from_public_b64("AAAA").is_err());
    }
}
