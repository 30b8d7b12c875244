//! The Nephele reference service: the desktop host and the gateway.
//!
//! A client connects to a [`gateway::Gateway`] over QUIC; the gateway relays
//! the session to a [`host::Host`] over stateless UDP datagrams; the host
//! renders the [`desktop`], encodes it with openh264 and streams it back.
//! [`tls`] makes and loads the certificates the gateway presents.

pub mod desktop;
pub mod gateway;
pub mod host;
pub mod tls;
