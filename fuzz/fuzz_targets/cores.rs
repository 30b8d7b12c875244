//! The session cores fed whatever the network may bring, with time moving
//! on: a host core datagrams from any address, a gateway session control
//! messages, lane bytes and datagrams from client and host, a client core
//! control messages and datagrams. Each input is a run of records
//! `[kind, length, bytes…]`. The cores answer, refuse or end the session;
//! they never panic. Whatever asks the driver to decide is agreed to, so
//! the input reaches the states past sign-in.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use nephele_protocol::activity::IdlePolicy;
use nephele_protocol::client::{ClientConfig, ClientCore};
use nephele_protocol::gateway::{GatewayEvent, GatewaySession, LaneReader, Target};
use nephele_protocol::host::{Accept, HostCore, HostCoreConfig, HostEvent};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let host_addr = |k: u8| SocketAddr::from(([10, 0, 2, k & 3], 7400));
    let mut host = HostCore::new(HostCoreConfig::default(), t0);
    let mut gateway = GatewaySession::new(t0);
    let mut lanes = [LaneReader::default(), LaneReader::default()];
    let mut client = ClientCore::new(
        ClientConfig {
            width: 1280,
            height: 720,
            fps: 60,
            token: b"t".to_vec(),
            client_session: 7,
            codecs: Default::default(),
        },
        t0,
        t0,
    );
    client.start_path(t0);
    let mut out = Vec::new();
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        let (chunk, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        now += Duration::from_millis(u64::from(kind >> 3) * 11);
        match kind % 8 {
            0 => {
                let _ = host.handle_datagram(host_addr(*kind >> 3), chunk, now);
            }
            1 => {
                let _ = gateway.handle_control(chunk, now);
            }
            2 | 3 => {
                let reader = &mut lanes[usize::from(kind % 2)];
                if reader.push(chunk).is_ok() {
                    let lane = reader.lane();
                    while let Ok(Some(m)) = reader.next_message() {
                        if let Some(lane) = lane {
                            let _ = gateway.handle_lane_message(lane, m, now);
                        }
                    }
                }
            }
            4 => {
                let _ = gateway.handle_client_datagram(chunk, now);
                let _ = gateway.handle_host_datagram(host_addr(*kind >> 3), chunk, now);
            }
            5 => {
                let _ = client.handle_control(chunk, now);
            }
            6 => {
                let _ = client.handle_datagram(chunk, now);
            }
            _ => {
                host.handle_timeout(now);
                gateway.handle_timeout(now);
                client.handle_timeout(now);
            }
        }
        while let Some(e) = host.poll_event() {
            if let HostEvent::Open {
                session,
                width,
                height,
                ..
            } = e
            {
                let accept = Accept {
                    width,
                    height,
                    keep_active: false,
                    restored: false,
                };
                host.accept(session, accept, now);
            }
        }
        while let Some(e) = gateway.poll_event() {
            if let GatewayEvent::Authorize { client_session, .. } = e {
                let target = Target {
                    session: client_session,
                    host: host_addr(0),
                    backup: Some(host_addr(1)),
                    policy: IdlePolicy::NEVER,
                };
                gateway.authorized(target, now);
            }
        }
        while client.poll_event().is_some() {}
        while host.poll_transmit(&mut out).is_some() {
            out.clear();
        }
        while gateway.poll_transmit(&mut out).is_some() {
            out.clear();
        }
        while client.poll_transmit(&mut out).is_some() {
            out.clear();
        }
    }
});
