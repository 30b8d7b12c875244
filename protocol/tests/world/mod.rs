//! A world of session cores on a virtual clock: one client core, gateway
//! cores and host cores, wired by simulated links, as quinn-proto's
//! `tests/util.rs` pairs two endpoints. Everything moves one millisecond
//! per step; nothing reads a real clock or opens a socket.
//!
//! * Client ↔ gateway is a QUIC connection in miniature: three reliable
//!   ordered streams (control both ways, input and recovery up) with a
//!   one-way delay, and datagrams both ways over [`Link`]s that may lose,
//!   delay, reorder and cap. A killed gateway's connection goes silent;
//!   the client notices after QUIC's idle timeout and reconnects through
//!   the next gateway ([`Reconnect`]).
//! * Gateway ↔ host is UDP: a [`Link`] per direction and pair.
//! * A host's driver is played by [`Desktop`] (the keys applied, the
//!   state replicated) and [`Media`] (frames of deterministic bytes at the
//!   session's rate, sized by the rate events, with parity for the
//!   reported loss).

#![allow(dead_code)] // each scenario uses its own parts

mod host;

use std::collections::{BTreeMap, HashMap, VecDeque};

pub use host::Host;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nephele_protocol::activity::{ActivityReport, IdlePolicy, Phase};
use nephele_protocol::client::reconnect::{Failure, Reconnect, Step};
use nephele_protocol::client::{ClientConfig, ClientCore, ClientEvent};
use nephele_protocol::framing::Lane;
use nephele_protocol::gateway::{Dest, FromHost, GatewayEvent, GatewaySession, LaneReader, Target};
use nephele_protocol::host::{HostCore, HostCoreConfig};
use nephele_protocol::impair::Impairment;
use nephele_protocol::sim::Link;
use nephele_protocol::wire::InputEvent;

/// QUIC's idle timeout between client and gateway.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(900);

/// The bytes of frame `id` of a session, `len` long: checked on arrival.
pub fn frame_bytes(id: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 ^ id.wrapping_mul(2_654_435_761)) as u8)
        .collect()
}

/// The address of gateway `i` toward hosts, and of host `j`.
pub fn gateway_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 1, i as u8 + 1], 7000))
}
/// See [`gateway_addr`].
pub fn host_addr(j: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 2, j as u8 + 1], 7400))
}

/// One direction of a reliable ordered stream: bytes arrive in order,
/// each write after `delay`.
#[derive(Debug, Default)]
struct Stream {
    queue: VecDeque<(Instant, Vec<u8>)>,
}

impl Stream {
    fn write(&mut self, at: Instant, bytes: &[u8]) {
        // In order: never before what was written earlier.
        let at = self.queue.back().map_or(at, |(t, _)| at.max(*t));
        self.queue.push_back((at, bytes.to_vec()));
    }

    fn read(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|(t, _)| *t <= now) {
            self.queue.pop_front().map(|(_, b)| b)
        } else {
            None
        }
    }
}

/// How the client–gateway connection behaves.
#[derive(Debug, Clone)]
pub struct PathSpec {
    /// One-way delay of the streams and of datagrams.
    pub delay: Duration,
    /// What happens to the gateway's datagrams toward the client.
    pub down: Impairment,
    /// What happens to the client's datagrams toward the gateway.
    pub up: Impairment,
}

impl PathSpec {
    /// A clean path with this one-way delay.
    pub fn clean(delay: Duration) -> Self {
        let imp = Impairment {
            delay,
            ..Impairment::default()
        };
        Self {
            delay,
            down: imp.clone(),
            up: imp,
        }
    }
}

/// A client–gateway connection.
struct Conn {
    gateway: usize,
    delay: Duration,
    /// Client → gateway: control, input, recovery.
    up: [Stream; 3],
    /// Gateway → client control.
    down: Stream,
    dgram_down: Link,
    dgram_up: Link,
    /// Dead from then on (its gateway was killed): nothing passes, and the
    /// client notices after the idle timeout.
    dead_since: Option<Instant>,
    /// The gateway's side.
    session: GatewaySession,
    readers: [LaneReader; 3],
    /// The gateway closed it (the session ended there).
    closed: bool,
}

fn lane_index(l: Lane) -> usize {
    match l {
        Lane::Control => 0,
        Lane::Input => 1,
        Lane::Recovery => 2,
    }
}

/// A gateway.
pub struct Gateway {
    pub alive: bool,
    /// Sessions it relayed, by the end they came to.
    pub ended: Vec<String>,
    /// Failovers it made.
    pub failovers: u32,
}

/// The client's record of the session.
#[derive(Debug, Default)]
pub struct Seen {
    /// Frames delivered, with their arrival.
    pub frames: Vec<(Instant, u32)>,
    /// Frames given up.
    pub lost: u64,
    /// Phases told, with their time.
    pub phases: Vec<(Instant, Phase, u32)>,
    /// Welcomes (paths) and takeovers.
    pub welcomes: u32,
    pub takeovers: u32,
    /// When the client learned of each takeover.
    pub taken_over_at: Vec<Instant>,
    /// Input acknowledged.
    pub acked: u64,
    /// When each reconnect began and ended.
    pub lost_paths: Vec<Instant>,
    pub paths: Vec<Instant>,
    /// Keys pushed, in order.
    pub keys_sent: Vec<u16>,
    /// Corrupt frames (bytes not what was sent).
    pub corrupt: u32,
}

/// Where the client is with its connection.
enum ClientState {
    Connected(usize),
    Reconnecting {
        plan: Reconnect<usize>,
        /// The connection being tried, with its gateway's index.
        trying: Option<(usize, Instant)>,
        waiting: Option<Instant>,
    },
    Gone,
}

/// The world.
pub struct World {
    pub now: Instant,
    pub t0: Instant,
    pub client: ClientCore,
    client_state: ClientState,
    pub seen: Seen,
    last_input: Instant,
    fresh_input: bool,
    conns: Vec<Conn>,
    pub gateways: Vec<Gateway>,
    pub hosts: Vec<Host>,
    links: BTreeMap<(SocketAddr, SocketAddr), Link>,
    pub path: PathSpec,
    /// The impairment of the gateway ↔ host hops.
    pub service_net: Impairment,
    pub policy: IdlePolicy,
    pub session: u64,
}

/// How the world starts.
pub struct Setup {
    pub gateways: usize,
    pub hosts: usize,
    pub path: PathSpec,
    pub service_net: Impairment,
    pub policy: IdlePolicy,
    pub fps: u8,
    pub bitrate: u32,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            gateways: 1,
            hosts: 1,
            path: PathSpec::clean(Duration::from_millis(10)),
            service_net: Impairment {
                delay: Duration::from_micros(500),
                ..Impairment::default()
            },
            policy: IdlePolicy::NEVER,
            fps: 60,
            bitrate: 0,
        }
    }
}

impl World {
    /// The world of `setup`, the client connecting through gateway 0.
    pub fn new(setup: Setup) -> Self {
        let t0 = Instant::now();
        let cfg = ClientConfig {
            width: 1280,
            height: 720,
            fps: setup.fps,
            token: b"session:42".to_vec(),
            client_session: 7,
            codecs: Default::default(),
        };
        let mut w = Self {
            now: t0,
            t0,
            client: ClientCore::new(cfg, t0, t0),
            client_state: ClientState::Gone,
            seen: Seen::default(),
            last_input: t0,
            fresh_input: false,
            conns: Vec::new(),
            gateways: (0..setup.gateways)
                .map(|_| Gateway {
                    alive: true,
                    ended: Vec::new(),
                    failovers: 0,
                })
                .collect(),
            hosts: (0..setup.hosts)
                .map(|_| Host {
                    alive: true,
                    core: HostCore::new(
                        HostCoreConfig {
                            bitrate: setup.bitrate,
                            ..HostCoreConfig::default()
                        },
                        t0,
                    ),
                    desktops: HashMap::new(),
                    media: HashMap::new(),
                    media_log: Vec::new(),
                })
                .collect(),
            links: BTreeMap::new(),
            path: setup.path,
            service_net: setup.service_net,
            policy: setup.policy,
            session: 42,
        };
        let conn = w.open_conn(0);
        let mut plan = Reconnect::first((0..w.gateways.len()).collect());
        let _ = plan.next(t0);
        w.client_state = ClientState::Reconnecting {
            plan,
            trying: Some((conn, t0)),
            waiting: None,
        };
        w.client.start_path(t0);
        w
    }

    /// Milliseconds since the start.
    pub fn ms(&self) -> u64 {
        self.now.duration_since(self.t0).as_millis() as u64
    }

    /// The time `ms` after the start.
    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn open_conn(&mut self, gateway: usize) -> usize {
        let seed = self.conns.len() as u64 * 10 + 1;
        let mut down = self.path.down.clone();
        down.seed = down.seed.wrapping_add(seed);
        let mut up = self.path.up.clone();
        up.seed = up.seed.wrapping_add(seed + 1);
        self.conns.push(Conn {
            gateway,
            delay: self.path.delay,
            up: Default::default(),
            down: Stream::default(),
            dgram_down: Link::new(down),
            dgram_up: Link::new(up),
            dead_since: (!self.gateways[gateway].alive).then_some(self.now),
            session: GatewaySession::new(self.now),
            readers: Default::default(),
            closed: false,
        });
        self.conns.len() - 1
    }

    fn current_conn(&self) -> Option<usize> {
        match &self.client_state {
            ClientState::Connected(c) => Some(*c),
            ClientState::Reconnecting {
                trying: Some((c, _)),
                ..
            } => Some(*c),
            _ => None,
        }
    }

    fn link(&mut self, from: SocketAddr, to: SocketAddr) -> &mut Link {
        let seed = self.links.len() as u64 * 7 + 3;
        let net = &self.service_net;
        self.links.entry((from, to)).or_insert_with(|| {
            let mut imp = net.clone();
            imp.seed = imp.seed.wrapping_add(seed);
            Link::new(imp)
        })
    }

    /// The user presses and releases a key now.
    pub fn type_key(&mut self, usage: u16) {
        for down in [true, false] {
            if self
                .client
                .push_input(InputEvent::Key { usage, down })
                .is_ok()
                && down
            {
                self.seen.keys_sent.push(usage);
            }
        }
        self.last_input = self.now;
        self.fresh_input = true;
    }

    /// Kills gateway `i` as a crash would.
    pub fn kill_gateway(&mut self, i: usize) {
        self.gateways[i].alive = false;
        let now = self.now;
        for c in self.conns.iter_mut().filter(|c| c.gateway == i) {
            c.dead_since.get_or_insert(now);
        }
    }

    /// Kills host `j` as a crash would.
    pub fn kill_host(&mut self, j: usize) {
        self.hosts[j].alive = false;
    }

    /// Runs until `ms` after the start, calling `each` every step.
    pub fn run_until(&mut self, ms: u64, mut each: impl FnMut(&mut Self)) {
        let end = self.at(ms);
        while self.now < end {
            each(self);
            self.step();
            self.now += Duration::from_millis(1);
        }
    }

    /// One millisecond of the world.
    pub fn step(&mut self) {
        self.step_client();
        for c in 0..self.conns.len() {
            self.step_gateway(c);
        }
        for j in 0..self.hosts.len() {
            self.step_host(j);
        }
    }

    fn step_client(&mut self) {
        let now = self.now;
        // The connection's fate.
        if let Some(c) = self.current_conn() {
            let conn = &self.conns[c];
            let dead = conn.dead_since.is_some_and(|t| now >= t + IDLE_TIMEOUT);
            if dead || conn.closed {
                self.path_broke(c);
            }
        }
        self.drive_reconnect();
        let Some(c) = self.current_conn() else { return };
        // Arrivals.
        while let Some(bytes) = self.conns[c].down.read(now) {
            if self.client.handle_control(&bytes, now).is_err() {
                self.path_broke(c);
                return;
            }
        }
        while let Some(d) = self.conns[c].dgram_down.poll(now) {
            let _ = self.client.handle_datagram(&d, now);
        }
        let report = ActivityReport {
            idle_ms: now.duration_since(self.last_input).as_millis() as u32,
            ..ActivityReport::default()
        };
        let fresh = std::mem::take(&mut self.fresh_input);
        self.client.activity(fresh, || report, now);
        self.client.handle_timeout(now);
        while let Some(ev) = self.client.poll_event() {
            self.on_client_event(c, ev);
        }
        // Transmits.
        let mut buf = Vec::new();
        let alive = self.conns[c].dead_since.is_none();
        while let Some(lane) = self.client.poll_transmit(&mut buf) {
            let conn = &mut self.conns[c];
            if alive {
                conn.up[lane_index(lane)].write(now + conn.delay, &buf);
            }
        }
    }

    fn on_client_event(&mut self, conn: usize, ev: ClientEvent) {
        let now = self.now;
        match ev {
            ClientEvent::Welcome(_) => {
                self.seen.welcomes += 1;
                self.seen.paths.push(now);
                self.client_state = ClientState::Connected(conn);
            }
            ClientEvent::TakenOver(_) => {
                self.seen.takeovers += 1;
                self.seen.taken_over_at.push(now);
            }
            ClientEvent::Frame(f) => {
                // A frame's bytes follow from its number and length.
                let ok = f.data == frame_bytes(f.frame_id, f.data.len());
                if !ok {
                    self.seen.corrupt += 1;
                }
                self.seen.frames.push((now, f.frame_id));
                self.client.recycle(f.data);
            }
            ClientEvent::Lost { count, .. } => self.seen.lost += u64::from(count),
            ClientEvent::Phase { phase, ms } => self.seen.phases.push((now, phase, ms)),
            ClientEvent::InputAcked { .. } => self.seen.acked += 1,
            _ => {}
        }
    }

    /// The connection `c` is over: reconnect through the others.
    fn path_broke(&mut self, c: usize) {
        let now = self.now;
        match &mut self.client_state {
            ClientState::Connected(_) => {
                self.seen.lost_paths.push(now);
                self.client.lose_path();
                let gw = self.conns[c].gateway;
                self.client_state = ClientState::Reconnecting {
                    plan: Reconnect::after_loss((0..self.gateways.len()).collect(), gw, false, now),
                    trying: None,
                    waiting: None,
                };
            }
            ClientState::Reconnecting { plan, trying, .. } => {
                if trying.is_some_and(|(t, _)| t == c) {
                    *trying = None;
                    plan.failed(Failure::Unreachable, now);
                }
                self.client.lose_path();
            }
            ClientState::Gone => {}
        }
    }

    fn drive_reconnect(&mut self) {
        let now = self.now;
        let ClientState::Reconnecting {
            plan,
            trying,
            waiting,
        } = &mut self.client_state
        else {
            return;
        };
        if let Some((c, since)) = *trying {
            // A handshake that gets no answer in a second is given up.
            let conn = &self.conns[c];
            if conn.dead_since.is_some() && now >= since + Duration::from_secs(1) {
                *trying = None;
                plan.failed(Failure::Unreachable, now);
            } else {
                return;
            }
        }
        if waiting.is_some_and(|t| now < t) {
            return;
        }
        match plan.next(now) {
            Step::Try(i) => {
                let gw = *plan.candidate(i).unwrap_or(&0);
                let c = self.open_conn(gw);
                if let ClientState::Reconnecting {
                    trying, waiting, ..
                } = &mut self.client_state
                {
                    *trying = Some((c, now));
                    *waiting = None;
                }
                self.client.start_path(now);
            }
            Step::Wait(t) => *waiting = Some(t),
            Step::Renew { .. } => plan.renew_failed(now),
            Step::GiveUp => self.client_state = ClientState::Gone,
        }
    }

    fn step_gateway(&mut self, c: usize) {
        let now = self.now;
        let gw = self.conns[c].gateway;
        if !self.gateways[gw].alive || self.conns[c].closed {
            return;
        }
        let me = gateway_addr(gw);
        // From the client.
        for lane in 0..3 {
            while let Some(bytes) = self.conns[c].up[lane].read(now) {
                let conn = &mut self.conns[c];
                let res = if lane == 0 {
                    conn.session.handle_control(&bytes, now)
                } else {
                    let r = &mut conn.readers[lane];
                    r.push(&bytes).and_then(|()| {
                        let l = r.lane().unwrap_or(Lane::Control);
                        while let Some(m) = r.next_message()? {
                            conn.session.handle_lane_message(l, m, now)?;
                        }
                        Ok(())
                    })
                };
                if res.is_err() {
                    conn.closed = true;
                }
            }
        }
        while let Some(d) = self.conns[c].dgram_up.poll(now) {
            self.conns[c].session.handle_client_datagram(&d, now);
        }
        // From hosts.
        for j in 0..self.hosts.len() {
            let from = host_addr(j);
            while let Some(d) = self.link(from, me).poll(now) {
                let conn = &mut self.conns[c];
                match conn.session.handle_host_datagram(from, &d, now) {
                    FromHost::Drop => {}
                    FromHost::Video(m) | FromHost::Datagram(m) => {
                        conn.dgram_down.send(now, m);
                    }
                    FromHost::Control(m) => {
                        let mut framed = Vec::new();
                        nephele_protocol::framing::write_frame(&mut framed, |o| {
                            o.extend_from_slice(m)
                        });
                        conn.down.write(now + conn.delay, &framed);
                    }
                }
            }
        }
        let conn = &mut self.conns[c];
        conn.session.handle_timeout(now);
        while let Some(ev) = conn.session.poll_event() {
            match ev {
                GatewayEvent::Authorize { token, .. } => {
                    let ok = token == b"session:42";
                    if ok {
                        let target = Target {
                            session: 42,
                            host: host_addr(0),
                            backup: (self.hosts.len() > 1).then(|| host_addr(1)),
                            policy: self.policy,
                        };
                        conn.session.authorized(target, now);
                    } else {
                        conn.session.refused("bad token".into());
                    }
                }
                GatewayEvent::Failover { .. } => self.gateways[gw].failovers += 1,
                GatewayEvent::Relaying { .. } => {}
            }
        }
        if let Some(end) = conn.session.ended() {
            self.gateways[gw].ended.push(end.to_string());
            conn.closed = true;
        }
        let mut buf = Vec::new();
        let mut to_hosts = Vec::new();
        while let Some(dest) = self.conns[c].session.poll_transmit(&mut buf) {
            match dest {
                Dest::Host(h) => to_hosts.push((h, buf.clone())),
                Dest::ClientControl => {
                    let conn = &mut self.conns[c];
                    let mut framed = Vec::new();
                    nephele_protocol::framing::write_frame(&mut framed, |o| {
                        o.extend_from_slice(&buf)
                    });
                    conn.down.write(now + conn.delay, &framed);
                }
            }
        }
        for (h, d) in to_hosts {
            self.link(me, h).send(now, &d);
        }
    }

    /// Frames delivered between `from_ms` and `to_ms`.
    pub fn frames_between(&self, from_ms: u64, to_ms: u64) -> usize {
        let (a, b) = (self.at(from_ms), self.at(to_ms));
        self.seen
            .frames
            .iter()
            .filter(|(t, _)| *t >= a && *t < b)
            .count()
    }

    /// The longest gap between delivered frames between `from_ms` and `to_ms`.
    pub fn longest_gap(&self, from_ms: u64, to_ms: u64) -> Duration {
        let (a, b) = (self.at(from_ms), self.at(to_ms));
        let times: Vec<Instant> = self
            .seen
            .frames
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t >= a && *t < b)
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(b - a)
    }

    /// The first frame delivered at or after `ms`.
    pub fn first_frame_after(&self, ms: u64) -> Option<Instant> {
        let a = self.at(ms);
        self.seen.frames.iter().map(|(t, _)| *t).find(|t| *t >= a)
    }
}
