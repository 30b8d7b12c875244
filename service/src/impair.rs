//! User-space network impairment: a UDP relay that puts a modelled path
//! ([`Impairment`]: delay, jitter, random and burst loss, a bandwidth cap,
//! blackouts) in front of a service, so one machine can pose as distant
//! points of presence and as a bad network (these machines' kernels have no
//! `netem`). The model is the protocol crate's [`Shaper`], the same one the
//! simulated links of the protocol tests use.
//!
//! Each client address gets its own upstream socket, so the service behind
//! sees distinct peers exactly as it would without the relay. Queues are
//! bounded: a datagram that finds its queue full is dropped, as a router
//! would drop it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use nephele_protocol::impair::{Impairment, Shaper};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Datagrams waiting in one direction of one flow.
const QUEUE: usize = 4096;
/// Clients relayed at once; further ones are ignored.
const MAX_FLOWS: usize = 1024;
/// A flow silent this long is forgotten.
const FLOW_IDLE: Duration = Duration::from_secs(60);

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct ImpairedRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ImpairedRelay {
    /// Listens on `listen` and relays to `upstream`, applying `imp` in each
    /// direction (each with its own random draws).
    /// Must be called on a tokio runtime.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        imp: Impairment,
    ) -> std::io::Result<Self> {
        let front = Arc::new(bind(listen)?);
        let addr = front.local_addr()?;
        let task = tokio::spawn(relay(front, upstream, imp));
        Ok(Self { addr, task })
    }

    /// Where clients send.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops relaying at once, dropping whatever is in flight, as a dead
    /// link or a crashed service behind it would (chaos tests).
    pub fn black_out(&self) {
        self.task.abort();
    }
}

impl Drop for ImpairedRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A socket with room for bursts (a video frame arrives as dozens of
/// datagrams at once; the default buffer holds only a few hundred small ones).
fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = crate::host::bind_udp(addr)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// One direction of one flow: shapes what it is given and sends each
/// datagram when the model says it arrives (jitter may reorder them).
fn direction(
    imp: Impairment,
    sock: Arc<UdpSocket>,
    to: Option<SocketAddr>,
) -> (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let task = tokio::spawn(async move {
        let mut shaper = Shaper::new(imp);
        let mut pending: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
        let mut order = 0u64;
        loop {
            let next = pending.peek().map(|Reverse((t, _, _))| *t);
            tokio::select! {
                got = rx.recv() => {
                    let Some(data) = got else { return };
                    let now = std::time::Instant::now();
                    if pending.len() < QUEUE
                        && let Some(at) = shaper.admit(now, data.len())
                    {
                        if at <= now && pending.is_empty() {
                            // Due already (a path without delay): send now.
                            // Through the timer it would wait for tokio's
                            // next millisecond tick.
                            let _ = match to {
                                Some(a) => sock.send_to(&data, a).await,
                                None => sock.send(&data).await,
                            };
                            continue;
                        }
                        order += 1;
                        let due = Instant::now() + at.saturating_duration_since(now);
                        pending.push(Reverse((due, order, data)));
                    }
                }
                () = async {
                    match next {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = Instant::now();
                    while pending.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
                        if let Some(Reverse((_, _, data))) = pending.pop() {
                            let _ = match to {
                                Some(a) => sock.send_to(&data, a).await,
                                None => sock.send(&data).await,
                            };
                        }
                    }
                }
            }
        }
    });
    (tx, task)
}

struct Flow {
    up: mpsc::Sender<Vec<u8>>,
    last: Instant,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Flow {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn relay(front: Arc<UdpSocket>, upstream: SocketAddr, imp: Impairment) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut seed = imp.seed;
    let any: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    loop {
        let Ok((n, from)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let now = Instant::now();
        if !flows.contains_key(&from) {
            flows.retain(|_, f| now.duration_since(f.last) < FLOW_IDLE);
            if flows.len() >= MAX_FLOWS {
                continue;
            }
            let Ok(back) = bind(any) else {
                continue;
            };
            if back.connect(upstream).await.is_err() {
                continue;
            }
            let back = Arc::new(back);
            seed = seed.wrapping_add(2);
            let (up, up_task) = direction(imp.with_seed(seed), back.clone(), None);
            let (down, down_task) = direction(imp.with_seed(seed + 1), front.clone(), Some(from));
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = back.recv(&mut buf).await {
                    let _ = down.try_send(buf[..n].to_vec());
                }
                down_task.abort();
            });
            flows.insert(
                from,
                Flow {
                    up,
                    last: now,
                    tasks: [up_task, reader],
                },
            );
        }
        if let Some(f) = flows.get_mut(&from) {
            f.last = now;
            let _ = f.up.try_send(buf[..n].to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn adds_the_round_trip_delay_and_keeps_flows_apart() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 1500];
            while let Ok((n, from)) = echo.recv_from(&mut b).await {
                let mut reply = from.to_string().into_bytes();
                reply.extend_from_slice(&b[..n]);
                let _ = echo.send_to(&reply, from).await;
            }
        });
        let relay = ImpairedRelay::start(
            "127.0.0.1:0".parse().unwrap(),
            echo_addr,
            Impairment::delay(Duration::from_millis(20)),
        )
        .await
        .unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut got = Vec::new();
        for s in [&a, &b] {
            let t = std::time::Instant::now();
            s.send_to(b"ping", relay.local_addr()).await.unwrap();
            let mut buf = [0u8; 100];
            let (n, _) = s.recv_from(&mut buf).await.unwrap();
            let rtt = t.elapsed();
            assert!(rtt >= Duration::from_millis(40), "{rtt:?}");
            assert!(rtt < Duration::from_millis(400), "{rtt:?}");
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        // The echo saw two different upstream peers.
        assert_ne!(got[0], got[1]);
        assert!(got.iter().all(|g| g.ends_with("ping")));
    }

    #[tokio::test]
    async fn a_lossy_relay_drops_about_its_share_each_way() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 1500];
            while let Ok((n, from)) = echo.recv_from(&mut b).await {
                let _ = echo.send_to(&b[..n], from).await;
            }
        });
        let relay = ImpairedRelay::start(
            "127.0.0.1:0".parse().unwrap(),
            echo_addr,
            "loss=20%,seed=5".parse().unwrap(),
        )
        .await
        .unwrap();
        let s = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        for i in 0..1000u32 {
            s.send_to(&i.to_be_bytes(), relay.local_addr())
                .await
                .unwrap();
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let mut got = 0;
        let mut buf = [0u8; 16];
        while tokio::time::timeout(Duration::from_millis(300), s.recv_from(&mut buf))
            .await
            .is_ok()
        {
            got += 1;
        }
        // 0.8 × 0.8 of the round trips survive.
        assert!((560..720).contains(&got), "{got} of 1000 came back");
    }
}
