//! `nephele`: the Nephele client.
//!
//! Without a command it opens the launcher: add a service, sign in, choose
//! a desktop, all in the window. `connect` signs in to a directory, probes the PoPs, and streams the
//! desktop from the nearest into a window (or headless); `probe` shows the
//! PoP measurements and the choice; `demo` does it all against the reference
//! service started beside it; `decode` runs an H.264 file through the
//! client's own decode path; `config` shows and checks the settings file.
//!
//! The command line is defined in [`cli`]; signing in and choosing a PoP in
//! [`login`]; running a stream (window or headless, demo or not) in
//! [`stream`]; `decode` and `config` in [`tools`].

mod cli;
mod login;
mod stream;
mod tools;

use std::path::Path;

use anyhow::Result;
use clap::Parser;
use nephele_client::config;

use cli::{Cli, Command};

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
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // RUST_LOG as `target=level` directives (no span filters: the lighter
    // Targets filter keeps a regex engine out of the client).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| {
            Targets::new()
                .with_default(LevelFilter::WARN)
                .with_target("nephele_client", LevelFilter::INFO)
        })
        .with_target(LOG_ONLY, LevelFilter::OFF);
    // Colours only for a terminal: a file or a journal gets plain text.
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::WARN)
                    .with_target("nephele_client", LevelFilter::INFO)
                    .with_target("nephele", LevelFilter::INFO)
                    .with_target(LOG_ONLY, LevelFilter::INFO),
            )
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
    let Some(command) = cli.command else {
        // Started from a menu: a settings file with a mistake opens the
        // launcher on the defaults, with the mistake shown.
        let (settings, notice) = match config::load(path.clone(), explicit) {
            Ok(l) => (l.settings, None),
            Err(e) => {
                tracing::warn!("{e}");
                (
                    config::Settings::default(),
                    Some(format!(
                        "{e}. Nephele uses its defaults until the file is fixed."
                    )),
                )
            }
        };
        return stream::launch(&settings, path.as_deref(), notice);
    };
    // The example needs no settings: a broken file must not hide it.
    if let Command::Config(a) = &command
        && a.example
    {
        print!("{}", config::example());
        return Ok(());
    }
    let loaded = config::load(path.clone(), explicit)?;
    for key in &loaded.unknown {
        let file = loaded.path.as_deref().unwrap_or(Path::new("?")).display();
        tracing::warn!("unknown setting `{key}` in {file} (ignored)");
    }
    match command {
        Command::Connect(a) => stream::connect(a, &loaded.settings),
        Command::Probe(a) => login::probe(a, &loaded.settings),
        Command::Demo(a) => stream::demo(a, &loaded.settings),
        Command::Decode(a) => tools::decode(a),
        Command::Config(_) => tools::show_config(path.as_deref(), &loaded),
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
