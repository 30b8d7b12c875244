//! `nephele-server`: run the host, a gateway, or both.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nephele_service::gateway::{Gateway, GatewayConfig};
use nephele_service::host::{Host, HostConfig};
use nephele_service::tls;

#[derive(Debug, Parser)]
#[command(
    name = "nephele-server",
    version,
    about = "The Nephele reference service: desktop host and gateway"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, clap::Args)]
struct HostArgs {
    /// UDP address gateways send sessions to.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Append every input event received to this file, one JSON object per line.
    #[arg(long, value_name = "PATH")]
    record_input: Option<PathBuf>,
    /// Video bitrate per session in bit/s (default: from the picture size).
    #[arg(long, default_value_t = 0)]
    bitrate: u32,
}

#[derive(Debug, clap::Args)]
struct GatewayArgs {
    /// UDP address for QUIC from clients.
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// The desktop host's UDP address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7400")]
    host: SocketAddr,
    /// Certificate chain (PEM) presented to clients.
    #[arg(long, requires = "key", value_name = "PEM")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of the certificate.
    #[arg(long, requires = "cert", value_name = "PEM")]
    key: Option<PathBuf>,
    /// Without --cert: generate a CA and certificate, writing the CA for clients here.
    #[arg(long, value_name = "PATH", default_value = "nephele-ca.pem")]
    ca_out: PathBuf,
    /// Names the generated certificate is valid for.
    #[arg(long = "name", value_name = "NAME", default_values = ["localhost", "127.0.0.1", "::1"])]
    names: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Run a desktop host (the built-in demo desktop).
    Host(HostArgs),
    /// Run a gateway relaying QUIC clients to a host.
    Gateway(GatewayArgs),
    /// Run a host and a gateway in one process.
    All {
        #[command(flatten)]
        host: HostArgs,
        /// UDP address for QUIC from clients.
        #[arg(long, default_value = "127.0.0.1:7443")]
        gateway_listen: SocketAddr,
        /// Write the generated CA certificate here for clients (`--ca`).
        #[arg(long, value_name = "PATH", default_value = "nephele-ca.pem")]
        ca_out: PathBuf,
    },
}

/// Prints failures as one readable chain ("what we tried: why it failed"),
/// without the backtrace anyhow adds when `RUST_BACKTRACE` is set.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nephele-server: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.role {
        Role::Host(h) => {
            let _host = start_host(&h)?;
            wait_for_ctrl_c()
        }
        Role::Gateway(g) => {
            let identity = match (&g.cert, &g.key) {
                (Some(c), Some(k)) => tls::load(c, k)?,
                _ => generate_identity(&g.names, &g.ca_out)?,
            };
            run_gateway(GatewayConfig {
                listen: g.listen,
                host: g.host,
                identity,
            })
        }
        Role::All {
            host,
            gateway_listen,
            ca_out,
        } => {
            let h = start_host(&host)?;
            let identity = generate_identity(
                &["localhost".into(), "127.0.0.1".into(), "::1".into()],
                &ca_out,
            )?;
            let res = run_gateway(GatewayConfig {
                listen: gateway_listen,
                host: h.local_addr(),
                identity,
            });
            h.shutdown();
            res
        }
    }
}

fn start_host(h: &HostArgs) -> Result<Host> {
    Host::start(HostConfig {
        listen: h.listen,
        record_input: h.record_input.clone(),
        bitrate: h.bitrate,
    })
    .context("starting the host")
}

fn generate_identity(names: &[String], ca_out: &std::path::Path) -> Result<tls::GatewayIdentity> {
    let id = tls::generate(names).context("generating the gateway certificate")?;
    if let Some(ca) = &id.ca {
        tls::write_cert_pem(ca_out, ca)?;
        eprintln!(
            "CA certificate for clients written to {} (pass it to `nephele connect --ca`)",
            ca_out.display()
        );
    }
    Ok(id)
}

fn run_gateway(cfg: GatewayConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("nephele-gateway")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let gw = Gateway::start(cfg).context("starting the gateway")?;
        eprintln!("gateway listening on {}", gw.local_addr());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        gw.close();
        Ok(())
    })
}

fn wait_for_ctrl_c() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(tokio::signal::ctrl_c())
        .context("waiting for Ctrl-C")
}
