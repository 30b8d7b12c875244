//! Running a stream: `nephele connect` (through a directory, or straight
//! to a gateway) and `nephele demo` (against the reference service started
//! beside the client), in a window or headless, with the stats JSON; and
//! the launcher (`nephele` alone), whose sessions run with the settings'
//! stream options.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nephele_api::DirectoryClient;
use nephele_client::audio::AudioConfig;
use nephele_client::config::{Resolution, Settings};
use nephele_client::demo::{DemoOptions, DemoServer};
use nephele_client::headless::{HeadlessPresenter, play_script};
use nephele_client::input::Script;
use nephele_client::session::{ConnectConfig, Session};
use nephele_client::stats::Stats;
use nephele_client::status::{Observed, Route};
use nephele_client::window::{self, Connector, LauncherSetup, Prepared, Start, WindowOptions};
use nephele_protocol::activity::KeepActive;

use crate::cli::{ConnectArgs, DemoArgs, LoginArgs, Prefs, StreamArgs};
use nephele_client::login::{Login, directory_connector};

use crate::login::{all_roots, directory_url, login_from, picture, progress_printer};

pub(crate) fn connect(a: ConnectArgs, s: &Settings) -> Result<()> {
    let prefs = a.stream.prefs(s)?;
    let Some(gateway) = &a.gateway else {
        let stats = Arc::new(Stats::default());
        if prefs.kiosk.is_some() {
            // A kiosk starts each attempt from its files: a CA file the
            // service's administrator renewed, or settings fixed, are
            // picked up without a restart.
            let (directory, args, settings) = (a.directory.clone(), a.login.clone(), s.clone());
            let (picture, session_stats) = (picture(&prefs), stats.clone());
            let connector: Connector = Arc::new(move |stage: &dyn Fn(String)| {
                let url = directory_url(directory.as_ref(), &settings)?;
                let mut login = login_from(&url, &args, &settings, false)?;
                // Each attempt goes back to the kiosk's desktop while the
                // service still holds it, rather than open another.
                login.reconnect = true;
                directory_connector(login, picture, session_stats.clone())(stage)
            });
            return run_stream(connector, &a.stream, prefs, stats);
        }
        let login = directory_url(a.directory.as_ref(), s)
            .and_then(|url| login_from(&url, &a.login, s, true));
        let connector = match login {
            Ok(login) => directory_connector(login, picture(&prefs), stats.clone()),
            // Started from a menu or at login there is no terminal to read
            // an error on: the window shows it instead.
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
        codec: prefs.codec,
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

pub(crate) fn demo(a: DemoArgs, s: &Settings) -> Result<()> {
    let prefs = a.stream.prefs(s)?;
    let svc = DemoServer::start(&DemoOptions {
        record_input: a.record_input.clone(),
        network: a.network.clone(),
        bitrate: a.bitrate,
        motion: a.motion,
        tone: a.tone.clone(),
        record_mic: a.record_mic.clone(),
        idle_policy: a.idle_policy.clone(),
        chaos: a.chaos.clone(),
    })?;
    let (user, password) = svc.credentials();
    let roots = vec![svc.ca()];
    let login = Login {
        dir: DirectoryClient::new(svc.directory_url(), &roots)?,
        roots,
        user: user.to_string(),
        password: password.to_string(),
        desktop: None,
        pop: a.stream_pop.clone(),
        reconnect: false,
    };
    // The demo's CPU figures are the client's and its service's together.
    nephele_client::stats::count_cpu_of(svc.pid());
    let stats = Arc::new(Stats::default());
    let connector = directory_connector(login, picture(&prefs), stats.clone());
    let res = run_stream(connector, &a.stream, prefs, stats);
    drop(svc);
    res
}

/// The launcher: a window on its pages; each desktop chosen there streams
/// with the settings' options. A kiosk goes straight to its desktop.
pub(crate) fn launch(
    s: &Settings,
    settings_file: Option<&Path>,
    notice: Option<String>,
) -> Result<()> {
    if s.kiosk.enabled {
        return connect(ConnectArgs::default(), s);
    }
    let prefs = StreamArgs::default().prefs(s)?;
    let mut notice = notice;
    let roots = all_roots(&LoginArgs::default(), s).unwrap_or_else(|e| {
        tracing::warn!("{e:#}");
        notice = Some(format!("{e:#}: fix `ca` in the settings file."));
        Vec::new()
    });
    let stats = Arc::new(Stats::default());
    let session_stats = stats.clone();
    let setup = LauncherSetup {
        services_file: nephele_client::launcher::default_path(settings_file),
        roots,
        // Each session streams with the settings in force when it opens
        // (the settings page may have changed them).
        connector_for: Arc::new(move |login: Login, settings: &Settings| {
            let prefs = match StreamArgs::default().prefs(settings) {
                Ok(p) => p,
                Err(e) => {
                    let why = format!("{e:#}");
                    return Arc::new(move |_: &dyn Fn(String)| -> Result<Prepared> {
                        bail!("{why}")
                    });
                }
            };
            let connector = directory_connector(login, picture(&prefs), session_stats.clone());
            stream_options(&StreamArgs::default(), &prefs)(connector)
        }),
        notice,
        settings: s.clone(),
        settings_file: settings_file.map(Path::to_path_buf),
    };
    let opts = window_options(&prefs, None, None);
    window::run(
        Start::Launcher(Box::new(setup)),
        opts,
        stats,
        Arc::new(Observed::default()),
    )?;
    Ok(())
}

/// Every attempt of a stream connects with the stream's own options.
fn stream_options(
    a: &StreamArgs,
    prefs: &Prefs,
) -> impl Fn(Connector) -> Connector + Send + Sync + 'static {
    let save_stream = a.save_stream.clone();
    let audio = prefs.audio.clone();
    let clipboard = prefs.clipboard;
    let (decoder, codec) = (prefs.decoder, prefs.codec);
    move |connector: Connector| -> Connector {
        let (save_stream, audio) = (save_stream.clone(), audio.clone());
        Arc::new(move |stage: &dyn Fn(String)| {
            let mut p = connector(stage)?;
            p.cfg.save_stream.clone_from(&save_stream);
            p.cfg.audio = audio.clone();
            p.cfg.clipboard = clipboard;
            p.cfg.decoder = decoder;
            p.cfg.codec = codec;
            Ok(p)
        })
    }
}

/// The window's options from the stream's preferences.
fn window_options(
    prefs: &Prefs,
    duration: Option<Duration>,
    script: Option<Script>,
) -> WindowOptions {
    WindowOptions {
        duration,
        script,
        title: "Nephele".into(),
        display_hz: prefs.display_hz,
        follow_window: prefs.resolution == Resolution::Window,
        monitor: prefs.monitor,
        typing: prefs.typing,
        keep_active: prefs.keep_active,
        fullscreen: prefs.fullscreen,
        stats_overlay: prefs.stats_overlay,
        mouse: prefs.mouse,
        shortcuts: prefs.shortcuts.clone(),
        kiosk: prefs.kiosk.clone(),
    }
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
    let connector = stream_options(a, &prefs)(connector);
    let observed = Arc::new(Observed::default());
    let (stats, streamed) = if a.headless {
        let prepared = connector(&progress_printer())?;
        let opts = (duration, script, prefs.keep_active);
        run_headless(prepared, opts, stats, observed.clone())?
    } else {
        let opts = window_options(&prefs, duration, script);
        window::run(Start::Connect(connector), opts, stats, observed.clone())?
    };
    let report = stats.report(streamed, &observed);
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
    let json = serde_json::to_string_pretty(&report)? + "\n";
    if let Some(p) = &a.stats_json {
        std::fs::write(p, &json).with_context(|| format!("writing {}", p.display()))?;
    }
    // Kept for support: the last session's figures and latency receipt.
    if let Some(p) = nephele_client::config::last_session_path()
        && let Err(e) = p
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&p, &json))
    {
        tracing::debug!(error = %e, path = %p.display(), "keeping the last session's receipt");
    }
    Ok(())
}

/// A headless session: pictures to the headless presenter, the script
/// played, until the duration passes or the session ends.
fn run_headless(
    prepared: Prepared,
    (duration, script, keep_active): (Option<Duration>, Option<Script>, KeepActive),
    stats: Arc<Stats>,
    observed: Arc<Observed>,
) -> Result<(Arc<Stats>, Duration)> {
    let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let f2 = failure.clone();
    let Prepared { cfg, keep: _keep } = prepared;
    let gateway = cfg.gateway;
    let (presenter, sink) =
        HeadlessPresenter::start(stats.clone()).context("starting the presenter thread")?;
    let session = Session::connect(
        cfg,
        stats.clone(),
        observed,
        Box::new(sink),
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
    if let Some(p) = player {
        let _ = p.join();
    }
    let streamed = start.elapsed();
    session.close().context("closing the session")?;
    drop(presenter);
    if let Ok(Some(f)) = failure.lock().map(|f| f.clone()) {
        bail!("the session ended: {f}");
    }
    Ok((stats, streamed))
}
