//! `nephele`: the Nephele client.
//!
//! `connect` signs in to a directory, probes the PoPs, and streams the
//! desktop from the nearest into a window (or headless); `probe` shows the
//! PoP measurements and the choice; `demo` does it all against the reference
//! service started in-process; `decode` runs an H.264 file through the
//! client's own decode path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use nephele_client::audio::AudioConfig;
use nephele_client::demo::{Chaos, DemoOptions, DemoService};
use nephele_client::discovery::{self, Choice, Reprober};
use nephele_client::headless::{HeadlessSink, play_script};
use nephele_client::input::Script;
use nephele_client::session::{ConnectConfig, Session};
use nephele_client::stats::{Route, Stats};
use nephele_client::video::{self, H264Decoder, Presenter};
use nephele_client::window::{self, WindowOptions};
use nephele_protocol::activity::{IdlePolicy, KeepActive};
use nephele_service::dirclient::DirectoryClient;
use rustls::pki_types::CertificateDer;

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
    /// Sign in, choose the nearest PoP and show the remote desktop.
    Connect(ConnectArgs),
    /// Sign in, measure every PoP and show the choice.
    Probe(ProbeArgs),
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
    /// `MS move X Y`, `MS button NAME down|up`, `MS wheel DX DY`,
    /// `MS pad N connect [TYPE] [rumble]|disconnect`, `MS pad N button NAME down|up`,
    /// `MS pad N axis NAME VALUE` with gilrs' names).
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
    /// Save the video received (raw H.264 Annex B) to this file, for
    /// `nephele decode` or any player.
    #[arg(long, value_name = "PATH")]
    save_stream: Option<PathBuf>,
    /// Present at most this many pictures a second in the window (default:
    /// the monitor's refresh rate, where the platform reports one).
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u16).range(1..=1000))]
    display_hz: Option<u16>,
    /// No sound: neither the desktop's audio nor the microphone.
    #[arg(long)]
    no_audio: bool,
    /// Do not capture the microphone (the desktop's audio still plays).
    #[arg(long)]
    no_mic: bool,
    /// Start with the microphone muted (Ctrl+Alt+Shift+M toggles it in the window).
    #[arg(long)]
    mic_muted: bool,
    /// Ask the service to keep the session active without input, and why:
    /// presentation, video, spectating or recording (Ctrl+Alt+Shift+P
    /// toggles presentation mode in the window).
    #[arg(long, value_name = "REASON", default_value = "none")]
    keep_active: KeepActive,
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// CA certificate (PEM) trusted for the directory and the gateways;
    /// repeat for several (default: the public web PKI). `nephele-server all`
    /// writes its CA to STATE_DIR/ca.pem.
    #[arg(long, value_name = "PATH")]
    ca: Vec<PathBuf>,
    /// Who to sign in as: NAME or NAME@TENANT (default: $NEPHELE_USER, else
    /// your login name). The password comes from $NEPHELE_PASSWORD or a prompt.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Which desktop or app to open (default: the first in your catalog).
    #[arg(long, value_name = "ID")]
    desktop: Option<String>,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    /// The directory, as https://HOST:PORT.
    #[arg(long, value_name = "URL", required_unless_present = "gateway")]
    directory: Option<String>,
    /// Connect straight to this gateway (HOST:PORT) instead, without the directory.
    #[arg(
        long,
        value_name = "ADDR",
        conflicts_with = "directory",
        requires = "ca"
    )]
    gateway: Option<String>,
    /// Name to verify in the gateway's certificate (default: the host part of --gateway).
    #[arg(long, value_name = "NAME", requires = "gateway")]
    server_name: Option<String>,
    #[command(flatten)]
    login: LoginArgs,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// The directory, as https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    directory: String,
    #[command(flatten)]
    login: LoginArgs,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Have the demo host append every input event it receives to this file (JSON lines).
    #[arg(long, value_name = "PATH")]
    record_input: Option<PathBuf>,
    /// Put a simulated network between the client and the PoPs, per
    /// direction: `rtt=40ms,jitter=5ms,loss=5%,burst=3,bw=20mbit,queue=100ms,blackout=3s+500ms`,
    /// then changes over time as `; @5s bw=5mbit; @10s bw=20mbit`.
    #[arg(long, value_name = "SPEC", default_value = "")]
    network: nephele_service::impair::Impairment,
    /// The most video bits per second the host sends; congestion control
    /// adapts below it (default: from the picture size).
    #[arg(long, value_name = "BPS", default_value_t = 0)]
    bitrate: u32,
    /// Play a video panel on the demo desktop that changes completely every
    /// frame, as a game or a film would: the stream then uses all the
    /// bitrate it is allowed.
    #[arg(long)]
    motion: bool,
    /// Have the demo desktop play a steady tone of this many hertz
    /// (20–20000), besides its click on every key press.
    #[arg(long, value_name = "HZ", value_parser = nephele_service::audio::parse_tone)]
    tone: Option<f32>,
    /// Have the demo host write the microphone sound it receives to this
    /// WAV file (48 kHz, mono, 16-bit).
    #[arg(long, value_name = "PATH")]
    record_mic: Option<PathBuf>,
    /// When the directory has idle sessions warned, paused (no capture or
    /// encoding) and suspended (resources released, state kept), as in
    /// `warn=2s,pause=3s,suspend=6s`; `never` turns pausing off.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "warn=14m,pause=15m,suspend=60m"
    )]
    idle_policy: IdlePolicy,
    /// Kill parts of the service mid-session, as a crash would, to watch the
    /// session survive: `kill-gateway@3s,kill-host@6s` (times from the
    /// first picture; the session's own gateway and host).
    #[arg(long, value_name = "PLAN", default_value = "")]
    chaos: Chaos,
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
        Command::Probe(a) => probe(a),
        Command::Demo(a) => demo(a),
        Command::Decode(a) => decode(a),
    }
}

fn load_roots(ca: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>> {
    let mut roots = Vec::new();
    for p in ca {
        roots.extend(
            nephele_service::tls::read_cert_pem(p)
                .with_context(|| format!("loading the CA certificate {}", p.display()))?,
        );
    }
    Ok(roots)
}

fn connect(a: ConnectArgs) -> Result<()> {
    let Some(gateway) = &a.gateway else {
        let roots = load_roots(&a.login.ca)?;
        let url = a.directory.as_deref().context("--directory is required")?;
        let dir = DirectoryClient::new(url, &roots)?;
        let user = user_name(a.login.user.as_deref())?;
        let password = password_for(&user)?;
        return via_directory(
            &dir,
            roots,
            &user,
            &password,
            a.login.desktop.as_deref(),
            &a.stream,
            Arc::new(Stats::default()),
        );
    };
    let (addr, host_part) = resolve(gateway)?;
    let roots = load_roots(&a.login.ca)?;
    let cfg = ConnectConfig {
        gateway: addr,
        server_name: a.server_name.unwrap_or(host_part),
        roots,
        width: a.stream.width,
        height: a.stream.height,
        fps: a.stream.fps,
        token: Vec::new(),
        route: Route {
            gateway_id: addr.to_string(),
            pop: "direct".into(),
        },
        fallbacks: Vec::new(),
        save_stream: None,
        audio: AudioConfig::default(),
        renew: None,
    };
    run_stream(cfg, &a.stream, Arc::new(Stats::default()))
}

/// `--user`, else `$NEPHELE_USER`, else the login name.
fn user_name(given: Option<&str>) -> Result<String> {
    given
        .map(str::to_string)
        .or_else(|| std::env::var("NEPHELE_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .filter(|u| !u.is_empty())
        .context("no user name: pass --user NAME")
}

/// `$NEPHELE_PASSWORD`, else a prompt on the terminal (never echoed).
fn password_for(user: &str) -> Result<String> {
    if let Ok(p) = std::env::var("NEPHELE_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password(format!("Password for {user}: "))
        .context("reading the password (set NEPHELE_PASSWORD when there is no terminal to ask on)")
}

/// Shows probing progress on stderr: a live counter on a terminal.
fn progress_printer() -> impl FnMut(usize, usize) {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if tty {
            eprint!("\rprobing {total} PoPs: {done} answered ");
            let _ = std::io::stderr().flush();
        } else if done == 0 {
            eprintln!("probing {total} PoPs…");
        }
    }
}

/// Signs in, opens a session, probes and chooses; prints what happens.
fn sign_in_and_choose(
    dir: &DirectoryClient,
    user: &str,
    password: &str,
    desktop: Option<&str>,
) -> Result<(discovery::Opened, Choice)> {
    eprintln!("signing in to {} as {user}…", dir.url());
    let opened = discovery::open_session(dir, user, password, desktop)?;
    let choice = discovery::choose(&opened.grant, opened.listed_at, progress_printer())?;
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    Ok((opened, choice))
}

fn via_directory(
    dir: &DirectoryClient,
    roots: Vec<CertificateDer<'static>>,
    user: &str,
    password: &str,
    desktop: Option<&str>,
    stream: &StreamArgs,
    stats: Arc<Stats>,
) -> Result<()> {
    let (opened, choice) = sign_in_and_choose(dir, user, password, desktop)?;
    let best = choice.best().context("no PoP is usable")?.clone();
    eprintln!(
        "opening {} through {} ({}, {:.1} ms) — decided in {:.0} ms",
        opened.desktop.name,
        best.pop,
        best.region,
        best.rtt_median_ms,
        choice.decision.as_secs_f64() * 1000.0
    );
    let mut cfg = discovery::connect_config(
        &choice,
        &opened.grant,
        roots,
        discovery::Picture {
            width: stream.width,
            height: stream.height,
            fps: stream.fps,
        },
    )?;
    if let Some(resume) = opened.grant.resume_token.clone() {
        cfg.renew = Some(discovery::renewer(dir.clone(), resume));
    }
    if let Some(p) = &opened.grant.idle_policy {
        let secs = |ms: Option<u64>| {
            ms.map_or("never".to_string(), |m| {
                format!("{:.0} s", m as f64 / 1000.0)
            })
        };
        tracing::info!(
            warn = %secs(p.warn_ms),
            pause = %secs(p.pause_ms),
            suspend = %secs(p.suspend_ms),
            "the directory's idle policy"
        );
    }
    stats
        .pop_decision_us
        .store(choice.decision.as_micros() as u64, Ordering::Relaxed);
    let current = opened
        .grant
        .gateways
        .iter()
        .position(|g| g.id == best.gateway_id)
        .unwrap_or(0);
    let _reprobe = Reprober::start(
        opened.grant.clone(),
        current,
        Duration::from_secs(10),
        stats.clone(),
    )
    .context("starting background probes")?;
    run_stream(cfg, stream, stats)
}

fn probe(a: ProbeArgs) -> Result<()> {
    let roots = load_roots(&a.login.ca)?;
    let dir = DirectoryClient::new(&a.directory, &roots)?;
    let user = user_name(a.login.user.as_deref())?;
    let password = password_for(&user)?;
    let (_, choice) = sign_in_and_choose(&dir, &user, &password, a.login.desktop.as_deref())?;
    let chosen = choice.best().map(|b| b.pop.clone()).unwrap_or_default();
    let decision_ms = choice.decision.as_secs_f64() * 1000.0;
    if a.json {
        let out = serde_json::json!({
            "chosen": chosen,
            "decision_ms": decision_ms,
            "pops": choice.ranked,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{:<16} {:<22} {:>8} {:>8} {:>7} {:>5} {:>5} {:>8}",
        "PoP", "region", "min ms", "med ms", "jitter", "loss", "load", "score"
    );
    for p in &choice.ranked {
        let score = p
            .score
            .map_or_else(|| p.state.to_string(), |s| format!("{s:.1}"));
        println!(
            "{:<16} {:<22} {:>8.1} {:>8.1} {:>7.1} {:>4.0}% {:>4.0}% {:>8}",
            p.pop,
            p.region,
            p.rtt_min_ms,
            p.rtt_median_ms,
            p.jitter_ms,
            p.loss * 100.0,
            p.load * 100.0,
            score
        );
    }
    println!("chose {chosen} in {decision_ms:.0} ms");
    Ok(())
}

fn demo(a: DemoArgs) -> Result<()> {
    let svc = DemoService::start(DemoOptions {
        record_input: a.record_input.clone(),
        network: a.network.clone(),
        bitrate: a.bitrate,
        motion: a.motion,
        tone_hz: a.tone,
        record_mic: a.record_mic.clone(),
        idle_policy: a.idle_policy,
    })
    .context("starting the demo service")?;
    let (user, password) = svc.credentials();
    let roots = vec![svc.ca()];
    let dir = DirectoryClient::new(&svc.directory_url(), &roots)?;
    let stats = Arc::new(Stats::default());
    let done = AtomicBool::new(false);
    let res = std::thread::scope(|scope| {
        if !a.chaos.0.is_empty() {
            let (svc, stats, done) = (&svc, &stats, &done);
            let plan = &a.chaos;
            std::thread::Builder::new()
                .name("nephele-chaos".into())
                .spawn_scoped(scope, move || svc.run_chaos(plan, stats, done))
                .context("starting the chaos thread")?;
        }
        let res = via_directory(&dir, roots, user, password, None, &a.stream, stats.clone());
        done.store(true, Ordering::Relaxed);
        res
    });
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

fn run_stream(mut cfg: ConnectConfig, a: &StreamArgs, stats: Arc<Stats>) -> Result<()> {
    cfg.save_stream.clone_from(&a.save_stream);
    cfg.audio = AudioConfig {
        speaker: !a.no_audio,
        microphone: !a.no_audio && !a.no_mic,
        mic_muted: a.mic_muted,
    };
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
        run_headless(cfg, duration, script, a.keep_active, stats)?
    } else {
        let title = if cfg.token.is_empty() {
            format!("Nephele — {}", cfg.route.gateway_id)
        } else {
            format!("Nephele — {} via {}", cfg.route.pop, cfg.route.gateway_id)
        };
        window::run(
            cfg,
            WindowOptions {
                duration,
                script,
                title,
                display_hz: a.display_hz,
                keep_active: a.keep_active,
            },
            stats,
        )?
    };
    let report = stats.report(streamed);
    eprintln!(
        "presented {} of {} decoded frames ({:.1}% of the host's) in {:.1}s, longest freeze {:.0} ms, {} rebuilt from parity; decode p50 {:.2} ms; client latency p50 {:.2} ms p99 {:.2} ms; input {}/{} acked",
        report.frames_presented,
        report.frames_decoded,
        report.frames_presented_pct,
        report.duration_s,
        report.max_freeze_ms,
        report.fec_recovered,
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
    keep_active: KeepActive,
    stats: Arc<Stats>,
) -> Result<(Arc<Stats>, Duration)> {
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
    session.activity().set_keep_active(keep_active);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let player = script.map(|s| {
        let (input, pads) = (session.input(), session.pad_script());
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("nephele-script".into())
            .spawn(move || play_script(&s, &input, &pads, start, || stop.load(Ordering::Relaxed)))
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
    let (mut converted_px, mut total_px) = (0.0f64, 0.0f64);
    let mut on_picture = |p: video::Picture<'_>, since: Instant| {
        let d = video::ms_between(since, Instant::now());
        let t = Instant::now();
        if let Err(e) = presenter.convert(&p) {
            eprintln!("conversion failed: {e:?}");
        }
        let c = video::ms_between(t, Instant::now());
        converted_px += presenter.converted_pixels() as f64;
        total_px += (p.width * p.height) as f64;
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
        "{{\"summary\":true,\"pictures\":{},\"decode_ms_mean\":{:.3},\"convert_ms_mean\":{:.3},\"total_ms_mean\":{:.3},\"converted_pct\":{:.1},\"openh264_simd\":{},\"errors\":{}}}",
        decode_ms.len(),
        total_d / n,
        total_c / n,
        (total_d + total_c) / n,
        100.0 * converted_px / total_px.max(1.0),
        video::openh264_has_simd(),
        dec.stats().errors
    );
    Ok(())
}
