//! User-space network impairment: a UDP relay that adds delay in front of a
//! service, so one machine can pose as several points of presence at
//! different distances (these machines' kernels have no `netem`).
//!
//! Each client address gets its own upstream socket, so the service behind
//! sees distinct peers exactly as it would without the relay. Queues are
//! bounded: a datagram that finds its queue full is dropped, as a router
//! would drop it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Datagrams waiting in one direction of one flow.
const QUEUE: usize = 4096;
/// Clients relayed at once; further ones are ignored.
const MAX_FLOWS: usize = 1024;
/// A flow silent this long is forgotten.
const FLOW_IDLE: Duration = Duration::from_secs(60);

/// What the relay does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Impairment {
    /// Round-trip delay added (half each way).
    pub rtt: Duration,
}

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct ImpairedRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ImpairedRelay {
    /// Listens on `listen` and relays to `upstream` with `imp` applied.
    /// Must be called on a tokio runtime.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        imp: Impairment,
    ) -> std::io::Result<Self> {
        let front = Arc::new(UdpSocket::bind(listen).await?);
        let addr = front.local_addr()?;
        let task = tokio::spawn(relay(front, upstream, imp));
        Ok(Self { addr, task })
    }

    /// Where clients send.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ImpairedRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Packet = (Instant, Vec<u8>);

/// Sends each queued datagram when its time comes.
async fn deliver(mut rx: mpsc::Receiver<Packet>, sock: Arc<UdpSocket>, to: Option<SocketAddr>) {
    while let Some((due, data)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        let _ = match to {
            Some(a) => sock.send_to(&data, a).await,
            None => sock.send(&data).await,
        };
    }
}

struct Flow {
    up: mpsc::Sender<Packet>,
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
    let one_way = imp.rtt / 2;
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let bind: SocketAddr = if upstream.is_ipv4() {
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
            let Ok(back) = UdpSocket::bind(bind).await else {
                continue;
            };
            if back.connect(upstream).await.is_err() {
                continue;
            }
            let back = Arc::new(back);
            let (up_tx, up_rx) = mpsc::channel(QUEUE);
            let (down_tx, down_rx) = mpsc::channel::<Packet>(QUEUE);
            let up_task = tokio::spawn(deliver(up_rx, back.clone(), None));
            let reader = {
                let back = back.clone();
                let front = front.clone();
                tokio::spawn(async move {
                    let down = tokio::spawn(deliver(down_rx, front, Some(from)));
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = back.recv(&mut buf).await {
                        let _ = down_tx.try_send((Instant::now() + one_way, buf[..n].to_vec()));
                    }
                    down.abort();
                })
            };
            flows.insert(
                from,
                Flow {
                    up: up_tx,
                    last: now,
                    tasks: [up_task, reader],
                },
            );
        }
        if let Some(f) = flows.get_mut(&from) {
            f.last = now;
            let _ = f.up.try_send((now + one_way, buf[..n].to_vec()));
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
            Impairment {
                rtt: Duration::from_millis(40),
            },
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
}
