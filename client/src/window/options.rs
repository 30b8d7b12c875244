//! What the window is started with and what other threads tell it: the
//! public side of [`super`].

use std::sync::Arc;
use std::time::Duration;

use nephele_protocol::activity::KeepActive;

use crate::config::{Kiosk, MouseMode, Shortcuts};
use crate::input::Script;
use crate::launcher;
use crate::login::{Connector, Login};
use crate::session::Session;

/// How the window starts.
pub enum Start {
    /// Connecting at once (the command line's `connect` and `demo`).
    Connect(Connector),
    /// On the launcher's pages.
    Launcher(Box<LauncherSetup>),
}

/// What the launcher needs from the command line.
pub struct LauncherSetup {
    /// Where the services added are kept.
    pub services_file: Option<std::path::PathBuf>,
    /// CA certificates trusted beside the system's (the settings' `ca`).
    pub roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Makes the connector for a desktop chosen in the launcher, with the
    /// settings in force then.
    pub connector_for: ConnectorFor,
    /// A problem to show on the first page (a settings file's mistake).
    pub notice: Option<String>,
    /// The settings, and the file the settings page writes them to.
    pub settings: crate::config::Settings,
    pub settings_file: Option<std::path::PathBuf>,
}

/// Makes the connector for a desktop chosen in the launcher.
pub type ConnectorFor = Arc<dyn Fn(Login, &crate::config::Settings) -> Connector + Send + Sync>;

/// What other threads tell the window.
pub enum UserEvent {
    /// A connection stage began (signing in, probing, connecting); each
    /// event but `Frame` carries its connection attempt's number.
    Stage(u64, String),
    /// The session is up.
    Connected(u64, Box<Session>, Option<Box<dyn Send>>),
    /// Connecting failed.
    Failed(u64, String),
    /// A new picture is in the slot.
    Frame,
    /// The session ended.
    Ended(u64, Option<Ending>),
    /// The launcher's sign-in came to this.
    Launcher(launcher::Outcome),
}

/// Why a session ended, when it was not asked to.
#[derive(Debug)]
pub struct Ending {
    /// In words.
    pub why: String,
    /// Trying again by itself would not help: the desktop was opened on
    /// another device (with a later grant from the directory; trying again
    /// would take it back), or the service ended the session.
    pub no_retry: bool,
}

impl std::fmt::Debug for UserEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stage(a, s) => write!(f, "Stage({a}, {s})"),
            Self::Connected(a, ..) => write!(f, "Connected({a})"),
            Self::Failed(a, e) => write!(f, "Failed({a}, {e})"),
            Self::Frame => f.write_str("Frame"),
            Self::Ended(a, e) => write!(f, "Ended({a}, {e:?})"),
            Self::Launcher(o) => write!(f, "Launcher({o:?})"),
        }
    }
}

/// Window options.
#[derive(Debug, Clone, Default)]
pub struct WindowOptions {
    /// Close after this long.
    pub duration: Option<Duration>,
    /// Input to play once connected.
    pub script: Option<Script>,
    /// Window title.
    pub title: String,
    /// Presentations a second at most, instead of the monitor's refresh rate.
    pub display_hz: Option<u16>,
    /// The desktop follows the window's size.
    pub follow_window: bool,
    /// Of a desktop of several monitors, the one shown alone, or all.
    pub monitor: crate::config::MonitorChoice,
    /// Typing as text or as physical keys.
    pub typing: crate::config::Typing,
    /// A keep-active request standing from the start.
    pub keep_active: KeepActive,
    /// Start fullscreen.
    pub fullscreen: bool,
    /// Show the statistics overlay from the start.
    pub stats_overlay: bool,
    /// Capture the pointer (relative mouse) from the start.
    pub mouse: MouseMode,
    /// The client's own key combinations.
    pub shortcuts: Shortcuts,
    /// Run as a kiosk: its exit chord and backoff.
    pub kiosk: Option<Kiosk>,
}
