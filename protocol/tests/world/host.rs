//! The hosts of the world: their session cores, and their drivers played
//! by a [`Desktop`] (the keys applied, the state replicated) and [`Media`]
//! (frames of deterministic bytes at the session's rate, sized by the rate
//! events, with parity for the reported loss).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use nephele_protocol::activity::Phase;
use nephele_protocol::host::{Accept, HostCore, HostEvent};
use nephele_protocol::rate::{EncoderPlan, parity_loss};
use nephele_protocol::video::Fragmenter;
use nephele_protocol::wire::{Envelope, InputEvent, Message};

use super::{World, frame_bytes, gateway_addr, host_addr};

/// A host's desktop for one session: the keys applied, in order.
#[derive(Debug, Default, Clone)]
pub struct Desktop {
    /// Key usages pressed, in the order applied (restored ones first).
    pub keys: Vec<u16>,
    /// When each key this host applied itself was applied.
    pub applied_at: Vec<Instant>,
    /// Times held input was released.
    pub releases: u32,
    /// The sizes the client's window asked for, in order.
    pub sizes: Vec<(u16, u16)>,
}

impl Desktop {
    fn snapshot(&self) -> Vec<u8> {
        // The newest keys that fit a replication datagram.
        let room = nephele_protocol::wire::MAX_STATE / 2;
        let from = self.keys.len().saturating_sub(room);
        self.keys[from..]
            .iter()
            .flat_map(|k| k.to_be_bytes())
            .collect()
    }

    fn restore(state: &[u8]) -> Self {
        Self {
            keys: state
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
            applied_at: Vec::new(),
            releases: 0,
            sizes: Vec::new(),
        }
    }
}

/// A host's media for one session: frames at its rate.
#[derive(Debug)]
pub struct Media {
    pub running: bool,
    pub asleep: bool,
    keyframe: bool,
    announce: bool,
    gateway: SocketAddr,
    fragmenter: Fragmenter,
    plan: EncoderPlan,
    target: u32,
    loss: Option<u16>,
    next_frame: Instant,
    pub sent_bytes: u64,
    pub frames: u32,
    /// Frames made at each target, for the rate's story.
    pub targets: Vec<(Instant, u32)>,
}

impl Media {
    /// The loss the session's parity is sized for now, per thousand.
    pub fn parity_for_permille(&self) -> u16 {
        (parity_loss(self.loss) * 1000.0).round() as u16
    }
}

/// A host.
pub struct Host {
    pub alive: bool,
    pub core: HostCore,
    pub desktops: HashMap<u64, Desktop>,
    pub media: HashMap<u64, Media>,
    /// Media starts and stops, in order, per session.
    pub media_log: Vec<(u64, &'static str)>,
}

impl World {
    pub(super) fn step_host(&mut self, j: usize) {
        let now = self.now;
        if !self.hosts[j].alive {
            return;
        }
        let me = host_addr(j);
        // Arrivals from every gateway (and other hosts' replication).
        let mut arrived = Vec::new();
        let sources: Vec<SocketAddr> = (0..self.gateways.len())
            .map(gateway_addr)
            .chain((0..self.hosts.len()).map(host_addr))
            .collect();
        for from in sources {
            while let Some(d) = self.link(from, me).poll(now) {
                arrived.push((from, d));
            }
        }
        let host = &mut self.hosts[j];
        for (s, m) in &host.media {
            host.core.video_sent(*s, m.sent_bytes);
        }
        for (from, d) in arrived {
            let _ = self.hosts[j].core.handle_datagram(from, &d, now);
            self.host_events(j);
        }
        let host = &mut self.hosts[j];
        if host.core.poll_timeout().is_some_and(|t| t <= now) {
            host.core.handle_timeout(now);
        }
        self.host_events(j);
        // What the core queued goes before the media's next frame, as the
        // receive thread answers before an encoder has encoded.
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(to) = self.hosts[j].core.poll_transmit(&mut buf) {
            out.push((to, buf.clone()));
        }
        for (to, d) in out {
            self.link(me, to).send(now, &d);
        }
        self.host_media(j);
    }

    fn host_events(&mut self, j: usize) {
        let now = self.now;
        let host = &mut self.hosts[j];
        while let Some(ev) = host.core.poll_event() {
            match ev {
                HostEvent::Open {
                    session,
                    width,
                    height,
                    restore,
                    ..
                } => {
                    let restored = restore.is_some();
                    let desktop = restore
                        .map(|r| Desktop::restore(&r.state))
                        .unwrap_or_default();
                    host.desktops.insert(session, desktop);
                    host.core.accept(
                        session,
                        Accept {
                            width,
                            height,
                            keep_active: false,
                            restored,
                        },
                        now,
                    );
                }
                HostEvent::Route { session, gateway } => {
                    if let Some(m) = host.media.get_mut(&session) {
                        m.gateway = gateway;
                    } else {
                        host.media.insert(
                            session,
                            Media {
                                running: false,
                                asleep: false,
                                keyframe: true,
                                announce: false,
                                gateway,
                                fragmenter: Fragmenter::new(nephele_protocol::MAX_DATAGRAM - 64),
                                plan: EncoderPlan::new(0, (1280, 720), 60, 1100),
                                target: 0,
                                loss: None,
                                next_frame: now,
                                sent_bytes: 0,
                                frames: 0,
                                targets: Vec::new(),
                            },
                        );
                    }
                }
                HostEvent::Input { session, event, .. } => {
                    if let (Some(d), InputEvent::Key { usage, down: true }) =
                        (host.desktops.get_mut(&session), event)
                    {
                        d.keys.push(usage);
                        d.applied_at.push(now);
                    }
                }
                HostEvent::Replicate { session } => {
                    let state = host
                        .desktops
                        .get(&session)
                        .map(Desktop::snapshot)
                        .unwrap_or_default();
                    host.core.replicate(session, &state, now);
                }
                HostEvent::Resize {
                    session,
                    width,
                    height,
                } => {
                    if let Some(d) = host.desktops.get_mut(&session) {
                        d.sizes.push((width, height));
                    }
                }
                HostEvent::Keyframe { session } => {
                    if let Some(m) = host.media.get_mut(&session) {
                        m.keyframe = true;
                    }
                }
                HostEvent::Release { session } => {
                    if let Some(d) = host.desktops.get_mut(&session) {
                        d.releases += 1;
                    }
                }
                HostEvent::MediaStart { session, .. } => {
                    host.media_log.push((session, "start"));
                    if let Some(m) = host.media.get_mut(&session) {
                        m.running = true;
                        m.keyframe = true;
                        m.next_frame = now;
                    }
                }
                HostEvent::MediaStop { session } => {
                    host.media_log.push((session, "stop"));
                    if let Some(m) = host.media.get_mut(&session) {
                        m.running = false;
                    }
                }
                HostEvent::MediaSleep { session, asleep } => {
                    host.media_log
                        .push((session, if asleep { "sleep" } else { "wake" }));
                    if let Some(m) = host.media.get_mut(&session) {
                        m.asleep = asleep;
                        m.next_frame = now;
                    }
                }
                HostEvent::Announce { session } => {
                    if let Some(m) = host.media.get_mut(&session) {
                        m.announce = true;
                    }
                }
                HostEvent::Rate {
                    session,
                    target_bps,
                    loss_permille,
                } => {
                    if let Some(m) = host.media.get_mut(&session) {
                        if m.plan.max_bps == 0 {
                            m.plan = EncoderPlan::new(target_bps.max(1), (1280, 720), 60, 1100);
                            m.plan.max_bps = u32::MAX;
                        }
                        m.target = target_bps;
                        m.loss = loss_permille;
                    }
                }
                HostEvent::Ended { session, .. } => {
                    host.media.remove(&session);
                }
            }
        }
    }

    /// Frames of every running, awake session that are due.
    fn host_media(&mut self, j: usize) {
        let now = self.now;
        let me = host_addr(j);
        let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let host = &mut self.hosts[j];
        let mut announced = Vec::new();
        for (&session, m) in host.media.iter_mut() {
            if !m.running || m.asleep || now < m.next_frame {
                continue;
            }
            let loss = parity_loss(m.loss);
            let (video_bps, fps) = m.plan.plan(m.target, loss);
            m.plan.fps = fps;
            m.next_frame += m.plan.interval();
            if m.next_frame < now {
                m.next_frame = now + m.plan.interval();
            }
            let key = std::mem::take(&mut m.keyframe);
            let budget = (f64::from(video_bps) / 8.0 / f64::from(fps.max(1))) as usize;
            let len = if key { budget * 3 } else { budget }.clamp(200, 400_000);
            if std::mem::take(&mut m.announce) {
                let mut b = Vec::new();
                Envelope {
                    session,
                    message: Message::Status {
                        phase: Phase::Streaming,
                        ms: 0,
                    },
                }
                .encode(&mut b);
                out.push((m.gateway, b));
                announced.push(session);
            }
            let id = m.fragmenter.next_frame_id();
            let data = frame_bytes(id, len);
            let capture_us = host.core.host_us(now);
            let gateway = m.gateway;
            let mut sent = 0;
            m.fragmenter.fragment(&data, key, capture_us, loss, |msg| {
                sent += msg.len() as u64;
                let mut b = Vec::with_capacity(msg.len() + 8);
                b.extend_from_slice(&session.to_be_bytes());
                b.extend_from_slice(msg);
                out.push((gateway, b));
            });
            m.sent_bytes += sent;
            m.frames += 1;
            m.targets.push((now, m.target));
        }
        for s in announced {
            self.hosts[j].core.resumed(s, now);
        }
        for (to, d) in out {
            self.link(me, to).send(now, &d);
        }
    }
}
