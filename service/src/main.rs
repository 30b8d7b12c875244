//! `nephele-server`: run the directory, a gateway, a desktop host, or all of
//! them on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use nephele_api::DirectoryClient;
use nephele_api::directory::GatewayInfo;
use nephele_protocol::activity::IdlePolicy;
use nephele_service::chaos::Chaos;
use nephele_service::directory::{Directory, DirectoryConfig};
use nephele_service::embedded::{Embedded, EmbeddedOptions, PopSpec};
use nephele_service::gateway::{Credentials, Gateway, GatewayConfig};
use nephele_service::host::{Host, HostConfig};
use nephele_service::link::LinkKey;
use nephele_service::screen::DesktopSource;
use nephele_service::tls;
use nephele_service::token::Verifier;

mod admin_cli;

#[derive(Debug, Parser)]
#[command(
    name = "nephele-server",
    version,
    about = "The Nephele reference service: directory, gateway and desktop host"
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
    /// Most video bits per second a session sends; congestion control
    /// adapts below it (default: from the picture size).
    #[arg(long, default_value_t = 0)]
    bitrate: u32,
    /// Most picture pixels a second one session may have (width × height ×
    /// frames a second); a session asking more gets a lower frame rate
    /// (down to 30), then a smaller picture. 0: 1920×1080 at 120 fps.
    #[arg(long, value_name = "PIXELS", default_value_t = 0)]
    max_pixel_rate: u64,
    /// The codecs offered to clients, best first, of those this system
    /// encodes: h264 (always, built in), hevc (FFmpeg's libx265), av1
    /// (FFmpeg's libaom). A client's user may choose any offered; otherwise
    /// the first the client decodes is used.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = nephele_service::host::parse_codec, default_value = "h264,hevc,av1")]
    codecs: Vec<nephele_protocol::codec::Codec>,
    /// Play a video panel on the demo desktop that changes completely every
    /// frame (as a game or a film would), so sessions use their full bitrate.
    #[arg(long)]
    motion: bool,
    /// Play a steady tone of this many hertz (20–20000) on the demo
    /// desktop, besides its click on every key press.
    #[arg(long, value_name = "HZ", value_parser = nephele_service::host::parse_tone)]
    tone: Option<f32>,
    /// Write the microphone sound the host receives to this WAV file
    /// (48 kHz, mono, 16-bit).
    #[arg(long, value_name = "PATH")]
    record_mic: Option<PathBuf>,
    /// The desktop to serve: `demo` (drawn by the host), or `x11:DISPLAY`
    /// for a running X display (Xorg or Xvfb), such as `x11::1`, captured
    /// when it changes, with input injected through XTEST.
    #[arg(long, value_name = "DESKTOP", default_value = "demo")]
    desktop: DesktopSource,
    /// With an X display: the PulseAudio source its sound is recorded
    /// from (the server is found as PulseAudio clients find it, or from
    /// $PULSE_SERVER). Default: the monitor of the default sink.
    #[arg(long, value_name = "SOURCE", default_value = nephele_service::host::DEFAULT_SOUND_SOURCE)]
    sound_source: String,
    /// On exit (Ctrl-C), write the host's counters as JSON here: frames
    /// sent, still ticks skipped, and per-frame capture-to-send time.
    #[arg(long, value_name = "PATH")]
    stats_json: Option<PathBuf>,
    /// The deployment's link key (made with `nephele-server new-link-key`):
    /// gateways and backup hosts seal their datagrams with it, and the host
    /// drops everything else unanswered. Needed by `host`; `all` keeps its
    /// own in `STATE_DIR/link.key`.
    #[arg(long, value_name = "PATH")]
    link_key_file: Option<PathBuf>,
    /// The directory's token key (`STATE_DIR/token.pub`, which the
    /// directory writes): the host then attaches a session only with a
    /// session token signed for it, and takes the session's backup from
    /// the token. Needed by `host` unless --direct; `all` uses its own
    /// directory's.
    #[arg(long, value_name = "PATH", conflicts_with = "direct")]
    token_key_file: Option<PathBuf>,
    /// Serve sessions without tokens, for gateways without a directory
    /// (`gateway --host`): any gateway holding the link key names them.
    #[arg(long)]
    direct: bool,
    /// The local account application sessions run as: a name, or a
    /// pattern with `{user}` for the session's user (`nephele-{user}`:
    /// each user's programs as their own account, made by you or by the
    /// system's directory service). The host must run as root to switch.
    /// Default: the host's own account.
    #[arg(long, value_name = "ACCOUNT")]
    app_account: Option<String>,
}

/// How a gateway or host joins the directory's lists.
#[derive(Debug, clap::Args)]
struct JoinArgs {
    /// Join this directory's lists and accept only sessions it signed
    /// (its token key is fetched from it).
    #[arg(long, value_name = "URL", requires = "service_key_file")]
    directory: Option<String>,
    /// CA certificate (PEM) of the directory's HTTPS certificate.
    #[arg(long = "directory-ca", value_name = "PEM")]
    directory_ca: Option<PathBuf>,
    /// File holding the directory's service key (`STATE_DIR/service.key`),
    /// with which the first registration is issued a key of its own.
    #[arg(long, value_name = "PATH")]
    service_key_file: Option<PathBuf>,
    /// Where the key the directory issued is kept (made when missing, the
    /// owner's alone): restarted, it is then the same member at once.
    /// Without it, it registers anew once its earlier registration lapses
    /// (three missed heartbeats).
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
}

impl JoinArgs {
    /// The directory to join, when there is one.
    fn enrolling(&self) -> Result<Option<Enrolling>> {
        self.directory
            .as_deref()
            .map(|url| {
                enrolling(
                    url,
                    self.directory_ca.as_deref(),
                    self.service_key_file.as_deref(),
                )
            })
            .transpose()
    }
}

/// How a host enrols with the directory.
#[derive(Debug, clap::Args)]
struct EnrolArgs {
    #[command(flatten)]
    join: JoinArgs,
    /// Host id in the directory.
    #[arg(long, default_value = "host-1")]
    id: String,
    /// The site the host is in: the PoP (a gateway's --pop) beside it.
    /// Sessions go to the nearest site with room.
    #[arg(long, default_value = "pop-1")]
    site: String,
    /// Most sessions the host serves at once.
    #[arg(long, default_value_t = 16)]
    capacity: u32,
    /// UDP address gateways and backup hosts should send to (default: --listen).
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// Where application sessions' homes are kept while they run (the
    /// users' profiles, unpacked; each removed at log-off). Default: a
    /// directory named after the host id in the system's temporary one.
    #[arg(long, value_name = "DIR")]
    apps_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CertArgs {
    /// Certificate chain (PEM) to present.
    #[arg(long, requires = "key", value_name = "PEM")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of the certificate.
    #[arg(long, requires = "cert", value_name = "PEM")]
    key: Option<PathBuf>,
    /// Names a generated certificate is valid for.
    #[arg(long = "name", value_name = "NAME", default_values = ["localhost", "127.0.0.1", "::1"])]
    names: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct GatewayArgs {
    /// UDP address for QUIC from clients.
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// UDP address answering latency probes.
    #[arg(long, default_value = "127.0.0.1:7444")]
    probe_listen: SocketAddr,
    /// Desktop host for direct sessions (without --directory).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7400")]
    host: SocketAddr,
    #[command(flatten)]
    join: JoinArgs,
    /// The deployment's link key (the file given to its hosts), which
    /// datagrams to and from hosts are sealed with.
    #[arg(long, value_name = "PATH")]
    link_key_file: PathBuf,
    /// Gateway id in the directory.
    #[arg(long, default_value = "gw-1")]
    id: String,
    /// Point of presence this gateway serves.
    #[arg(long, default_value = "pop-1")]
    pop: String,
    /// Region label shown to people.
    #[arg(long, default_value = "local")]
    region: String,
    /// QUIC address clients should use (default: --listen).
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// Probe address clients should use (default: --probe-listen).
    #[arg(long, value_name = "ADDR")]
    advertise_probe: Option<SocketAddr>,
    /// Sessions at which the gateway reports full load.
    #[arg(long, default_value_t = 64)]
    capacity: u32,
    /// Without --cert: generate a CA and certificate, writing the CA for clients here.
    #[arg(long, value_name = "PATH", default_value = "nephele-ca.pem")]
    ca_out: PathBuf,
    #[command(flatten)]
    cert: CertArgs,
}

#[derive(Debug, clap::Args)]
struct DirectoryArgs {
    /// TCP address for HTTPS.
    #[arg(long, default_value = "127.0.0.1:7480")]
    listen: SocketAddr,
    /// Where the database, the generated CA (`ca.pem`) and the gateways'
    /// service key (`service.key`) are kept.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Keep users, sessions, keys and the live lists in this PostgreSQL
    /// database instead of STATE_DIR's embedded one, shared by every
    /// directory given the same one (`postgres://USER:PASSWORD@HOST:PORT/DB`
    /// or libpq's `host=… user=… dbname=…`).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Create or update a user who may open the demo desktop (`NAME[@TENANT]:PASSWORD`).
    #[arg(long, value_name = "NAME:PASSWORD")]
    demo_user: Vec<String>,
    /// When sessions without input are warned, paused (no capture or
    /// encoding) and suspended (resources released, state kept), e.g.
    /// `warn=14m,pause=15m,suspend=60m`; `never` turns pausing off.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "warn=14m,pause=15m,suspend=60m"
    )]
    idle_policy: IdlePolicy,
    /// Most picture pixels a second (width × height × frames a second) one
    /// session may stream, written into its token; hosts apply the lower of
    /// this and their own --max-pixel-rate. Default: the hosts' caps alone.
    #[arg(long, value_name = "PIXELS")]
    session_max_pixel_rate: Option<u64>,
    #[command(flatten)]
    cert: CertArgs,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Run a desktop host (the built-in demo desktop, or a running X
    /// display with --desktop x11:DISPLAY), enrolled with a directory.
    Host {
        #[command(flatten)]
        host: Box<HostArgs>,
        #[command(flatten)]
        enrol: EnrolArgs,
    },
    /// Run a gateway relaying QUIC clients to hosts.
    Gateway(Box<GatewayArgs>),
    /// Run the directory: sign-in, catalog, gateway registry, sessions.
    Directory(DirectoryArgs),
    /// Run a directory, one gateway per --pop (behind that much added delay)
    /// and two hosts (each the other's backup) on loopback; prints the
    /// directory URL on stdout.
    All {
        #[command(flatten)]
        host: Box<HostArgs>,
        /// The directory's HTTPS address.
        #[arg(long, default_value = "127.0.0.1:7480")]
        directory_listen: SocketAddr,
        /// Where the directory keeps its state; the CA clients must trust is
        /// written to `DIR/ca.pem`.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Keep the directory's state in this PostgreSQL database instead
        /// (as `directory --database`).
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// A user who may open the demo desktop (`NAME[@TENANT]:PASSWORD`;
        /// also $NEPHELE_DEMO_USER, which other users cannot read).
        #[arg(long, value_name = "NAME:PASSWORD")]
        demo_user: Vec<String>,
        /// When sessions without input are warned, paused and suspended
        /// (`warn=2s,pause=3s,suspend=6s`; `never` turns pausing off).
        #[arg(
            long,
            value_name = "POLICY",
            default_value = "warn=14m,pause=15m,suspend=60m"
        )]
        idle_policy: IdlePolicy,
        /// A point of presence with this round trip added (`NAME:RTT_MS`; repeat).
        #[arg(long = "pop", value_name = "NAME:RTT_MS", default_values = ["pop-local:0"])]
        pops: Vec<PopSpec>,
        /// A simulated network in front of every PoP, per direction
        /// (`rtt=40ms,jitter=5ms,loss=5%,burst=3,bw=20mbit,blackout=3s+500ms`),
        /// then changes over time as `; @5s bw=5mbit; @10s bw=20mbit`.
        #[arg(long, value_name = "SPEC", default_value = "")]
        network: nephele_service::impair::Impairment,
        /// Kill parts of the service mid-session, as a crash would:
        /// `kill-gateway@3s,kill-host@6s` (times from the first picture a
        /// host sends; the gateway relaying a session, the host serving it).
        #[arg(long, value_name = "PLAN", default_value = "")]
        chaos: Chaos,
        /// Stop when standard input closes, as well as on Ctrl-C: for a
        /// program that starts this server beside itself (`nephele demo`)
        /// and holds its input, so the server never outlives it.
        #[arg(long)]
        quit_on_eof: bool,
    },
    /// Administer a running directory over its HTTPS API: tenants, users,
    /// catalog entries, grants, gateways, hosts, sessions, notices and the
    /// audit log.
    Admin(Box<admin_cli::AdminArgs>),
    /// Make a new certificate authority at PATH, its key beside it
    /// (`ca.pem` → `ca.key`), replacing the one there. Roles keep their CA
    /// across restarts; this is how it changes. Restart the roles using it
    /// and give clients (`--ca`) and gateways (`--directory-ca`) the new file.
    NewCa {
        /// The CA certificate (`STATE_DIR/ca.pem` for a directory, the
        /// `--ca-out` file for a gateway).
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Make a new link key at PATH (readable by its owner only), replacing
    /// any there. Give the file to every host (`--link-key-file`) and
    /// gateway (`--link-key-file`) of the deployment, then restart them.
    NewLinkKey {
        /// Where to write it.
        #[arg(value_name = "PATH")]
        path: PathBuf,
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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // RUST_LOG as `target=level` directives (no span filters: the
    // lighter Targets filter, without a regex engine).
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::level_filters::LevelFilter::INFO)
        });
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    match Cli::parse().role {
        Role::Host { host, enrol } => host_role(&host, &enrol),
        Role::Gateway(g) => gateway(*g),
        Role::Directory(d) => directory(d),
        Role::Admin(a) => admin_cli::run(*a),
        Role::NewCa { path } => {
            tls::Ca::rotate(&path)
                .with_context(|| format!("making a new CA at {}", path.display()))?;
            eprintln!(
                "a new CA is in {} (key {}): restart the roles using it and give clients and gateways the new certificate",
                path.display(),
                tls::Ca::key_path(&path).display()
            );
            Ok(())
        }
        Role::NewLinkKey { path } => {
            LinkKey::create(&path).context("making a new link key")?;
            eprintln!(
                "a new link key is in {}: give it to every host and gateway (--link-key-file) and restart them",
                path.display()
            );
            Ok(())
        }
        Role::All {
            host,
            directory_listen,
            state_dir,
            database,
            demo_user,
            pops,
            network,
            idle_policy,
            chaos,
            quit_on_eof,
        } => {
            let mut users = parse_users(&demo_user)?;
            if let Ok(u) = std::env::var("NEPHELE_DEMO_USER") {
                users.extend(parse_users(&[u]).context("in $NEPHELE_DEMO_USER")?);
            }
            let rt = runtime(2)?;
            let mut host_cfg = host_config(&host);
            host_cfg.apps = Some(apps_config(&host, state_dir.join("apps"))?);
            let svc = rt.block_on(Embedded::start(EmbeddedOptions {
                state_dir,
                database,
                directory_listen,
                demo_users: users,
                pops,
                host: host_cfg,
                network,
                idle_policy,
            }))?;
            eprintln!("CA certificate for clients in {}", svc.ca_path().display());
            for p in &svc.pops {
                eprintln!(
                    "gateway {} at {} (probe {}) for {}; its own socket {} behind the delay relay",
                    p.info.id,
                    p.info.address,
                    p.info.probe_address,
                    p.info.pop,
                    p.gateway.local_addr()
                );
            }
            // The one line on stdout: what scripts pass to `--directory`.
            println!("{}", svc.url());
            let done = std::sync::atomic::AtomicBool::new(false);
            let res = std::thread::scope(|scope| {
                if !chaos.is_empty() {
                    let (svc, chaos, done) = (&svc, &chaos, &done);
                    std::thread::Builder::new()
                        .name("nephele-chaos".into())
                        .spawn_scoped(scope, move || chaos.run(svc, done))
                        .context("starting the chaos thread")?;
                }
                let res = rt.block_on(until_stopped(quit_on_eof));
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                res
            });
            write_stats(host.stats_json.as_deref(), svc.hosts())?;
            svc.shutdown();
            res
        }
    }
}

fn host_role(h: &HostArgs, e: &EnrolArgs) -> Result<()> {
    let path = h.link_key_file.as_deref().context(
        "a host needs the deployment's link key: make one with `nephele-server new-link-key PATH` and pass it with --link-key-file PATH (to the gateways too)",
    )?;
    let mut cfg = host_config(h);
    cfg.link = LinkKey::read(path).context("reading the link key")?;
    let enrolment = e.join.enrolling()?;
    cfg.tokens = match (&h.token_key_file, &enrolment, h.direct) {
        (Some(p), _, _) => Some(read_token_key(p)?),
        (None, Some(en), _) => Some(en.verifier.clone()),
        (None, None, true) => None,
        (None, None, false) => bail!(
            "a host needs the directory to check who may open a session: pass --directory URL --service-key-file STATE_DIR/service.key to enrol with it (or --token-key-file STATE_DIR/{TOKEN_KEY_FILE} without enrolling), or --direct for gateways without a directory"
        ),
    };
    if enrolment.is_some() {
        let dir = e
            .apps_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("nephele-apps-{}", e.id)));
        cfg.apps = Some(apps_config(h, dir)?);
    }
    let host = Host::start(cfg).context("starting the host")?;
    if let Some(en) = enrolment {
        let info = nephele_api::directory::HostInfo {
            id: e.id.clone(),
            site: e.site.clone(),
            address: e.advertise.unwrap_or(host.local_addr()).to_string(),
            capacity: e.capacity,
        };
        let creds = Credentials {
            service_key: en.service_key,
            key_file: e.join.key_file.clone(),
        };
        host.enrol(en.client, creds, info);
    }
    let res = runtime(1)?.block_on(ctrl_c());
    write_stats(h.stats_json.as_deref(), std::slice::from_ref(&host))?;
    res
}

/// What a gateway or host needs to join a directory.
struct Enrolling {
    client: DirectoryClient,
    service_key: String,
    verifier: Verifier,
}

/// The directory at `url` (trusting `ca`, else the system), the service
/// key from `key_path`, and the directory's token key, fetched.
fn enrolling(url: &str, ca: Option<&Path>, key_path: Option<&Path>) -> Result<Enrolling> {
    let roots = match ca {
        Some(p) => nephele_api::trust::read_cert_pem(p)
            .with_context(|| format!("loading the directory CA {}", p.display()))?,
        None => Vec::new(),
    };
    let client = DirectoryClient::new(url, &roots)?;
    let key_path = key_path.context("--service-key-file")?;
    let key = std::fs::read_to_string(key_path)
        .with_context(|| format!("reading the service key {}", key_path.display()))?;
    let pk = client
        .public_key()
        .context("fetching the directory's token key")?;
    let verifier = Verifier::from_public_b64(&pk.public_key)?;
    Ok(Enrolling {
        client,
        service_key: key.trim().to_string(),
        verifier,
    })
}

/// Where and as whom application sessions run; a fixed account is looked
/// up now, so a wrong name stops the host at its start.
fn apps_config(h: &HostArgs, dir: PathBuf) -> Result<nephele_service::host::AppsConfig> {
    if let Some(a) = h.app_account.as_deref().filter(|a| !a.contains("{user}")) {
        nephele_platform::child::account(a).context("--app-account")?;
    }
    Ok(nephele_service::host::AppsConfig {
        dir,
        account: h.app_account.clone(),
    })
}

fn host_config(h: &HostArgs) -> HostConfig {
    HostConfig {
        listen: h.listen,
        record_input: h.record_input.clone(),
        bitrate: h.bitrate,
        max_pixel_rate: h.max_pixel_rate,
        codecs: h.codecs.clone(),
        motion: h.motion,
        tone_hz: h.tone,
        record_mic: h.record_mic.clone(),
        desktop: h.desktop.clone(),
        sound_source: h.sound_source.clone(),
        ..HostConfig::default()
    }
}

fn parse_users(list: &[String]) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|u| {
            let (name, pw) = u
                .split_once(':')
                .with_context(|| format!("--demo-user `{u}` should be NAME:PASSWORD"))?;
            if name.is_empty() || pw.is_empty() {
                bail!("--demo-user `{u}` needs both a name and a password");
            }
            Ok((name.to_string(), pw.to_string()))
        })
        .collect()
}

fn identity(c: &CertArgs, ca_out: &Path) -> Result<tls::GatewayIdentity> {
    if let (Some(cert), Some(key)) = (&c.cert, &c.key) {
        return Ok(tls::load(cert, key)?);
    }
    let ca = open_ca(ca_out)?;
    ca.issue(&c.names).context("issuing a certificate")
}

/// The CA kept at `pem` (its key beside it), made there the first time;
/// says what a person must know about it.
fn open_ca(pem: &Path) -> Result<tls::Ca> {
    let had_cert = pem.exists();
    let (ca, opened) = tls::Ca::open(pem).context("opening the certificate authority")?;
    let key = tls::Ca::key_path(pem);
    match opened {
        tls::Opened::Created if had_cert => eprintln!(
            "{} had no key beside it ({}): a new CA replaces it; give clients (`nephele … --ca`) and gateways the new file",
            pem.display(),
            key.display()
        ),
        tls::Opened::Created => eprintln!(
            "CA certificate for clients written to {} (pass it to `nephele … --ca`); its key, kept for restarts, is {}",
            pem.display(),
            key.display()
        ),
        tls::Opened::Kept => {
            tracing::info!(ca = %pem.display(), "certificate authority kept from an earlier start");
        }
        tls::Opened::KeptKeyWasOpen => tracing::warn!(
            key = %key.display(),
            "the CA's key was readable by other users; it is the owner's alone now, but if it may have been copied, make a new CA with `nephele-server new-ca`"
        ),
    }
    Ok(ca)
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("nephele-server")
        // The gateways relay input and its acknowledgement on these threads.
        .on_thread_start(|| {
            nephele_platform::sched::latency_critical();
        })
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Writes the hosts' counters (`{"hosts": [...]}`) to `path`, if given.
fn write_stats(path: Option<&Path>, hosts: &[Host]) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let all: Vec<serde_json::Value> = hosts.iter().map(|h| h.stats().summary()).collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "hosts": all }))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

async fn ctrl_c() -> Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
}

/// Ctrl-C, or with `quit_on_eof` the end of standard input too.
async fn until_stopped(quit_on_eof: bool) -> Result<()> {
    if !quit_on_eof {
        return ctrl_c().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("nephele-stdin".into())
        .spawn(move || {
            // Whatever arrives is ignored; the end of it is the signal.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = tx.send(());
        })
        .context("starting the thread watching standard input")?;
    tokio::select! {
        r = ctrl_c() => r,
        _ = rx => {
            tracing::info!("standard input closed: stopping");
            Ok(())
        }
    }
}

fn directory(d: DirectoryArgs) -> Result<()> {
    std::fs::create_dir_all(&d.state_dir)
        .with_context(|| format!("creating the state directory {}", d.state_dir.display()))?;
    let identity = identity(&d.cert, &d.state_dir.join("ca.pem"))?;
    let users = parse_users(&d.demo_user)?;
    let rt = runtime(2)?;
    rt.block_on(async {
        let mut cfg = DirectoryConfig::new(d.listen, d.state_dir.clone(), identity);
        cfg.database = d.database.clone();
        cfg.idle_policy = d.idle_policy;
        cfg.session_pixel_rate = d.session_max_pixel_rate;
        let dir = Directory::start(cfg)
            .await
            .context("starting the directory")?;
        for (u, p) in &users {
            dir.add_demo_user(u, p)
                .with_context(|| format!("adding user {u}"))?;
        }
        let key_file = d.state_dir.join("service.key");
        write_secret(&key_file, dir.service_key())?;
        let token_key = d.state_dir.join(TOKEN_KEY_FILE);
        std::fs::write(&token_key, dir.public_key())
            .with_context(|| format!("writing {}", token_key.display()))?;
        eprintln!(
            "gateways and hosts enrol with the service key in {} (--service-key-file); hosts not enrolled check session tokens with the key in {} (--token-key-file)",
            key_file.display(),
            token_key.display()
        );
        let admin_key = d.state_dir.join(nephele_service::directory::ADMIN_KEY_FILE);
        if admin_key.exists() {
            eprintln!(
                "administer it with `nephele-server admin --directory {} --key-file {}`",
                dir.url(),
                admin_key.display()
            );
        }
        println!("{}", dir.url());
        ctrl_c().await
    })
}

/// Where the directory writes its token key for hosts, in its state dir.
const TOKEN_KEY_FILE: &str = "token.pub";

fn read_token_key(path: &Path) -> Result<Verifier> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the directory's token key {}", path.display()))?;
    Verifier::from_public_b64(&text).with_context(|| {
        format!(
            "{} does not hold the directory's token key (it writes STATE_DIR/{TOKEN_KEY_FILE})",
            path.display()
        )
    })
}

/// Writes a secret readable by the owner only.
fn write_secret(path: &Path, secret: &str) -> Result<()> {
    nephele_platform::fs::write_private(path, secret.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn gateway(g: GatewayArgs) -> Result<()> {
    let identity = identity(&g.cert, &g.ca_out)?;
    let registration = g.join.enrolling()?;
    let rt = runtime(2)?;
    let (gw, res) = rt.block_on(async {
        let link = LinkKey::read(&g.link_key_file).context("reading the link key")?;
        let mut cfg = GatewayConfig::direct(g.listen, g.host, identity, link);
        cfg.probe_listen = Some(g.probe_listen);
        cfg.capacity = g.capacity;
        let gw = if let Some(Enrolling {
            client,
            service_key: key,
            verifier,
        }) = registration
        {
            cfg.host = None;
            cfg.tokens = Some(verifier);
            let mut gw = Gateway::start(cfg).context("starting the gateway")?;
            let info = GatewayInfo {
                id: g.id.clone(),
                pop: g.pop.clone(),
                region: g.region.clone(),
                address: g.advertise.unwrap_or(gw.local_addr()).to_string(),
                probe_address: g
                    .advertise_probe
                    .or(gw.probe_addr())
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                server_name: g
                    .cert
                    .names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "localhost".into()),
                load: 0.0,
            };
            let creds = Credentials {
                service_key: key,
                key_file: g.join.key_file.clone(),
            };
            gw.register(client, creds, info);
            gw
        } else {
            Gateway::start(cfg).context("starting the gateway")?
        };
        eprintln!("gateway listening on {}", gw.local_addr());
        Ok::<_, anyhow::Error>((gw, ctrl_c().await))
    })?;
    // Leaving the directory blocks on one request: do it off the runtime.
    let mut gw = gw;
    gw.close();
    res
}
