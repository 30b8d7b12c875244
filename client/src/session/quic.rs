//! Opening a QUIC connection to a gateway: a UDP socket sized for keyframe
//! bursts, TLS trusting exactly the session's authorities, the handshake
//! bounded in time, and its failures told apart (no answer, a certificate
//! not trusted, anything else).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::SessionError;
use super::plain_udp::PlainUdp;

/// An open connection and the endpoint it lives on.
pub(super) struct Connected {
    pub conn: quinn::Connection,
    pub endpoint: quinn::Endpoint,
}

fn client_socket(gateway: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind: SocketAddr = if gateway.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    // A keyframe arrives as a burst of ~100 datagrams; the default receive
    // buffer can overflow before the network thread runs. Best effort.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&bind.into())?;
    Ok(s.into())
}

/// A client endpoint for reaching `gateway`: on quinn's own socket, with
/// the network stack's offloads, or where the stack refuses its options
/// (Wine's does), on plain `sendto`/`recvfrom` ([`PlainUdp`]).
fn endpoint(gateway: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let runtime = Arc::new(quinn::TokioRuntime);
    let refused = match quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        client_socket(gateway)?,
        runtime.clone(),
    ) {
        Ok(e) => return Ok(e),
        Err(e) => e,
    };
    tracing::warn!(
        error = %refused,
        "the network stack refused the UDP socket options QUIC's offloads need; \
         sending one datagram per call instead"
    );
    plain_endpoint(gateway, runtime)
}

/// A client endpoint on a [`PlainUdp`] socket.
fn plain_endpoint(
    gateway: SocketAddr,
    runtime: Arc<quinn::TokioRuntime>,
) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        Arc::new(PlainUdp::new(client_socket(gateway)?)?),
        runtime,
    )
}

/// Connects to `gateway`, whose certificate must name `server_name` and
/// be signed by one of `roots`; the handshake may take `handshake`.
pub(super) async fn connect(
    gateway: SocketAddr,
    server_name: &str,
    roots: &[rustls::pki_types::CertificateDer<'static>],
    handshake: Duration,
) -> Result<Connected, SessionError> {
    let mut client_cfg = nephele_api::trust::quic_client_config(roots)?;
    // The handshake may take `handshake`; once connected the gateway's
    // shorter idle timeout applies (the smaller side wins), so a dead
    // gateway is noticed quickly.
    let mut transport = nephele_api::trust::transport_config();
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(handshake).ok());
    client_cfg.transport_config(Arc::new(transport));
    let mut endpoint = endpoint(gateway)?;
    endpoint.set_default_client_config(client_cfg);
    let connecting =
        endpoint
            .connect(gateway, server_name)
            .map_err(|source| SessionError::Connect {
                addr: gateway,
                source,
            })?;
    let conn = match tokio::time::timeout(handshake, connecting).await {
        Err(_) | Ok(Err(quinn::ConnectionError::TimedOut)) => {
            return Err(SessionError::NoAnswer { addr: gateway });
        }
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let text = e.to_string();
            return Err(match text.split_once("invalid peer certificate: ") {
                Some((_, detail)) => SessionError::Certificate {
                    addr: gateway,
                    detail: detail.to_string(),
                },
                None => e.into(),
            });
        }
    };
    Ok(Connected { conn, endpoint })
}

/// A read error on the control stream, as the session tells it: a gateway
/// that closed the connection because it refused the session token says
/// why in the close reason.
pub(super) fn read_error(e: quinn::ReadError) -> SessionError {
    match &e {
        quinn::ReadError::ConnectionLost(c) => closed(c).unwrap_or_else(|| e.into()),
        _ => e.into(),
    }
}

/// A connection error as the session tells it (see [`closed`]).
pub(super) fn named(e: SessionError) -> SessionError {
    match &e {
        SessionError::Connection(c) => closed(c).unwrap_or(e),
        _ => e,
    }
}

/// The gateway's close, when its code says why in the session's terms: a
/// refused token, a session in use, a session opened on another device.
fn closed(c: &quinn::ConnectionError) -> Option<SessionError> {
    use nephele_protocol::wire::GoodbyeReason;
    let quinn::ConnectionError::ApplicationClosed(c) = c else {
        return None;
    };
    let code = |r: GoodbyeReason| quinn::VarInt::from_u32(r as u32);
    if c.error_code == code(GoodbyeReason::Unauthorized) {
        let reason = String::from_utf8_lossy(&c.reason);
        let reason = reason.strip_prefix("session refused: ").unwrap_or(&reason);
        return Some(SessionError::Refused(reason.to_string()));
    }
    if c.error_code == code(GoodbyeReason::InUse) {
        return Some(SessionError::InUse);
    }
    if c.error_code == code(GoodbyeReason::Ended) {
        return Some(SessionError::EndedByService);
    }
    (c.error_code == code(GoodbyeReason::Replaced)).then_some(SessionError::Replaced)
}

/// Whether an error means the path to the service broke (the gateway died
/// or the network went away), so reconnecting may save the session, rather
/// than that the service ended or refused it.
pub(super) fn lost_link(e: &SessionError) -> bool {
    use nephele_protocol::wire::GoodbyeReason;
    let conn = match e {
        SessionError::Connection(c)
        | SessionError::Read(quinn::ReadError::ConnectionLost(c))
        | SessionError::Write(quinn::WriteError::ConnectionLost(c)) => c,
        // The gateway is shutting down, or the host is (the gateway will
        // attach the session to its backup).
        SessionError::Ended(GoodbyeReason::Shutdown) => return true,
        _ => return false,
    };
    match conn {
        quinn::ConnectionError::TimedOut
        | quinn::ConnectionError::Reset
        | quinn::ConnectionError::TransportError(_)
        | quinn::ConnectionError::ConnectionClosed(_) => true,
        quinn::ConnectionError::ApplicationClosed(a) => {
            a.error_code == quinn::VarInt::from_u32(GoodbyeReason::Shutdown as u32)
        }
        _ => false,
    }
}
