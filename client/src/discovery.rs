//! Finding the service: sign in to the directory, pick a desktop, open a
//! session, probe every candidate gateway and rank them.
//!
//! Probing drives the sans-IO [`Prober`] over one UDP socket on the calling
//! thread: all candidates are probed at once, replies are timed against the
//! send times, a silent candidate is skipped at the prober's deadline. The
//! ranked list is kept, so the session can fail over to the next PoP, and
//! [`Reprober`] re-measures in the background with hysteresis.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nephele_api::directory::{Catalog, CatalogEntry, GatewayInfo, SessionGrant};
use nephele_api::{DirClientError, DirectoryClient};
use nephele_protocol::probe::{
    CandidateState, ProbePlan, ProbeResult, Prober, RankWeights, SwitchPolicy, Switcher, rank,
    score,
};
use serde::Serialize;

use crate::session::{ConnectConfig, Fallback};
use crate::stats::Stats;
use crate::status::Route;

/// Errors finding a gateway.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The directory refused or could not be reached.
    #[error(transparent)]
    Directory(#[from] DirClientError),
    /// The account may open nothing.
    #[error("your account may not open any desktop")]
    EmptyCatalog,
    /// The requested desktop is not in the catalog.
    #[error("`{wanted}` is not among your desktops ({available})")]
    NoSuchDesktop {
        /// What was asked for.
        wanted: String,
        /// What exists.
        available: String,
    },
    /// No candidate answered its probes.
    #[error("none of the {0} gateways answered latency probes: is UDP blocked on this network?")]
    NoneAnswered(usize),
    /// The probe socket failed.
    #[error("probing: {0}")]
    Io(#[from] std::io::Error),
}

/// What signing in and opening a session produced.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The desktop chosen.
    pub desktop: CatalogEntry,
    /// The directory's answer: token and candidate gateways.
    pub grant: SessionGrant,
    /// When the gateway list arrived (decision times count from here).
    pub listed_at: Instant,
}

/// Signs in and reads the catalog: the user's token, the catalog, and the
/// entry `desktop` names (or the first).
fn signed_in_entry(
    dir: &DirectoryClient,
    user: &str,
    password: &str,
    desktop: Option<&str>,
) -> Result<(String, Catalog, CatalogEntry), DiscoveryError> {
    let signed = dir.sign_in(user, password)?;
    let catalog = dir.catalog(&signed.token)?;
    let entry = match desktop {
        Some(want) => catalog
            .desktops
            .iter()
            .find(|d| d.id == want)
            .cloned()
            .ok_or_else(|| DiscoveryError::NoSuchDesktop {
                wanted: want.into(),
                available: catalog
                    .desktops
                    .iter()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        None => catalog
            .desktops
            .first()
            .cloned()
            .ok_or(DiscoveryError::EmptyCatalog)?,
    };
    Ok((signed.token, catalog, entry))
}

/// Signs in, reads the catalog, and opens a session on `desktop` (or the
/// first entry of the catalog), or with `reconnect` goes back to the one
/// the user has open there.
pub fn open_session(
    dir: &DirectoryClient,
    user: &str,
    password: &str,
    desktop: Option<&str>,
    reconnect: bool,
) -> Result<Opened, DiscoveryError> {
    let (token, _, entry) = signed_in_entry(dir, user, password, desktop)?;
    let grant = dir.create_session(&token, &entry.id, reconnect)?;
    Ok(Opened {
        desktop: entry,
        grant,
        listed_at: Instant::now(),
    })
}

/// [`open_session`], measuring first the gateways the catalog lists (the
/// probes carry the user's token) and telling the directory the PoPs
/// nearest first, so the session goes to a host of the nearest site with
/// room. The measurement is returned when it stands for the session's
/// gateways (the same ones); `None` asks the caller to probe them.
pub fn open_measured(
    dir: &DirectoryClient,
    user: &str,
    password: &str,
    desktop: Option<&str>,
    reconnect: bool,
    progress: impl FnMut(usize, usize),
) -> Result<(Opened, Option<Choice>), DiscoveryError> {
    let (token, catalog, entry) = signed_in_entry(dir, user, password, desktop)?;
    let listed_at = Instant::now();
    let measured = if catalog.gateways.is_empty() {
        None
    } else {
        match choose_among(&catalog.gateways, token.as_bytes(), listed_at, progress) {
            Ok(c) => Some(c),
            Err(e) => {
                // Gateways that take only session tokens: measured after.
                tracing::info!(error = %e, "measuring before opening the session failed");
                None
            }
        }
    };
    let near: Vec<String> = measured
        .iter()
        .flat_map(|c| &c.ranked)
        .filter(|r| r.score.is_some())
        .map(|r| r.pop.clone())
        .collect();
    let grant = dir.create_session_near(&token, &entry.id, reconnect, &near)?;
    let ids = |g: &[GatewayInfo]| {
        let mut v: Vec<String> = g.iter().map(|g| g.id.clone()).collect();
        v.sort();
        v
    };
    let stands = ids(&grant.gateways) == ids(&catalog.gateways);
    Ok((
        Opened {
            desktop: entry,
            grant,
            listed_at,
        },
        measured.filter(|_| stands),
    ))
}

/// One measured PoP.
#[derive(Debug, Clone, Serialize)]
pub struct PopReport {
    /// PoP id.
    pub pop: String,
    /// Gateway id.
    pub gateway_id: String,
    /// Region label.
    pub region: String,
    /// QUIC address.
    pub address: String,
    /// `usable`, `refused` or `silent`.
    pub state: &'static str,
    /// Shortest round trip, ms.
    pub rtt_min_ms: f64,
    /// Median round trip, ms.
    pub rtt_median_ms: f64,
    /// Jitter, ms.
    pub jitter_ms: f64,
    /// Fraction of probes lost.
    pub loss: f64,
    /// Advertised load, 0–1.
    pub load: f64,
    /// Ranking score (lower is better); `null` when unusable.
    pub score: Option<f64>,
    #[serde(skip)]
    /// The directory's entry.
    pub info: GatewayInfo,
}

/// The outcome of probing: candidates best first, and how long deciding took.
#[derive(Debug, Clone)]
pub struct Choice {
    /// Every candidate, best first; unusable ones last.
    pub ranked: Vec<PopReport>,
    /// From the list's arrival to the decision.
    pub decision: Duration,
}

impl Choice {
    /// The best usable PoP.
    pub fn best(&self) -> Option<&PopReport> {
        self.ranked.first().filter(|p| p.score.is_some())
    }

    /// Puts the PoP named `pop` first when it answered (the user's
    /// preference over the measurement); false when it did not.
    pub fn prefer(&mut self, pop: &str) -> bool {
        let Some(i) = self
            .ranked
            .iter()
            .position(|p| p.pop == pop && p.score.is_some())
        else {
            return false;
        };
        self.ranked[..=i].rotate_right(1);
        true
    }

    /// Usable PoPs, best first (the failover order).
    pub fn usable(&self) -> impl Iterator<Item = &PopReport> {
        self.ranked.iter().filter(|p| p.score.is_some())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(info: &GatewayInfo, r: &ProbeResult, w: &RankWeights) -> PopReport {
    PopReport {
        pop: info.pop.clone(),
        gateway_id: info.id.clone(),
        region: info.region.clone(),
        address: info.address.clone(),
        state: match r.state {
            CandidateState::Usable => "usable",
            CandidateState::Refused => "refused",
            CandidateState::Silent => "silent",
        },
        rtt_min_ms: ms(r.rtt_min),
        rtt_median_ms: ms(r.rtt_median),
        jitter_ms: ms(r.jitter),
        loss: r.loss,
        load: r.load,
        score: score(r, w),
        info: info.clone(),
    }
}

/// Resolves each candidate's probe address (IPv4; others count as silent).
fn probe_targets(gateways: &[GatewayInfo]) -> Vec<Option<SocketAddr>> {
    gateways
        .iter()
        .map(|g| {
            g.probe_address
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.find(SocketAddr::is_ipv4))
        })
        .collect()
}

/// Measures every candidate once; `progress(answered, total)` is called as
/// candidates first answer. Returns raw results in candidate order.
pub fn measure(
    gateways: &[GatewayInfo],
    token: &[u8],
    plan: ProbePlan,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<ProbeResult>, std::io::Error> {
    let targets = probe_targets(gateways);
    let by_addr: HashMap<SocketAddr, usize> = targets
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.map(|a| (a, i)))
        .collect();
    let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    let start = Instant::now();
    let mut prober = Prober::new(gateways.len(), token, plan, start);
    let mut out = Vec::with_capacity(nephele_protocol::MAX_DATAGRAM);
    let mut buf = [0u8; 64];
    let mut heard = vec![false; gateways.len()];
    let mut answered = 0;
    progress(0, gateways.len());
    loop {
        let now = Instant::now();
        while let Some(i) = prober.poll_transmit(now, &mut out) {
            if let Some(a) = targets[i] {
                // A send error (no route) just leaves that candidate silent.
                let _ = sock.send_to(&out, a);
            }
        }
        if prober.is_done(now) {
            break;
        }
        // Short waits keep replies timed precisely and progress current.
        let wait = prober
            .poll_timeout()
            .saturating_duration_since(now)
            .clamp(Duration::from_micros(200), Duration::from_millis(5));
        sock.set_read_timeout(Some(wait))?;
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let at = Instant::now();
            if let Some(&i) = by_addr.get(&from) {
                prober.handle_reply(i, &buf[..n], at);
                if !heard[i] {
                    heard[i] = true;
                    answered += 1;
                    progress(answered, gateways.len());
                }
            }
        }
    }
    Ok(prober.results(Instant::now()))
}

/// Probes the granted gateways and ranks them.
pub fn choose(
    grant: &SessionGrant,
    listed_at: Instant,
    progress: impl FnMut(usize, usize),
) -> Result<Choice, DiscoveryError> {
    choose_among(&grant.gateways, grant.token.as_bytes(), listed_at, progress)
}

/// Probes `gateways` with `token` and ranks them.
fn choose_among(
    gateways: &[GatewayInfo],
    token: &[u8],
    listed_at: Instant,
    progress: impl FnMut(usize, usize),
) -> Result<Choice, DiscoveryError> {
    let w = RankWeights::default();
    let results = measure(gateways, token, ProbePlan::default(), progress)?;
    let order = rank(&results, &w);
    let decision = listed_at.elapsed();
    let ranked: Vec<PopReport> = order
        .iter()
        .map(|&i| report(&gateways[i], &results[i], &w))
        .collect();
    let choice = Choice { ranked, decision };
    if choice.best().is_none() {
        return Err(DiscoveryError::NoneAnswered(gateways.len()));
    }
    Ok(choice)
}

/// Picture the client asks for.
#[derive(Debug, Clone, Copy)]
pub struct Picture {
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// Frames per second.
    pub fps: u8,
}

/// The grant's gateways as reconnect targets, in the directory's order
/// (those whose address does not resolve are left out).
pub fn fallbacks_of(grant: &SessionGrant) -> Vec<Fallback> {
    grant
        .gateways
        .iter()
        .filter_map(|g| {
            Some(Fallback {
                gateway: g.address.to_socket_addrs().ok()?.next()?,
                server_name: g.server_name.clone(),
                route: Route {
                    gateway_id: g.id.clone(),
                    pop: g.pop.clone(),
                },
            })
        })
        .collect()
}

/// Renews a session through the directory with its resume token: a fresh
/// session token and the gateways live now. Each resume token is good
/// once; the answer's replaces it for the next renewal, and the newest
/// ends the session at log-off.
pub fn renewer(dir: DirectoryClient, resume_token: String) -> crate::session::Renew {
    use std::sync::{Arc, Mutex};
    let current = Arc::new(Mutex::new(resume_token));
    let (held, ender) = (current.clone(), dir.clone());
    crate::session::Renew {
        renew: Arc::new(move || {
            let mut token = current.lock().map_err(|e| e.to_string())?;
            let g = dir.resume_session(&token).map_err(|e| e.to_string())?;
            if let Some(next) = &g.resume_token {
                token.clone_from(next);
            }
            Ok(crate::session::Renewed {
                gateways: fallbacks_of(&g),
                token: g.token.into_bytes(),
            })
        }),
        end: Arc::new(move || {
            let token = held.lock().map_err(|e| e.to_string())?;
            ender.end_session(&token).map_err(|e| e.to_string())
        }),
    }
}

/// How to connect: the best PoP, then every other usable one as a fallback.
pub fn connect_config(
    choice: &Choice,
    grant: &SessionGrant,
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    picture: Picture,
) -> Result<ConnectConfig, DiscoveryError> {
    let mut targets = choice.usable().filter_map(|p| {
        let addr = p.address.to_socket_addrs().ok()?.next()?;
        Some(Fallback {
            gateway: addr,
            server_name: p.info.server_name.clone(),
            route: Route {
                gateway_id: p.gateway_id.clone(),
                pop: p.pop.clone(),
            },
        })
    });
    let first = targets
        .next()
        .ok_or(DiscoveryError::NoneAnswered(grant.gateways.len()))?;
    Ok(ConnectConfig {
        gateway: first.gateway,
        server_name: first.server_name,
        roots,
        width: picture.width,
        height: picture.height,
        fps: picture.fps,
        token: grant.token.clone().into_bytes(),
        route: first.route,
        fallbacks: targets.collect(),
        save_stream: None,
        audio: crate::audio::AudioConfig::default(),
        renew: None,
        clipboard: false,
        decoder: crate::video::DecoderChoice::default(),
        codec: crate::video::CodecChoice::default(),
    })
}

/// Re-probes the session's candidates in the background and reports when
/// another PoP has become clearly and lastingly better (see [`Switcher`]).
#[derive(Debug)]
pub struct Reprober {
    stop: Arc<AtomicBool>,
}

impl Reprober {
    /// Starts re-probing every `every`, beginning on `current` (an index
    /// into `grant.gateways`).
    pub fn start(
        grant: SessionGrant,
        current: usize,
        every: Duration,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("nephele-reprobe".into())
            .spawn(move || {
                let w = RankWeights::default();
                let mut switcher = Switcher::new(current, SwitchPolicy::default());
                loop {
                    let until = Instant::now() + every;
                    while Instant::now() < until {
                        if flag.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let Ok(results) = measure(
                        &grant.gateways,
                        grant.token.as_bytes(),
                        ProbePlan::default(),
                        |_, _| {},
                    ) else {
                        continue;
                    };
                    let scores: Vec<Option<f64>> = results.iter().map(|r| score(r, &w)).collect();
                    let from = switcher.current();
                    if let Some(to) = switcher.observe(&scores) {
                        stats.pop_switch_offers.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            from = %grant.gateways[from].pop,
                            to = %grant.gateways[to].pop,
                            from_score = ?scores[from],
                            to_score = ?scores[to],
                            "another PoP is now clearly better than the one in use"
                        );
                    }
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for Reprober {
    /// Asks the thread to stop without waiting: a measurement in flight
    /// (up to a few seconds when nothing answers) must not hold up leaving.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
