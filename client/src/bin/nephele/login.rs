//! Signing in and choosing a PoP: the CAs trusted, the user, the password,
//! the directory's session and the probes, as `nephele probe` shows them
//! and as every stream's connect thread runs them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use nephele_api::DirectoryClient;
use nephele_client::config::Settings;
use nephele_client::discovery::{self, Reprober};
use nephele_client::stats::Stats;
use nephele_client::window::{Connector, Prepared};
use rustls::pki_types::CertificateDer;

use crate::cli::{LoginArgs, Prefs, ProbeArgs};

pub(crate) fn load_roots(ca: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>> {
    let mut roots = Vec::new();
    for p in ca {
        roots.extend(
            nephele_api::trust::read_cert_pem(p)
                .with_context(|| format!("loading the CA certificate {}", p.display()))?,
        );
    }
    Ok(roots)
}

/// The flags' CAs and the settings' CAs.
pub(crate) fn all_roots(login: &LoginArgs, s: &Settings) -> Result<Vec<CertificateDer<'static>>> {
    let paths: Vec<PathBuf> = login.ca.iter().chain(&s.ca).cloned().collect();
    load_roots(&paths)
}

/// `--directory`, else the settings' directory.
pub(crate) fn directory_url(given: Option<&String>, s: &Settings) -> Result<String> {
    given.or(s.directory.as_ref()).cloned().context(
        "no directory to sign in to: pass --directory https://HOST:PORT or set `directory` in the settings file (see `nephele config`)",
    )
}

/// Where the user asked to connect, and as whom.
pub(crate) struct Login {
    pub(crate) dir: DirectoryClient,
    pub(crate) roots: Vec<CertificateDer<'static>>,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) desktop: Option<String>,
    pub(crate) pop: Option<String>,
}

impl Login {
    pub(crate) fn new(url: &str, login: &LoginArgs, s: &Settings, ask: bool) -> Result<Self> {
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

/// `--user` or the settings' user, else `$NEPHELE_USER`, else the login name.
pub(crate) fn user_name(given: Option<&str>) -> Result<String> {
    given
        .map(str::to_string)
        .or_else(|| std::env::var("NEPHELE_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .filter(|u| !u.is_empty())
        .context("no user name: pass --user NAME or set `user` in the settings file")
}

/// Signs in, opens a session, probes and chooses, telling each stage.
pub(crate) fn sign_in_and_choose(
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
pub(crate) fn directory_connector(login: Login, prefs: &Prefs, stats: Arc<Stats>) -> Connector {
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

pub(crate) fn probe(a: ProbeArgs, s: &Settings) -> Result<()> {
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
pub(crate) fn progress_printer() -> impl Fn(String) {
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
