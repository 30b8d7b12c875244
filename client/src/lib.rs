//! Nephele, the client: connects to a gateway, shows the remote desktop and
//! sends the user's input.
//!
//! The data flow: [`session::Session`] owns the QUIC connection on its
//! network thread, reassembles video fragments into frames and feeds them to
//! the decode thread, which hands each picture to a [`session::FrameSink`].
//! The window ([`window`]) is one sink, converting and scaling pictures
//! into its surface when it redraws; [`headless`] is another, converting
//! exactly as presenting would and counting. Input flows the other way: the
//! window (or an [`input::Script`]) pushes protocol events into the
//! session's [`session::InputHandle`]. [`demo`] starts the reference service
//! in-process for `nephele demo`.

pub mod activity;
pub mod audio;
pub mod clipboard;
pub mod clock;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod gamepad;
pub mod handle;
pub mod headless;
pub mod input;
pub mod launcher;
pub mod login;
pub mod receipt;
pub mod secrets;
pub mod session;
pub mod settings_file;
pub mod slot;
pub mod stats;
pub mod status;
pub mod video;
pub mod window;
