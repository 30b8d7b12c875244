//! What certificate a service presents, so that a person can decide
//! whether to trust it (the launcher's Trust page shows its fingerprint).
//!
//! Inspecting trusts nothing: its verifier records the chain the server
//! presents and then fails the handshake, so no request, and no password,
//! ever travels over an inspected connection.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Why the chain could not be had.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The address is not `https://HOST[:PORT]`.
    #[error("`{0}` is not an https://HOST[:PORT] address")]
    Url(String),
    /// No TCP connection or no TLS answer.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable {
        /// `HOST:PORT`.
        addr: String,
        /// What the network said.
        reason: String,
    },
}

/// The certificate chain the server at `url` presents, leaf first.
pub fn presented_chain(
    url: &str,
    timeout: Duration,
) -> Result<Vec<CertificateDer<'static>>, InspectError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| InspectError::Url(url.into()))?
        .trim_end_matches('/');
    let (host, port) = split_host_port(rest).ok_or_else(|| InspectError::Url(url.into()))?;
    let addr = format!("{host}:{port}");
    let unreachable = |reason: String| InspectError::Unreachable {
        addr: addr.clone(),
        reason,
    };
    let sock = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?
        .next()
        .ok_or_else(|| unreachable("no address".into()))?;
    let mut tcp =
        TcpStream::connect_timeout(&sock, timeout).map_err(|e| unreachable(e.to_string()))?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        .map_err(|e| unreachable(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(None),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unreachable(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|_| InspectError::Url(url.into()))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| unreachable(e.to_string()))?;
    // The handshake ends in the recorder's refusal (or the network's).
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let ended = tls
        .write_all(b"")
        .and_then(|()| tls.read(&mut [0u8; 1]).map(|_| ()));
    let chain = recorder.chain.lock().ok().and_then(|mut c| c.take());
    chain.ok_or_else(|| {
        unreachable(
            ended
                .err()
                .map_or("no certificate presented".into(), |e| e.to_string()),
        )
    })
}

/// `HOST[:PORT]` (an IPv6 host in brackets) as the host and the port (443
/// unless given), as the `http` crate parses an authority.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let authority: ureq::http::uri::Authority = s.parse().ok()?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    // A port given (after an IPv6 host's brackets) must be a number.
    let after_host = s.rsplit_once(']').map_or(s, |(_, rest)| rest);
    let port = match (after_host.contains(':'), authority.port_u16()) {
        (true, Some(p)) => p,
        (true, None) => return None,
        (false, _) => 443,
    };
    Some((host.to_string(), port))
}

/// The SHA-256 fingerprint of a certificate as people compare them: hex
/// pairs joined by colons.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Every answer of the inspecting verifier.
fn refused() -> rustls::Error {
    rustls::Error::General("inspected, not trusted".into())
}

/// Records the presented chain and refuses it.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Option<Vec<CertificateDer<'static>>>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        if let Ok(mut c) = self.chain.lock() {
            *c = Some(chain);
        }
        Err(refused())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            split_host_port("a.example"),
            Some(("a.example".into(), 443))
        );
        assert_eq!(
            split_host_port("127.0.0.1:8443"),
            Some(("127.0.0.1".into(), 8443))
        );
        assert_eq!(split_host_port("[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(split_host_port("[::1]"), Some(("::1".into(), 443)));
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("a:port"), None);
    }

    #[test]
    fn a_closed_port_is_unreachable_not_a_chain() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = presented_chain(&format!("https://127.0.0.1:{port}"), Duration::from_secs(2));
        assert!(matches!(e, Err(InspectError::Unreachable { .. })), "{e:?}");
        assert!(matches!(
            presented_chain("http://x", Duration::from_secs(1)),
            Err(InspectError::Url(_))
        ));
    }
}
