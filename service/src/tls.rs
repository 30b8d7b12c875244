//! TLS material for gateways and the directory: a generated certificate
//! authority and a certificate signed by it (for demos and self-hosted
//! setups), or PEM files supplied by the operator. Clients trust the CA
//! explicitly (see [`nephele_api::trust`]); there is no "accept any
//! certificate" mode.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors while creating or loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file could not be read or parsed.
    #[error("reading {path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The TLS configuration offers no cipher suite QUIC can start with.
    #[error("QUIC needs a TLS 1.3 cipher suite: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// Writing generated files failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A gateway's certificate chain and key, and the CA that clients should trust.
#[derive(Debug)]
pub struct GatewayIdentity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The CA certificate clients pin (DER), when generated here.
    pub ca: Option<CertificateDer<'static>>,
}

impl Clone for GatewayIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            ca: self.ca.clone(),
        }
    }
}

/// Generates a fresh CA (kept in memory only) and a gateway certificate for
/// `names` (DNS names or IP addresses): for tests and throwaway services.
/// A service that restarts keeps its CA in files: see [`Ca::open`].
pub fn generate(names: &[String]) -> Result<GatewayIdentity, TlsError> {
    Ca::new()?.issue(names)
}

/// A certificate authority a role issues its own certificate from: the
/// certificate clients trust (`NAME.pem`) and its key beside it
/// (`NAME.key`, readable by the owner only). Kept across restarts, so a
/// restarted directory or gateway is still the service its clients and
/// gateways trust; replaced only by [`Ca::rotate`].
pub struct Ca {
    cert: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// What [`Ca::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The CA in the files, as it was.
    Kept,
    /// There was none: a new one was written.
    Created,
    /// The key was readable by others: it is the owner's alone now, but
    /// may have been copied.
    KeptKeyWasOpen,
}

impl Ca {
    fn params() -> rcgen::CertificateParams {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
        // The issuer's name and key are what a leaf is checked against, so
        // a CA made again from its stored key issues certificates its old
        // certificate verifies: these parameters must not change.
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "Nephele demo CA");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    }

    /// A new CA in memory.
    fn new() -> Result<Self, TlsError> {
        Self::from_key(rcgen::KeyPair::generate()?)
    }

    fn from_key(key: rcgen::KeyPair) -> Result<Self, TlsError> {
        let cert = Self::params().self_signed(&key)?.der().clone();
        Ok(Self {
            cert,
            issuer: rcgen::Issuer::new(Self::params(), key),
        })
    }

    /// The key's file beside the certificate's: `ca.pem` → `ca.key`.
    pub fn key_path(pem: &Path) -> std::path::PathBuf {
        pem.with_extension("key")
    }

    /// The CA whose certificate is `pem` and whose key is beside it; made
    /// and written there when there is no key yet. A certificate without
    /// its key (written by an older version, or copied alone) is replaced,
    /// and the caller should say so: clients then need the new file.
    pub fn open(pem: &Path) -> Result<(Self, Opened), TlsError> {
        let key_path = Self::key_path(pem);
        let key_text = match std::fs::read_to_string(&key_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Self::rotate(pem)?, Opened::Created));
            }
            Err(source) => return Err(io_err(&key_path, source)),
        };
        let was_open =
            nephele_platform::fs::make_private(&key_path).map_err(|e| io_err(&key_path, e))?;
        let key = rcgen::KeyPair::from_pem(&key_text).map_err(|e| TlsError::Pem {
            path: key_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut ca = Self::from_key(key)?;
        match nephele_api::trust::read_cert_pem(pem) {
            // read_cert_pem refuses a file without a certificate.
            Ok(mut certs) => {
                let cert = certs.swap_remove(0);
                if !contains(cert.as_ref(), &ca.public_key()) {
                    return Err(TlsError::Pem {
                        path: pem.display().to_string(),
                        reason: format!(
                            "not the certificate of the key in {} (restore the pair, or make a new CA with `nephele-server new-ca`)",
                            key_path.display()
                        ),
                    });
                }
                ca.cert = cert;
            }
            // The key alone: its certificate is made again, and verifies
            // what the old one did (same name, same key).
            Err(_) if !pem.exists() => write_cert_pem(pem, &ca.cert)?,
            Err(e) => {
                let reason = match e {
                    nephele_api::trust::TrustError::Pem { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Err(TlsError::Pem {
                    path: pem.display().to_string(),
                    reason,
                });
            }
        }
        let opened = if was_open {
            Opened::KeptKeyWasOpen
        } else {
            Opened::Kept
        };
        Ok((ca, opened))
    }

    /// A new CA written over `pem` and its key: the explicit rotation.
    /// Clients and gateways must be given the new certificate.
    pub fn rotate(pem: &Path) -> Result<Self, TlsError> {
        let ca = Self::new()?;
        let key_path = Self::key_path(pem);
        nephele_platform::fs::write_private(&key_path, ca.issuer.key().serialize_pem().as_bytes())
            .map_err(|e| io_err(&key_path, e))?;
        write_cert_pem(pem, &ca.cert)?;
        Ok(ca)
    }

    /// The CA's certificate (DER), which clients trust.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    fn public_key(&self) -> Vec<u8> {
        use rcgen::PublicKeyData;
        self.issuer.key().subject_public_key_info()
    }

    /// A certificate for `names` (DNS names or IP addresses) with a key of
    /// its own, issued at each start: clients trust the CA, not the leaf.
    pub fn issue(&self, names: &[String]) -> Result<GatewayIdentity, TlsError> {
        use rcgen::{CertificateParams, DnType, KeyPair, SanType};
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name
            .push(DnType::CommonName, "Nephele gateway");
        leaf.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &self.issuer)?;
        Ok(GatewayIdentity {
            chain: vec![leaf_cert.der().clone(), self.cert.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            ca: Some(self.cert.clone()),
        })
    }
}

/// Whether `der` holds `part` verbatim. DER is canonical, so a key's
/// SubjectPublicKeyInfo appears in its certificate byte for byte: enough to
/// tell a certificate from another key's without an X.509 parser.
fn contains(der: &[u8], part: &[u8]) -> bool {
    !part.is_empty() && der.windows(part.len()).any(|w| w == part)
}

fn io_err(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads a certificate chain and key from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<GatewayIdentity, TlsError> {
    let pem_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, &e))?;
    if chain.is_empty() {
        return Err(pem_err(cert, &"no certificate in file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, &e))?;
    Ok(GatewayIdentity {
        chain,
        key: key_der,
        ca: None,
    })
}

/// Writes `der` as a PEM certificate to `path`.
pub fn write_cert_pem(path: &Path, der: &CertificateDer<'_>) -> Result<(), TlsError> {
    let pem = pem_encode("CERTIFICATE", der.as_ref());
    std::fs::write(path, pem).map_err(|source| io_err(path, source))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    // rcgen's own PEM writer works on its types only; this is the ten-line
    // RFC 7468 encoding for a DER blob we already hold.
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The QUIC server configuration of a gateway presenting `id`.
pub fn quic_server_config(id: &GatewayIdentity) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    tls.alpn_protocols = vec![nephele_protocol::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(nephele_api::trust::transport_config()));
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pem_round_trips() {
        let id = generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("nephele-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ca.pem");
        let ca = id.ca.clone().unwrap();
        write_cert_pem(&p, &ca).unwrap();
        assert_eq!(nephele_api::trust::read_cert_pem(&p).unwrap(), vec![ca]);
        std::fs::write(&p, "not a certificate").unwrap();
        assert!(nephele_api::trust::read_cert_pem(&p).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A leaf `ca` issued for "localhost", checked against `trusted` as a
    /// client checks a gateway.
    fn verifies(trusted: &CertificateDer<'static>, ca: &Ca) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{ServerName, UnixTime};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted.clone())?;
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let id = ca.issue(&["localhost".into()]).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        v.verify_server_cert(&id.chain[0], &id.chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_ca_is_made_once_and_kept_across_opens() {
        let dir = std::env::temp_dir().join(format!("nephele-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ca.pem");
        let (first, opened) = Ca::open(&pem).unwrap();
        assert_eq!(opened, Opened::Created);
        let trusted = first.cert().clone();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&Ca::key_path(&pem)), 0o600);
            // A key others could read is closed, and said to have been open.
            std::fs::set_permissions(Ca::key_path(&pem), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            let (_, opened) = Ca::open(&pem).unwrap();
            assert_eq!(opened, Opened::KeptKeyWasOpen);
            assert_eq!(mode(&Ca::key_path(&pem)), 0o600);
        }
        let (again, opened) = Ca::open(&pem).unwrap();
        assert_eq!(opened, Opened::Kept);
        assert_eq!(again.cert(), &trusted);
        verifies(&trusted, &again).unwrap();
        // The key alone: the certificate is made again, and what trusted
        // the old one trusts what the CA issues.
        std::fs::remove_file(&pem).unwrap();
        let (remade, opened) = Ca::open(&pem).unwrap();
        assert_eq!(opened, Opened::Kept);
        assert!(pem.exists());
        verifies(&trusted, &remade).unwrap();
        // A stranger's CA certificate beside this key is refused by name.
        let other = Ca::new().unwrap();
        write_cert_pem(&pem, other.cert()).unwrap();
        let e = Ca::open(&pem).err().unwrap().to_string();
        assert!(e.contains("not the certificate of the key"), "{e}");
        assert!(verifies(&trusted, &other).is_err());
        // Rotation is explicit, and what trusted the old CA refuses the new.
        let rotated = Ca::rotate(&pem).unwrap();
        assert!(verifies(&trusted, &rotated).is_err());
        let (reopened, opened) = Ca::open(&pem).unwrap();
        assert_eq!(opened, Opened::Kept);
        assert_eq!(reopened.cert(), rotated.cert());
        let _ = std::fs::remove_dir_all(dir);
    }
}
