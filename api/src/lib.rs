//! What Nephele's client and its service both speak, and nothing more, so
//! the client can depend on it without linking the service:
//!
//! * [`admin`]: the directory's administration operations;
//! * [`directory`]: the directory's HTTPS JSON API, its paths and bodies;
//! * [`client`]: a small blocking client for that API (ureq on rustls),
//!   used by the `nephele` client to sign in and open sessions and by
//!   gateways to register and heartbeat;
//! * [`trust`]: the TLS side of the QUIC connection between client and
//!   gateway (the client's configuration trusting exactly the given
//!   authorities, and the transport settings both ends share) and reading
//!   CA certificates from PEM files.

pub mod admin;
pub mod client;
pub mod directory;
pub mod inspect;
pub mod trust;

pub use client::{DirClientError, DirectoryClient};
