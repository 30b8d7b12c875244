//! `nephele`: the Nephele client.
//!
//! `connect` signs in to a directory, probes the PoPs, and streams the
//! desktop from the nearest into a window (or headless); `probe` shows the
//! PoP measurements and the choice; `demo` does it all against the reference
//! service started in-process; `decode` runs an H.264 file through the
//! client's own decode path; `config` shows and checks the settings file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use nephele_client::audio::AudioConfig;
use nephele_client::config::{self, Kiosk, Loaded, MouseMode, Settings, Shortcuts};
use nephele_client::demo::{Chaos, DemoOptions, DemoService};
use nephele_client::discovery::{self, Reprober};
use nephele_client::headless::{HeadlessSink, play_script};
use nephele_client::input::Script;
use nephele_client::session::{ConnectConfig, Session};
use nephele_client::stats::{Route, Stats};
use nephele_client::video::{self, DecoderChoice, H264Decoder, Presenter};
use nephele_client::window::{self, Connector, Prepared, WindowOptions};
use nephele_protocol::activity::{IdlePolicy, KeepActive};
use nephele_service::dirclient::DirectoryClient;
use rustls::pki_types::CertificateDer;

/// The long help's closing part: settings, kiosk mode, shortcuts, logs.
const MORE_HELP: &str = "\
SETTINGS FILE
  Settings are read from a TOML file; flags on the command line win over it.
  It lives in the platform's config directory:
    Linux    $XDG_CONFIG_HOME/nephele/config.toml (~/.config/nephele/config.toml)
    Windows  %APPDATA%\\Nephele\\config\\config.toml
    macOS    ~/Library/Application Support/Nephele/config.toml
  or where --config or $NEPHELE_CONFIG says. `nephele config` shows which
  file is read and what it sets; `nephele config --example` prints every key
  with its default: directory, user, ca, desktop, pop (auto or a PoP's name),
  [video] width, height, fps, display-hz, fullscreen, stats-overlay, decoder,
  [audio] speaker, microphone, mic-muted, output-device, input-device,
  [input] mouse (absolute or relative), keep-active, clipboard (share its
  text with the desktop both ways, up to 1 KiB; off unless set or
  --clipboard), [shortcuts] and [kiosk].
  Unknown keys are warned about; a bad value stops with its key and line.
  Passwords and tokens are never kept there: the password comes from
  $NEPHELE_PASSWORD, a systemd credential named nephele-password, or a prompt.

KIOSK MODE
  `nephele connect --kiosk` (or `[kiosk] enabled = true`) runs unattended:
  fullscreen without window decorations, connects to the configured
  directory and desktop without asking anything, and whenever the session
  fails or ends tries again for ever, waiting 1 s, 2 s, 4 s… up to
  `[kiosk] max-backoff-secs` (30). No shortcut works and closing is refused,
  except the administrator's combination `[kiosk] exit`
  (Ctrl+Alt+Shift+End unless set; X servers keep Ctrl+Alt+F1…F12 for
  themselves). packaging/linux has a systemd user unit
  and an autostart entry that start it at login.

SHORTCUTS (in the window; change them under [shortcuts])
  Ctrl+Alt+Shift+Q  quit                 Ctrl+Alt+Shift+X  fullscreen
  Ctrl+Alt+Shift+Z  capture the pointer (relative mouse for games) or let go
  Ctrl+Alt+Shift+S  statistics overlay   Ctrl+Alt+Shift+M  microphone
  Ctrl+Alt+Shift+P  presentation mode (the session stays active without input)

LOGS
  Written to nephele.log in the platform's state directory
  (Linux ~/.local/state/nephele, Windows %LOCALAPPDATA%\\Nephele\\data,
  macOS ~/Library/Application Support/Nephele) and to stderr; RUST_LOG
  filters what stderr shows (default: warnings and the client's progress).";

#[derive(Debug, Parser)]
#[command(
    name = "nephele",
    version,
    about = "Nephele: your cloud desktop, as if it were local",
    after_long_help = MORE_HELP
)]
struct Cli {
    /// Read settings from this TOML file instead of the platform's config
    /// directory (also $NEPHELE_CONFIG); see SETTINGS FILE in --help.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign in, choose the nearest PoP and show the remote desktop.
    #[command(after_long_help = MORE_HELP)]
    Connect(ConnectArgs),
    /// Sign in, measure every PoP and show the choice.
    Probe(ProbeArgs),
    /// Run the reference service on loopback and connect to it.
    #[command(after_long_help = MORE_HELP)]
    Demo(DemoArgs),
    /// Decode a raw H.264 (Annex B) file through the client's decode path.
    Decode(DecodeArgs),
    /// Show which settings file is read and what it sets, or print an example.
    #[command(after_long_help = MORE_HELP)]
    Config(ConfigArgs),
    /// List the sound devices, for `[audio] output-device` and `input-device`.
    Devices,
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
    /// `MS move X Y`, `MS move-by DX DY`, `MS button NAME down|up`, `MS wheel DX DY`,
    /// `MS pad N connect [TYPE] [rumble]|disconnect`, `MS pad N button NAME down|up`,
    /// `MS pad N axis NAME VALUE` with gilrs' names).
    #[arg(long, value_name = "PATH")]
    input_script: Option<PathBuf>,
    /// Requested picture width [settings: video.width; default 1280].
    #[arg(long)]
    width: Option<u16>,
    /// Requested picture height [settings: video.height; default 720].
    #[arg(long)]
    height: Option<u16>,
    /// Requested frame rate [settings: video.fps; default 60].
    #[arg(long)]
    fps: Option<u8>,
    /// Save the video received (raw H.264 Annex B) to this file, for
    /// `nephele decode` or any player.
    #[arg(long, value_name = "PATH")]
    save_stream: Option<PathBuf>,
    /// The H.264 decoder [settings: video.decoder; default auto: FFmpeg's
    /// where the system has libavcodec, else the built-in openh264].
    #[arg(long, value_enum)]
    decoder: Option<DecoderChoice>,
    /// Present at most this many pictures a second in the window (default:
    /// the monitor's refresh rate, where the platform reports one)
    /// [settings: video.display-hz].
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u16).range(1..=1000))]
    display_hz: Option<u16>,
    /// Start fullscreen (Ctrl+Alt+Shift+X toggles) [settings: video.fullscreen].
    #[arg(long)]
    fullscreen: bool,
    /// Show the statistics overlay (Ctrl+Alt+Shift+S toggles)
    /// [settings: video.stats-overlay].
    #[arg(long)]
    stats_overlay: bool,
    /// Mouse mode at the start: absolute (desktops) or relative (games:
    /// the pointer is captured; Ctrl+Alt+Shift+Z toggles) [settings: input.mouse].
    #[arg(long, value_name = "MODE")]
    mouse: Option<MouseMode>,
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
    /// toggles presentation mode in the window) [settings: input.keep-active].
    #[arg(long, value_name = "REASON")]
    keep_active: Option<KeepActive>,
    /// Share the clipboard's text with the desktop, both ways (up to 1 KiB)
    /// [settings: input.clipboard].
    #[arg(long)]
    clipboard: bool,
    /// Kiosk mode: fullscreen and borderless, no questions, reconnects for
    /// ever with backoff, no way out but the administrator's combination
    /// (see KIOSK MODE in --help) [settings: kiosk.enabled].
    #[arg(long, conflicts_with = "headless")]
    kiosk: bool,
}

/// What a session runs with: the settings file under the flags.
struct Prefs {
    width: u16,
    height: u16,
    fps: u8,
    display_hz: Option<u16>,
    decoder: DecoderChoice,
    audio: AudioConfig,
    keep_active: KeepActive,
    fullscreen: bool,
    stats_overlay: bool,
    mouse: MouseMode,
    shortcuts: Shortcuts,
    kiosk: Option<Kiosk>,
    clipboard: bool,
}

impl StreamArgs {
    fn prefs(&self, s: &Settings) -> Result<Prefs> {
        let kiosk = (self.kiosk || s.kiosk.enabled).then(|| s.kiosk.clone());
        if kiosk.is_some() && self.headless {
            bail!(
                "kiosk mode needs a window: drop --headless, or `[kiosk] enabled` from the settings"
            );
        }
        Ok(Prefs {
            width: self.width.unwrap_or(s.video.width),
            height: self.height.unwrap_or(s.video.height),
            fps: self.fps.unwrap_or(s.video.fps),
            display_hz: self.display_hz.or(s.video.display_hz),
            decoder: self.decoder.unwrap_or(s.video.decoder),
            audio: AudioConfig {
                speaker: !self.no_audio && s.audio.speaker,
                microphone: !self.no_audio && !self.no_mic && s.audio.microphone,
                mic_muted: self.mic_muted || s.audio.mic_muted,
                output_device: s.audio.output_device.clone(),
                input_device: s.audio.input_device.clone(),
            },
            keep_active: self.keep_active.unwrap_or(s.input.keep_active),
            fullscreen: self.fullscreen || s.video.fullscreen,
            stats_overlay: self.stats_overlay || s.video.stats_overlay,
            mouse: self.mouse.unwrap_or(s.input.mouse),
            shortcuts: s.shortcuts.clone(),
            kiosk,
            clipboard: self.clipboard || s.input.clipboard,
        })
    }
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// CA certificate (PEM) trusted for the directory and the gateways;
    /// repeat for several (default: the public web PKI) [settings: ca, added
    /// to these]. `nephele-server all` writes its CA to STATE_DIR/ca.pem.
    #[arg(long, value_name = "PATH")]
    ca: Vec<PathBuf>,
    /// Who to sign in as: NAME or NAME@TENANT (default: settings' user,
    /// else $NEPHELE_USER, else your login name). The password comes from
    /// $NEPHELE_PASSWORD, a systemd credential or a prompt.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Which desktop or app to open (default: settings' desktop, else the
    /// first in your catalog).
    #[arg(long, value_name = "ID")]
    desktop: Option<String>,
    /// The PoP to use when it answers, instead of the nearest measured
    /// (`auto`) [settings: pop].
    #[arg(long, value_name = "NAME")]
    pop: Option<String>,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    /// The directory, as https://HOST:PORT [settings: directory].
    #[arg(long, value_name = "URL")]
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
    /// The directory, as https://HOST:PORT [settings: directory].
    #[arg(long, value_name = "URL")]
    directory: Option<String>,
    #[command(flatten)]
    login: LoginArgs,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Print a settings file with every key at its default instead.
    #[arg(long)]
    example: bool,
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
    /// The PoP to use instead of the nearest measured (pop-near, pop-mid, pop-far).
    #[arg(long = "pop", value_name = "NAME")]
    stream_pop: Option<String>,
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
    /// The H.264 decoder (auto: FFmpeg's where the system has libavcodec,
    /// else the built-in openh264).
    #[arg(long, value_enum, default_value_t = DecoderChoice::Auto)]
    decoder: DecoderChoice,
}

/// Prints failures as one readable chain ("what we tried: why it failed"),
/// without the backtrace anyhow adds when `RUST_BACKTRACE` is set.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nephele: error: {e:#}");
            tracing::error!(target: LOG_ONLY, "{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Events for the log file alone: stderr already shows them otherwise.
const LOG_ONLY: &str = "nephele_log_only";

/// The log file grows to this size, then the previous one is kept as `.1`.
const LOG_ROTATE_AT: u64 = 8 << 20;

/// Logs to stderr (filtered by `RUST_LOG`) and to `nephele.log` in the
/// platform's state directory (the client at info level), so a kiosk's
/// history survives. A log file that cannot be opened costs a warning.
fn init_logging() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,nephele_client=info".into());
    if let Ok(d) = format!("{LOG_ONLY}=off").parse() {
        filter = filter.add_directive(d);
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let mut complaint = None;
    let file = config::log_dir().and_then(|dir| {
        let path = dir.join("nephele.log");
        let opened = std::fs::create_dir_all(&dir).and_then(|()| {
            if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_AT) {
                std::fs::rename(&path, dir.join("nephele.log.1"))?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
        });
        opened
            .map_err(|e| complaint = Some(format!("cannot write the log {}: {e}", path.display())))
            .ok()
    });
    let file = file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .with_filter(tracing_subscriber::EnvFilter::new(
                "warn,nephele_client=info,nephele=info,nephele_log_only=info",
            ))
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
    if let Some(c) = complaint {
        tracing::warn!("{c}");
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    init_logging();
    let path = config::default_path(cli.config.as_deref());
    let explicit = cli.config.is_some() || std::env::var_os("NEPHELE_CONFIG").is_some();
    let loaded = config::load(path.clone(), explicit)?;
    for key in &loaded.unknown {
        let file = loaded.path.as_deref().unwrap_or(Path::new("?")).display();
        tracing::warn!("unknown setting `{key}` in {file} (ignored)");
    }
    match cli.command {
        Command::Connect(a) => connect(a, &loaded.settings),
        Command::Probe(a) => probe(a, &loaded.settings),
        Command::Demo(a) => demo(a, &loaded.settings),
        Command::Decode(a) => decode(a),
        Command::Config(a) => show_config(&a, path.as_deref(), &loaded),
        Command::Devices => {
            let (outputs, inputs) = nephele_platform::audio::device_names();
            for (what, names) in [("outputs", outputs), ("inputs", inputs)] {
                println!("{what}:");
                for n in names {
                    println!("  {n}");
                }
            }
            Ok(())
        }
    }
}

fn show_config(a: &ConfigArgs, path: Option<&Path>, loaded: &Loaded) -> Result<()> {
    if a.example {
        print!("{}", config::example());
        return Ok(());
    }
    match (&loaded.path, path) {
        (Some(p), _) => println!("# read from {}", p.display()),
        (None, Some(p)) => println!("# {} does not exist: the defaults", p.display()),
        (None, None) => println!("# no config directory on this system: the defaults"),
    }
    if let Some(d) = config::log_dir() {
        println!("# logs go to {}", d.join("nephele.log").display());
    }
    for key in &loaded.unknown {
        println!("# unknown key ignored: {key}");
    }
    print!(
        "{}",
        toml::to_string_pretty(&loaded.settings).context("printing the settings")?
    );
    Ok(())
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

/// The flags' CAs and the settings' CAs.
fn all_roots(login: &LoginArgs, s: &Settings) -> Result<Vec<CertificateDer<'static>>> {
    let paths: Vec<PathBuf> = login.ca.iter().chain(&s.ca).cloned().collect();
    load_roots(&paths)
}

/// `--directory`, else the settings' directory.
fn directory_url(given: Option<&String>, s: &Settings) -> Result<String> {
    given.or(s.directory.as_ref()).cloned().context(
        "no directory to sign in to: pass --directory https://HOST:PORT or set `directory` in the settings file (see `nephele config`)",
    )
}

/// Where the user asked to connect, and as whom.
struct Login {
    dir: DirectoryClient,
    roots: Vec<CertificateDer<'static>>,
    user: String,
    password: String,
    desktop: Option<String>,
    pop: Option<String>,
}

impl Login {
    fn new(url: &str, login: &LoginArgs, s: &Settings, ask: bool) -> Result<Self> {
        let roots = all_roots(login, s)?;
        let dir = DirectoryClient::new(url, &roots)?;
        let user = user_name(login.user.as_deref().or(s.user.as_deref()))?;
        let password = nephele_client::secrets::password_for(&user, ask)?;
        let pop = login
            .pop
            .clone()
            .unwrap_or_else(|| s.pop.clone())
            .trim()
            .to_string();
        Ok(Self {
            dir,
            roots,
            user,
            password,
            desktop: login.desktop.clone().or_else(|| s.desktop.clone()),
            pop: (!pop.is_empty() && pop != "auto").then_some(pop),
        })
    }
}

fn connect(a: ConnectArgs, s: &Settings) -> Result<()> {
    let prefs = a.stream.prefs(s)?;
    let Some(gateway) = &a.gateway else {
        let stats = Arc::new(Stats::default());
        let login = directory_url(a.directory.as_ref(), s)
            .and_then(|url| Login::new(&url, &a.login, s, prefs.kiosk.is_none()));
        let connector = match login {
            Ok(login) => directory_connector(login, &prefs, stats.clone()),
            // Started from a menu or at login there is no terminal to read
            // an error on: the window shows it instead (a kiosk keeps
            // showing it and trying, in case the settings are fixed).
            Err(e)
                if !a.stream.headless && !std::io::IsTerminal::is_terminal(&std::io::stderr()) =>
            {
                let why = format!("{e:#}");
                Arc::new(move |_: &dyn Fn(String)| -> Result<Prepared> { bail!("{why}") })
            }
            Err(e) => return Err(e),
        };
        return run_stream(connector, &a.stream, prefs, stats);
    };
    let (addr, host_part) = resolve(gateway)?;
    let roots = all_roots(&a.login, s)?;
    let cfg = ConnectConfig {
        gateway: addr,
        server_name: a.server_name.unwrap_or(host_part),
        roots,
        width: prefs.width,
        height: prefs.height,
        fps: prefs.fps,
        token: Vec::new(),
        route: Route {
            gateway_id: addr.to_string(),
            pop: "direct".into(),
        },
        fallbacks: Vec::new(),
        save_stream: None,
        decoder: prefs.decoder,
        audio: AudioConfig::default(),
        renew: None,
        clipboard: false,
    };
    let connector: Connector = Arc::new(move |_: &dyn Fn(String)| {
        Ok(Prepared {
            cfg: cfg.clone(),
            keep: None,
        })
    });
    run_stream(connector, &a.stream, prefs, Arc::new(Stats::default()))
}

/// `--user` or the settings' user, else `$NEPHELE_USER`, else the login name.
fn user_name(given: Option<&str>) -> Result<String> {
    given
        .map(str::to_string)
        .or_else(|| std::env::var("NEPHELE_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .filter(|u| !u.is_empty())
        .context("no user name: pass --user NAME or set `user` in the settings file")
}

/// Signs in, opens a session, probes and chooses, telling each stage.
fn sign_in_and_choose(
    login: &Login,
    stage: &dyn Fn(String),
) -> Result<(discovery::Opened, discovery::Choice)> {
    stage(format!(
        "signing in to {} as {}…",
        login.dir.url(),
        login.user
    ));
    let opened = discovery::open_session(
        &login.dir,
        &login.user,
        &login.password,
        login.desktop.as_deref(),
    )?;
    let mut choice = discovery::choose(&opened.grant, opened.listed_at, |done, total| {
        stage(if done == 0 {
            format!("probing {total} PoPs…")
        } else {
            format!("probing {total} PoPs: {done} answered…")
        });
    })?;
    if let Some(pop) = &login.pop
        && !choice.prefer(pop)
    {
        tracing::warn!(pop = %pop, "the preferred PoP did not answer; using the nearest");
    }
    Ok((opened, choice))
}

/// Everything from signing in to the connect configuration, as the window's
/// connect thread (or the headless path) runs it: again on every retry.
fn directory_connector(login: Login, prefs: &Prefs, stats: Arc<Stats>) -> Connector {
    let picture = discovery::Picture {
        width: prefs.width,
        height: prefs.height,
        fps: prefs.fps,
    };
    Arc::new(move |stage: &dyn Fn(String)| {
        let (opened, choice) = sign_in_and_choose(&login, stage)?;
        let best = choice.best().context("no PoP is usable")?.clone();
        stage(format!(
            "opening {} through {} ({}, {:.1} ms) — decided in {:.0} ms",
            opened.desktop.name,
            best.pop,
            best.region,
            best.rtt_median_ms,
            choice.decision.as_secs_f64() * 1000.0
        ));
        let mut cfg =
            discovery::connect_config(&choice, &opened.grant, login.roots.clone(), picture)?;
        if let Some(resume) = opened.grant.resume_token.clone() {
            cfg.renew = Some(discovery::renewer(login.dir.clone(), resume));
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
        let reprobe = Reprober::start(
            opened.grant.clone(),
            current,
            Duration::from_secs(10),
            stats.clone(),
        )
        .context("starting background probes")?;
        Ok(Prepared {
            cfg,
            keep: Some(Box::new(reprobe)),
        })
    })
}

fn probe(a: ProbeArgs, s: &Settings) -> Result<()> {
    let url = directory_url(a.directory.as_ref(), s)?;
    let login = Login::new(&url, &a.login, s, true)?;
    let (_, choice) = sign_in_and_choose(&login, &progress_printer())?;
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
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

/// Prints connection stages on stderr: progress counters only on a terminal
/// (overwriting one line), each other stage on its own line.
fn progress_printer() -> impl Fn(String) {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    move |s: String| {
        let counter = s.contains(" answered…");
        match (tty, counter) {
            (true, true) => {
                eprint!("\r{s} ");
                let _ = std::io::stderr().flush();
            }
            (false, true) => {}
            _ => eprintln!("{s}"),
        }
    }
}

fn demo(a: DemoArgs, s: &Settings) -> Result<()> {
    let prefs = a.stream.prefs(s)?;
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
    let login = Login {
        dir: DirectoryClient::new(&svc.directory_url(), &roots)?,
        roots,
        user: user.to_string(),
        password: password.to_string(),
        desktop: None,
        pop: a.stream_pop.clone(),
    };
    let stats = Arc::new(Stats::default());
    let connector = directory_connector(login, &prefs, stats.clone());
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
        let res = run_stream(connector, &a.stream, prefs, stats.clone());
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

fn run_stream(connector: Connector, a: &StreamArgs, prefs: Prefs, stats: Arc<Stats>) -> Result<()> {
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
    let save_stream = a.save_stream.clone();
    let audio = prefs.audio.clone();
    let clipboard = prefs.clipboard;
    let decoder = prefs.decoder;
    // Every attempt connects with the stream's own options.
    let connector: Connector = Arc::new(move |stage: &dyn Fn(String)| {
        let mut p = connector(stage)?;
        p.cfg.save_stream.clone_from(&save_stream);
        p.cfg.audio = audio.clone();
        p.cfg.clipboard = clipboard;
        p.cfg.decoder = decoder;
        Ok(p)
    });
    let (stats, streamed) = if a.headless {
        let prepared = connector(&progress_printer())?;
        run_headless(prepared, duration, script, prefs.keep_active, stats)?
    } else {
        window::run(
            connector,
            WindowOptions {
                duration,
                script,
                title: "Nephele".into(),
                display_hz: prefs.display_hz,
                keep_active: prefs.keep_active,
                fullscreen: prefs.fullscreen,
                stats_overlay: prefs.stats_overlay,
                mouse: prefs.mouse,
                shortcuts: prefs.shortcuts,
                kiosk: prefs.kiosk,
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
    prepared: Prepared,
    duration: Option<Duration>,
    script: Option<Script>,
    keep_active: KeepActive,
    stats: Arc<Stats>,
) -> Result<(Arc<Stats>, Duration)> {
    let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let f2 = failure.clone();
    let Prepared { cfg, keep: _keep } = prepared;
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
        let digest = video::digest_stream(&data, a.decoder)?;
        let pictures = digest.pictures;
        let (w, h) = digest.size;
        println!("{}  {}", digest.finish(), a.file.display());
        eprintln!("{pictures} pictures, {w}x{h}");
        return Ok(());
    }
    let mut dec = H264Decoder::with(a.decoder)?;
    if dec.backend() == DecoderChoice::Openh264 && !video::openh264_has_simd() {
        eprintln!(
            "warning: openh264 in this binary was built without its x86 assembly (NASM was missing); run `cargo clean -p openh264-sys2` and rebuild"
        );
    }
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
    // One access unit per call (what the network delivers), so each
    // picture's decode time is its own.
    for au in video::access_units(&data) {
        let t0 = Instant::now();
        dec.decode(au, |p| on_picture(p, t0));
    }
    let t0 = Instant::now();
    dec.flush(|p| on_picture(p, t0));
    let n = decode_ms.len().max(1) as f64;
    let total_d: f64 = decode_ms.iter().sum();
    let total_c: f64 = convert_ms.iter().sum();
    println!(
        "{{\"summary\":true,\"pictures\":{},\"decode_ms_mean\":{:.3},\"convert_ms_mean\":{:.3},\"total_ms_mean\":{:.3},\"converted_pct\":{:.1},\"decoder\":\"{}\",\"openh264_simd\":{},\"errors\":{}}}",
        decode_ms.len(),
        total_d / n,
        total_c / n,
        (total_d + total_c) / n,
        100.0 * converted_px / total_px.max(1.0),
        dec.backend().name(),
        video::openh264_has_simd(),
        dec.stats().errors
    );
    Ok(())
}
