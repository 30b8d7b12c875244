//! The Nephele reference service: the directory, the gateway and the desktop host.
//!
//! A client connects to a [`gateway::Gateway`] over QUIC; the gateway relays
//! the session to a [`host::Host`] over stateless UDP datagrams; the host
//! renders the [`desktop`] (or captures a running X display, [`screen`]),
//! encodes it with openh264 and streams it back.
//! [`tls`] makes and loads the certificates the gateway presents.
//!
//! The [`directory`] signs users in and creates sessions: it answers with a
//! session token ([`token`]) and the live gateways, which the client probes
//! to choose the nearest; gateways and hosts enrol ([`enrol`]: register
//! and heartbeat through [`nephele_api::DirectoryClient`]), and gateways
//! verify tokens offline. [`impair`] adds user-space delay
//! in front of a gateway, so one machine can pose as many PoPs.

pub mod chaos;
pub mod demo;
pub mod directory;
pub mod embedded;
pub mod enrol;
pub mod gateway;
pub mod host;
pub mod impair;
pub mod link;
pub mod screen;
pub mod tls;
pub mod token;
