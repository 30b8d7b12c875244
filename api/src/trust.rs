//! TLS trust for the QUIC connection between a client and a gateway: the
//! client trusts exactly the authorities it is given, or, given none, what
//! the operating system trusts (there is no "accept any certificate" mode),
//! and both ends share the transport settings.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why TLS material could not be loaded or a configuration made.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A PEM file could not be read or parsed.
    #[error("reading {path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration (a malformed certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The TLS configuration offers no cipher suite QUIC can start with.
    #[error("QUIC needs a TLS 1.3 cipher suite: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// Reads every certificate in a PEM file (a CA bundle for clients).
pub fn read_cert_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let pem = |reason: String| TrustError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in file".into()));
    }
    Ok(certs)
}

/// Silence after which either end of a client–gateway connection counts it lost.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(900);

/// Transport settings shared by both ends of the client–gateway connection.
pub fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // A dead gateway (or client) is noticed within IDLE_TIMEOUT: the client
    // then reconnects through the next gateway, so a short timeout costs a
    // cheap reconnect at worst. Keep-alives keep a paused session's quiet
    // connection from looking dead.
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        IDLE_TIMEOUT.as_millis() as u32,
    ))));
    t.keep_alive_interval(Some(Duration::from_millis(200)));
    // Room for a couple of keyframes, no more: older video queued behind a
    // slow link is worth less than dropping it (quinn drops the oldest).
    t.datagram_receive_buffer_size(Some(4 << 20));
    t.datagram_send_buffer_size(1 << 20);
    // The protocol uses one bidirectional stream (control) and two
    // unidirectional ones (input, recovery) per direction; refuse more, so a
    // peer cannot make the other side track streams without bound.
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(2));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(4));
    // Every Nephele datagram fits the 1200-byte initial MTU. Growing it
    // would only let QUIC pack several small datagrams into one packet, so
    // that one loss takes a frame's data and its parity together.
    t.mtu_discovery_config(None);
    // BBR, not Cubic: random loss on Wi-Fi or a tether is not congestion,
    // and a loss-driven window would starve the video exactly when parity
    // is repairing it. A keyframe is a burst of ~100 datagrams; the initial
    // window lets it leave at once instead of trickling out over several
    // round trips.
    let mut bbr = quinn::congestion::BbrConfig::default();
    bbr.initial_window(512 * 1024);
    t.congestion_controller_factory(Arc::new(bbr));
    t
}

/// The QUIC client configuration trusting exactly `roots`, or the
/// operating system's verifier and trust store when `roots` is empty (as
/// the directory client does, so a service with a publicly trusted
/// certificate is trusted the same way on both paths).
pub fn quic_client_config(
    roots: &[CertificateDer<'static>],
) -> Result<quinn::ClientConfig, TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = if roots.is_empty() {
        let verifier = rustls_platform_verifier::Verifier::new(provider)?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(r.clone())?;
        }
        builder.with_root_certificates(store).with_no_client_auth()
    };
    tls.alpn_protocols = vec![nephele_protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config()));
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("nephele-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ca.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        let e = read_cert_pem(&p).unwrap_err().to_string();
        assert!(e.contains("ca.pem") && e.contains("no certificate"), "{e}");
        assert!(read_cert_pem(&dir.join("missing.pem")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
