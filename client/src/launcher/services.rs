//! The services a person has added, kept between runs in `services.toml`
//! beside the settings file: each service's address and the user last
//! signed in there, the certificate authority the person chose to trust
//! for it (its pin), and which service was used last (the launcher opens
//! on it). Never a password: see [`crate::secrets`].

use std::path::{Path, PathBuf};

use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Service {
    /// The directory's address, `https://HOST[:PORT]`.
    pub url: String,
    /// The user last signed in there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// The CA certificate (PEM) the person trusted for this service, when
    /// the system does not trust it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_ca: Option<String>,
}

impl Service {
    /// The trusted CA, if one is pinned and readable.
    pub fn pin(&self) -> Option<CertificateDer<'static>> {
        let pem = self.trusted_ca.as_deref()?;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .inspect_err(|e| tracing::warn!(url = %self.url, error = %e, "the trusted certificate cannot be read"))
            .ok()
    }
}

/// A certificate as PEM text.
pub fn pem(cert: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Every kept service and the last one used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Services {
    /// The address of the service used last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// The services, in the order they were added.
    #[serde(default, rename = "service")]
    pub list: Vec<Service>,
}

impl Services {
    /// The file's services; none when it is missing. A file that cannot be
    /// read or parsed costs a warning and counts as none: the person adds
    /// the service again rather than meeting a dead end.
    pub fn load(path: &Path) -> Self {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "the kept services cannot be read; starting without them");
                Self::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "the kept services cannot be read");
                Self::default()
            }
        }
    }

    /// Writes the file (its folder made if needed), replaced whole.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        nephele_platform::fs::replace(path, text.as_bytes())
    }

    /// The service used last, if it is still kept.
    pub fn last(&self) -> Option<&Service> {
        let last = self.last.as_deref()?;
        self.list.iter().find(|s| s.url == last)
    }

    /// The service at `url`, if kept.
    pub fn get(&self, url: &str) -> Option<&Service> {
        self.list.iter().find(|s| s.url == url)
    }

    /// The service at `url`, added if new.
    fn entry(&mut self, url: &str) -> &mut Service {
        let i = match self.list.iter().position(|s| s.url == url) {
            Some(i) => i,
            None => {
                self.list.push(Service {
                    url: url.to_string(),
                    user: String::new(),
                    trusted_ca: None,
                });
                self.list.len() - 1
            }
        };
        &mut self.list[i]
    }

    /// Keeps `url` (adding it if new) with `user` as its last user, and
    /// makes it the last used.
    pub fn used(&mut self, url: &str, user: &str) {
        self.entry(url).user = user.to_string();
        self.last = Some(url.to_string());
    }

    /// Pins `ca` as the authority trusted for `url`.
    pub fn trust(&mut self, url: &str, ca: &CertificateDer<'_>) {
        self.entry(url).trusted_ca = Some(pem(ca));
    }
}

/// Where the services are kept: beside the settings file in use.
pub fn default_path(settings_file: Option<&Path>) -> Option<PathBuf> {
    settings_file
        .and_then(Path::parent)
        .map(|dir| dir.join("services.toml"))
}

/// A typed address as the directory URL it means: `https://` added when no
/// scheme is given, spaces and a final `/` dropped. An error in words for
/// anything but an `https://` address with a host.
pub fn normalise(typed: &str) -> Result<String, String> {
    let t = typed.trim();
    if t.is_empty() {
        return Err("Type the address of your service, as in https://desktops.example.com".into());
    }
    let host = match t.split_once("://") {
        None => t,
        Some(("https", host)) => host,
        Some(_) => {
            return Err(
                "Nephele connects only over https://. Check the address your administrator gave you."
                    .into(),
            );
        }
    }
    .trim_end_matches('/');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(
            "That address does not look right: it is a name or number such as desktops.example.com, perhaps with :PORT.".into(),
        );
    }
    Ok(format!("https://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_kept_with_their_last_user_and_the_last_used_first() {
        let dir = std::env::temp_dir().join(format!("nephele-services-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("nested").join("services.toml");
        assert_eq!(Services::load(&path), Services::default());
        let mut s = Services::default();
        s.used("https://a.example:8443", "ada");
        s.used("https://b.example", "bob");
        s.used("https://a.example:8443", "ada@acme");
        let ca = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x07]);
        s.trust("https://b.example", &ca);
        s.save(&path).unwrap();
        let back = Services::load(&path);
        assert_eq!(back, s);
        assert_eq!(back.list.len(), 2);
        assert_eq!(back.last().unwrap().user, "ada@acme");
        assert_eq!(back.get("https://b.example").unwrap().user, "bob");
        assert_eq!(back.get("https://b.example").unwrap().pin(), Some(ca));
        assert_eq!(back.last().unwrap().pin(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("password"), "{text}");
        std::fs::write(&path, "last = [broken").unwrap();
        assert_eq!(Services::load(&path), Services::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn typed_addresses_become_https_urls_or_a_reason() {
        assert_eq!(
            normalise(" desktops.example.com/ ").unwrap(),
            "https://desktops.example.com"
        );
        assert_eq!(
            normalise("https://127.0.0.1:8443").unwrap(),
            "https://127.0.0.1:8443"
        );
        assert!(normalise("").unwrap_err().contains("Type the address"));
        assert!(
            normalise("http://x.example")
                .unwrap_err()
                .contains("https://")
        );
        assert!(normalise("https://").is_err());
        assert!(normalise("two words").is_err());
        assert!(normalise("https://x.example/path").is_err());
    }
}
