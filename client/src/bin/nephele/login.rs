//! Who signs in where, from the flags and the settings: the CAs trusted,
//! the user, the password; and `nephele probe`, which shows the PoPs'
//! measurements and the choice ([`nephele_client::login`] does the work).

use std::path::PathBuf;

use anyhow::{Context, Result};
use nephele_api::DirectoryClient;
use nephele_client::config::Settings;
use nephele_client::discovery;
use nephele_client::login::{Login, sign_in_and_choose};
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

/// Where the flags and settings say to connect, and as whom.
pub(crate) fn login_from(url: &str, login: &LoginArgs, s: &Settings, ask: bool) -> Result<Login> {
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
    Ok(Login {
        dir,
        roots,
        user,
        password,
        desktop: login.desktop.clone().or_else(|| s.desktop.clone()),
        pop: (!pop.is_empty() && pop != "auto").then_some(pop),
        // A script's connect opens a session of its own each time.
        reconnect: false,
    })
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

/// The picture the flags and settings ask for.
pub(crate) fn picture(prefs: &Prefs) -> discovery::Picture {
    discovery::Picture {
        width: prefs.width,
        height: prefs.height,
        fps: prefs.fps,
    }
}

pub(crate) fn probe(a: ProbeArgs, s: &Settings) -> Result<()> {
    let url = directory_url(a.directory.as_ref(), s)?;
    let login = login_from(&url, &a.login, s, true)?;
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
