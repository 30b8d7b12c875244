//! Signing in and choosing a PoP: the directory's session and the probes,
//! as `nephele probe` shows them and as every stream's connect thread (the
//! command line's and the launcher's) runs them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use nephele_api::DirectoryClient;
use rustls::pki_types::CertificateDer;

use crate::discovery::{self, Reprober};
use crate::session::ConnectConfig;
use crate::stats::Stats;

/// What the connect thread made ready for a session.
pub struct Prepared {
    /// Where and how to connect.
    pub cfg: ConnectConfig,
    /// Kept alive as long as the session (background probes).
    pub keep: Option<Box<dyn Send>>,
}

/// Signs in, probes and chooses, telling each stage as it starts; runs on
/// the connect thread (the window's, again for every retry).
pub type Connector = Arc<dyn Fn(&dyn Fn(String)) -> Result<Prepared> + Send + Sync>;

/// Where the user asked to connect, and as whom.
pub struct Login {
    pub dir: DirectoryClient,
    pub roots: Vec<CertificateDer<'static>>,
    pub user: String,
    pub password: String,
    pub desktop: Option<String>,
    pub pop: Option<String>,
    /// Go back to the user's open session of the desktop, if there is one
    /// (the launcher, whose retries then return to the same desktop).
    pub reconnect: bool,
}

/// Signs in, opens a session, probes and chooses, telling each stage.
pub fn sign_in_and_choose(
    login: &Login,
    stage: &dyn Fn(String),
) -> Result<(discovery::Opened, discovery::Choice)> {
    stage(format!(
        "signing in to {} as {}…",
        login.dir.url(),
        login.user
    ));
    let progress = |done, total| {
        stage(if done == 0 {
            format!("probing {total} PoPs…")
        } else {
            format!("probing {total} PoPs: {done} answered…")
        });
    };
    // The PoPs measured before the session opens, so it goes to a host
    // near the nearest; measured again after only when that failed.
    let (opened, measured) = discovery::open_measured(
        &login.dir,
        &login.user,
        &login.password,
        login.desktop.as_deref(),
        login.reconnect,
        progress,
    )?;
    let mut choice = match measured {
        Some(c) => c,
        None => discovery::choose(&opened.grant, opened.listed_at, progress)?,
    };
    if let Some(pop) = &login.pop
        && !choice.prefer(pop)
    {
        tracing::warn!(pop = %pop, "the preferred PoP did not answer; using the nearest");
    }
    Ok((opened, choice))
}

/// Everything from signing in to the connect configuration, as the window's
/// connect thread (or the headless path) runs it: again on every retry.
pub fn directory_connector(
    login: Login,
    picture: discovery::Picture,
    stats: Arc<Stats>,
) -> Connector {
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
