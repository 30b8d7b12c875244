//! `nephele demo`: the reference service started in-process on loopback —
//! a desktop host and a gateway with a freshly generated CA — so the client
//! can connect through the real QUIC and UDP path without any setup.

use std::net::SocketAddr;
use std::path::PathBuf;

use nephele_service::gateway::{Gateway, GatewayConfig};
use nephele_service::host::{Host, HostConfig};
use rustls::pki_types::CertificateDer;

/// Errors starting the demo service.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The host failed to start.
    #[error(transparent)]
    Host(#[from] nephele_service::host::HostError),
    /// The gateway failed to start.
    #[error(transparent)]
    Gateway(#[from] nephele_service::gateway::GatewayError),
    /// Certificates could not be generated.
    #[error(transparent)]
    Tls(#[from] nephele_service::tls::TlsError),
    /// The runtime could not start.
    #[error("starting the demo service runtime: {0}")]
    Runtime(std::io::Error),
}

/// Demo service settings.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Passed to the host's `--record-input`.
    pub record_input: Option<PathBuf>,
}

/// The running service; stops when dropped.
pub struct DemoService {
    gateway: Gateway,
    host: Option<Host>,
    // Dropped last: the gateway's tasks run on it.
    rt: tokio::runtime::Runtime,
    ca: CertificateDer<'static>,
}

impl std::fmt::Debug for DemoService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoService")
            .field("gateway", &self.gateway.local_addr())
            .finish()
    }
}

impl DemoService {
    /// Starts a host and a gateway on 127.0.0.1 with ephemeral ports.
    pub fn start(opts: DemoOptions) -> Result<Self, DemoError> {
        let host = Host::start(HostConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            record_input: opts.record_input,
            bitrate: 0,
        })?;
        let identity = nephele_service::tls::generate(&["localhost".into(), "127.0.0.1".into()])?;
        let ca = identity.ca.clone().ok_or_else(|| {
            DemoError::Tls(nephele_service::tls::TlsError::Pem {
                path: "(generated)".into(),
                reason: "no CA generated".into(),
            })
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nephele-demo-gw")
            .enable_all()
            .build()
            .map_err(DemoError::Runtime)?;
        let host_addr = host.local_addr();
        let gateway = rt.block_on(async {
            Gateway::start(GatewayConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                host: host_addr,
                identity,
            })
        })?;
        Ok(Self {
            gateway,
            host: Some(host),
            rt,
            ca,
        })
    }

    /// The gateway's QUIC address.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway.local_addr()
    }

    /// The CA the gateway's certificate is signed by.
    pub fn ca(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// The host, for tests that watch its counters.
    pub fn host(&self) -> Option<&Host> {
        self.host.as_ref()
    }
}

impl Drop for DemoService {
    fn drop(&mut self) {
        self.gateway.close();
        if let Some(h) = self.host.take() {
            h.shutdown();
        }
        let _ = &self.rt;
    }
}
