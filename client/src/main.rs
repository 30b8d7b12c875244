//! `nephele`: the Nephele client.
//!
//! `connect` streams a desktop from a gateway into a window (or headless);
//! `demo` does the same against the reference service started in-process;
//! `decode` runs an H.264 file through the client's own decode path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use nephele_client::demo::{DemoOptions, DemoService};
use nephele_client::headless::{HeadlessSink, play_script};
use nephele_client::input::Script;
use nephele_client::session::{ConnectConfig, Session};
use nephele_client::stats::{Route, Stats};
use nephele_client::video::{self, H264Decoder, Presenter};
use nephele_client::window::{self, WindowOptions};

#[derive(Debug, Parser)]
#[command(
    name = "nephele",
    version,
    about = "Nephele: your cloud desktop, as if it were local"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to a gateway and show the remote desktop.
    Connect(ConnectArgs),
    /// Run the reference service on loopback and connect to it.
    Demo(DemoArgs),
    /// Decode a raw H.264 (Annex B) file through the client's decode path.
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
struct StreamArgs {
    /// Run without a window (same network and decode path).
    #[arg(long)]
    headless: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Write session statistics as JSON here when the session ends.
    #[arg(long, value_name = "PATH")]
    stats_json: Option<PathBuf>,
    /// Play timed input from this file (`MS type TEXT`, `MS key NAME down|up`,
    /// `MS move X Y`, `MS button NAME down|up`, `MS wheel DX DY`).
    #[arg(long, value_name = "PATH")]
    input_script: Option<PathBuf>,
    /// Requested picture width.
    #[arg(long, default_value_t = 1280)]
    width: u16,
    /// Requested picture height.
    #[arg(long, default_value_t = 720)]
    height: u16,
    /// Requested frame rate.
    #[arg(long, default_value_t = 60)]
    fps: u8,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    /// The gateway's QUIC address, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    gateway: String,
    /// CA certificate (PEM) that signed the gateway's certificate.
    #[arg(long, value_name = "PATH")]
    ca: PathBuf,
    /// Name to verify in the gateway's certificate (default: the host part of --gateway).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Have the demo host append every input event it receives to this file (JSON lines).
    #[arg(long, value_name = "PATH")]
    record_input: Option<PathBuf>,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Debug, Args)]
struct DecodeArgs {
    /// Raw H.264 Annex-B file.
    file: PathBuf,
    /// Print the SHA-1 of the decoded pictures (the conformance digest).
    #[arg(long)]
    sha1: bool,
    /// Time decoding and conversion to the window's pixel format per picture.
    #[arg(long)]
    bench: bool,
}

/// Prints failures as one readable chain ("what we tried: why it failed"),
/// without the backtrace anyhow adds when `RUST_BACKTRACE` is set.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nephele: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,nephele_client=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Connect(a) => connect(a),
        Command::Demo(a) => demo(a),
        Command::Decode(a) => decode(a),
    }
}

fn connect(a: ConnectArgs) -> Result<()> {
    let (addr, host_part) = resolve(&a.gateway)?;
    let roots = nephele_service::tls::read_cert_pem(&a.ca)
        .with_context(|| format!("loading the CA certificate {}", a.ca.display()))?;
    let cfg = ConnectConfig {
        gateway: addr,
        server_name: a.server_name.unwrap_or(host_part),
        roots,
        width: a.stream.width,
        height: a.stream.height,
        fps: a.stream.fps,
        route: Route {
            gateway_id: addr.to_string(),
            pop: "direct".into(),
        },
    };
    run_stream(cfg, &a.stream)
}

fn demo(a: DemoArgs) -> Result<()> {
    let svc = DemoService::start(DemoOptions {
        record_input: a.record_input.clone(),
    })
    .context("starting the demo service")?;
    let cfg = ConnectConfig {
        gateway: svc.gateway_addr(),
        server_name: "localhost".into(),
        roots: vec![svc.ca()],
        width: a.stream.width,
        height: a.stream.height,
        fps: a.stream.fps,
        route: Route {
            gateway_id: svc.gateway_addr().to_string(),
            pop: "loopback".into(),
        },
    };
    let res = run_stream(cfg, &a.stream);
    drop(svc);
    res
}

/// Splits `HOST:PORT` and resolves it; the host part is the certificate name.
fn resolve(gateway: &str) -> Result<(SocketAddr, String)> {
    use std::net::ToSocketAddrs;
    let (host, _) = gateway.rsplit_once(':').with_context(|| {
        format!("gateway address `{gateway}` needs a port, as in localhost:7443")
    })?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = gateway
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the gateway address `{gateway}`"))?
        .next()
        .with_context(|| format!("`{gateway}` resolves to no address"))?;
    Ok((addr, host))
}

fn load_script(path: Option<&Path>) -> Result<Option<Script>> {
    path.map(|p| {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading the input script {}", p.display()))?;
        Script::parse(&text).with_context(|| format!("in {}", p.display()))
    })
    .transpose()
}

fn run_stream(cfg: ConnectConfig, a: &StreamArgs) -> Result<()> {
    let script = load_script(a.input_script.as_deref())?;
    let duration = a
        .duration
        .map(|s| {
            if s.is_finite() && s > 0.0 {
                Ok(Duration::from_secs_f64(s))
            } else {
                bail!("--duration must be a positive number of seconds")
            }
        })
        .transpose()?;
    let (stats, streamed) = if a.headless {
        run_headless(cfg, duration, script)?
    } else {
        let title = format!("Nephele — {}", cfg.route.gateway_id);
        window::run(
            cfg,
            WindowOptions {
                duration,
                script,
                title,
            },
        )?
    };
    let report = stats.report(streamed);
    eprintln!(
        "presented {} of {} decoded frames in {:.1}s; decode p50 {:.2} ms; client latency p50 {:.2} ms p99 {:.2} ms; input {}/{} acked",
        report.frames_presented,
        report.frames_decoded,
        report.duration_s,
        report.decode_ms_p50,
        report.client_latency_ms_p50,
        report.client_latency_ms_p99,
        report.input_acked,
        report.input_sent
    );
    if let Some(p) = &a.stats_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(p, json + "\n").with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn run_headless(
    cfg: ConnectConfig,
    duration: Option<Duration>,
    script: Option<Script>,
) -> Result<(Arc<Stats>, Duration)> {
    let stats = Arc::new(Stats::default());
    let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let f2 = failure.clone();
    let gateway = cfg.gateway;
    let session = Session::connect(
        cfg,
        stats.clone(),
        Box::new(HeadlessSink::new(stats.clone())),
        Box::new(move |e| {
            if let (Some(e), Ok(mut f)) = (e, f2.lock()) {
                *f = Some(e.to_string());
            }
        }),
    )
    .with_context(|| format!("connecting to the gateway at {gateway}"))?;
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let player = script.map(|s| {
        let input = session.input();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("nephele-script".into())
            .spawn(move || play_script(&s, &input, start, || stop.load(Ordering::Relaxed)))
    });
    let player = player.transpose().context("starting the script thread")?;
    while !session.has_ended() && duration.is_none_or(|d| start.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = player
        && let Ok(Err(e)) = p.join()
    {
        tracing::warn!(error = %e, "input script stopped early");
    }
    let streamed = start.elapsed();
    session.close().context("closing the session")?;
    if let Ok(Some(f)) = failure.lock().map(|f| f.clone()) {
        bail!("the session ended: {f}");
    }
    Ok((stats, streamed))
}

fn decode(a: DecodeArgs) -> Result<()> {
    let data = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    if a.sha1 && !a.bench {
        let digest = video::digest_stream(&data)?;
        let pictures = digest.pictures;
        let (w, h) = digest.size;
        println!("{}  {}", digest.finish(), a.file.display());
        eprintln!("{pictures} pictures, {w}x{h}");
        return Ok(());
    }
    if !video::openh264_has_simd() {
        eprintln!(
            "warning: openh264 in this binary was built without its x86 assembly (NASM was missing); run `cargo clean -p openh264-sys2` and rebuild"
        );
    }
    let mut dec = H264Decoder::new()?;
    let mut presenter = Presenter::default();
    let mut digest = video::PictureDigest::default();
    let mut decode_ms: Vec<f64> = Vec::new();
    let mut convert_ms: Vec<f64> = Vec::new();
    let mut on_picture = |p: video::Picture<'_>, since: Instant| {
        let d = video::ms_between(since, Instant::now());
        let t = Instant::now();
        if let Err(e) = presenter.convert(&p) {
            eprintln!("conversion failed: {e:?}");
        }
        let c = video::ms_between(t, Instant::now());
        if a.sha1 {
            digest.add(&p);
        }
        if a.bench {
            println!(
                "{{\"frame\":{},\"width\":{},\"height\":{},\"decode_ms\":{d:.3},\"convert_ms\":{c:.3}}}",
                decode_ms.len(),
                p.width,
                p.height
            );
        }
        decode_ms.push(d);
        convert_ms.push(c);
    };
    // One NAL unit per call, so each picture's decode time is its own.
    for nal in openh264::nal_units(&data) {
        let t0 = Instant::now();
        dec.decode(nal, |p| on_picture(p, t0));
    }
    let t0 = Instant::now();
    dec.flush(|p| on_picture(p, t0));
    let n = decode_ms.len().max(1) as f64;
    let total_d: f64 = decode_ms.iter().sum();
    let total_c: f64 = convert_ms.iter().sum();
    println!(
        "{{\"summary\":true,\"pictures\":{},\"decode_ms_mean\":{:.3},\"convert_ms_mean\":{:.3},\"total_ms_mean\":{:.3},\"openh264_simd\":{},\"errors\":{}}}",
        decode_ms.len(),
        total_d / n,
        total_c / n,
        (total_d + total_c) / n,
        video::openh264_has_simd(),
        dec.stats().errors
    );
    Ok(())
}
