//! The settings file: TOML in the platform's config directory, under the
//! command line's flags.
//!
//! Where it lives ([`default_path`]): `$XDG_CONFIG_HOME/nephele/config.toml`
//! (usually `~/.config/nephele/config.toml`) on Linux,
//! `%APPDATA%\Nephele\config\config.toml` on Windows and
//! `~/Library/Application Support/Nephele/config.toml` on macOS;
//! `--config PATH` or `$NEPHELE_CONFIG` name another. A missing file means
//! the defaults. Unknown keys are warned about (a misspelt key must not be
//! silently ignored); a bad value fails with its key, line and what was
//! expected. No password or token is ever read from or written to it: see
//! [`crate::secrets`].

use std::path::{Path, PathBuf};
use std::str::FromStr;

use nephele_protocol::activity::KeepActive;

use crate::audio::AudioConfig;
use serde::{Deserialize, Serialize};

/// What can go wrong with the settings file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read the settings file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or a value is wrong.
    #[error("in the settings file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message: the key, the line and what was expected.
        message: String,
    },
    /// A secret was put in the file.
    #[error(
        "the settings file {path} holds `{key}`; Nephele never keeps passwords or tokens in it. Remove the line and use $NEPHELE_PASSWORD, a systemd credential named nephele-password, or the prompt"
    )]
    Secret {
        /// The file.
        path: PathBuf,
        /// The offending key.
        key: String,
    },
}

/// Every setting. Each section and key is optional in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Settings {
    /// The directory's URL, as `https://HOST:PORT`.
    pub directory: Option<String>,
    /// Who to sign in as: NAME or NAME@TENANT.
    pub user: Option<String>,
    /// Extra CA certificates (PEM files) trusted for the directory and gateways.
    pub ca: Vec<PathBuf>,
    /// The desktop or app to open (default: the first in the catalog).
    pub desktop: Option<String>,
    /// `auto` (the nearest by measurement) or a PoP's name, used when it answers.
    pub pop: String,
    /// Picture and window.
    pub video: Video,
    /// Speaker and microphone (`[audio]`).
    pub audio: AudioConfig,
    /// Mouse, keyboard and clipboard.
    pub input: Input,
    /// The client's own key combinations.
    pub shortcuts: Shortcuts,
    /// Unattended thin clients.
    pub kiosk: Kiosk,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            directory: None,
            user: None,
            ca: Vec::new(),
            desktop: None,
            pop: "auto".into(),
            video: Video::default(),
            audio: AudioConfig::default(),
            input: Input::default(),
            shortcuts: Shortcuts::default(),
            kiosk: Kiosk::default(),
        }
    }
}

/// `[video]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Video {
    /// Whether the desktop follows the window's size (`window`) or keeps
    /// `width × height` (`fixed`), scaled to fit the window.
    pub resolution: Resolution,
    /// Requested picture width (a fixed resolution, and the first picture
    /// before the window's size is known).
    pub width: u16,
    /// Requested picture height.
    pub height: u16,
    /// Requested frame rate.
    pub fps: u8,
    /// Presentations a second at most (default: the monitor's refresh).
    pub display_hz: Option<u16>,
    /// Start fullscreen.
    pub fullscreen: bool,
    /// Show the statistics overlay from the start.
    pub stats_overlay: bool,
    /// The H.264 decoder: auto (FFmpeg's where the system has it, else
    /// openh264), ffmpeg or openh264.
    pub decoder: crate::video::DecoderChoice,
    /// The codec to stream in: auto (the host's first choice among those
    /// this client decodes), h264, hevc or av1.
    pub codec: crate::video::CodecChoice,
    /// Of a desktop of several monitors: all of them spanned in the window
    /// (`"all"`), or one alone (`"2"`).
    pub monitor: MonitorChoice,
}

impl Default for Video {
    fn default() -> Self {
        Self {
            resolution: Resolution::Window,
            width: 1280,
            height: 720,
            fps: 60,
            display_hz: None,
            fullscreen: false,
            stats_overlay: false,
            decoder: crate::video::DecoderChoice::Auto,
            codec: crate::video::CodecChoice::Auto,
            monitor: MonitorChoice::All,
        }
    }
}

/// How the mouse reaches the desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MouseMode {
    /// The pointer moves freely over the window and the desktop follows it
    /// (desktops).
    #[default]
    Absolute,
    /// Captured: the pointer is hidden and held in the window, and motion
    /// goes as relative steps (games).
    Relative,
}

impl FromStr for MouseMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "absolute" => Ok(Self::Absolute),
            "relative" => Ok(Self::Relative),
            _ => Err(format!("`{s}`: the mouse mode is absolute or relative")),
        }
    }
}

/// What size the desktop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    /// The desktop takes the window's size whenever it settles after a
    /// resize, and the picture maps one to one (hosts that cannot follow
    /// are scaled).
    #[default]
    Window,
    /// The desktop keeps the size asked for, scaled to fit the window
    /// (games that expect one resolution).
    Fixed,
}

impl FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "window" => Ok(Self::Window),
            "fixed" => Ok(Self::Fixed),
            _ => Err(format!("`{s}`: the resolution is window or fixed")),
        }
    }
}

/// Which of the desktop's monitors the window shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MonitorChoice {
    /// All of them, as one picture spanning them.
    #[default]
    All,
    /// Monitor `n` alone (numbered from 1, left to right); all of them
    /// where the desktop has no such monitor.
    One(u8),
}

impl MonitorChoice {
    /// Every choice the launcher offers.
    pub const OFFERED: [MonitorChoice; 5] = [
        Self::All,
        Self::One(1),
        Self::One(2),
        Self::One(3),
        Self::One(4),
    ];

    /// The monitor's number, if one was chosen.
    pub fn number(self) -> Option<usize> {
        match self {
            Self::All => None,
            Self::One(n) => Some(usize::from(n)),
        }
    }

    /// What settings show for it.
    pub fn label(self) -> String {
        match self {
            Self::All => "All (spanned)".into(),
            Self::One(n) => format!("Monitor {n} alone"),
        }
    }
}

impl FromStr for MonitorChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            _ => match s.parse::<u8>() {
                Ok(n @ 1..=8) => Ok(Self::One(n)),
                _ => Err(format!(
                    "`{s}`: the monitor is all or a monitor's number, 1 to 8"
                )),
            },
        }
    }
}

impl TryFrom<String> for MonitorChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<MonitorChoice> for String {
    fn from(m: MonitorChoice) -> String {
        match m {
            MonitorChoice::All => "all".into(),
            MonitorChoice::One(n) => n.to_string(),
        }
    }
}

/// How typing reaches the desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Typing {
    /// Characters as the local layout, a dead key or an input method makes
    /// them, typed by the host whatever its own layout; keys that type
    /// nothing, and shortcuts, by position (desktops).
    #[default]
    Text,
    /// Every key by its position, the host's layout deciding (games).
    Keys,
}

impl FromStr for Typing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "keys" => Ok(Self::Keys),
            _ => Err(format!("`{s}`: typing is text or keys")),
        }
    }
}

/// `[input]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Input {
    /// The mouse mode at the start (the capture shortcut toggles it).
    pub mouse: MouseMode,
    /// Typing as text (desktops) or as physical keys (games).
    pub typing: Typing,
    /// Keep the session active without input: `none`, `presentation`,
    /// `video`, `spectating` or `recording`.
    #[serde(with = "keep_active")]
    pub keep_active: KeepActive,
    /// Share the clipboard's text with the desktop, both ways.
    pub clipboard: bool,
}

impl Default for Input {
    fn default() -> Self {
        Self {
            mouse: MouseMode::Absolute,
            typing: Typing::Text,
            keep_active: KeepActive::No,
            clipboard: false,
        }
    }
}

mod keep_active {
    use nephele_protocol::activity::KeepActive;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(k: &KeepActive, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(k.name())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeepActive, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A key combination: modifiers and one key by physical position, written
/// `Ctrl+Alt+Shift+Q` (the key as a letter, a digit, or a W3C code name
/// such as `F12`, `End` or `KeyQ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Chord {
    /// Control held.
    pub ctrl: bool,
    /// Alt (Option) held.
    pub alt: bool,
    /// Shift held.
    pub shift: bool,
    /// Super (Windows, Command) held.
    pub meta: bool,
    /// The key's USB HID usage.
    pub usage: u16,
}

impl Chord {
    /// Whether these modifiers and this key make the chord.
    pub fn matches(&self, ctrl: bool, alt: bool, shift: bool, meta: bool, usage: u16) -> bool {
        (self.ctrl, self.alt, self.shift, self.meta, self.usage) == (ctrl, alt, shift, meta, usage)
    }
}

impl FromStr for Chord {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut c = Chord {
            ctrl: false,
            alt: false,
            shift: false,
            meta: false,
            usage: 0,
        };
        let parts: Vec<&str> = s.split('+').map(str::trim).collect();
        let Some((key, mods)) = parts.split_last() else {
            return Err("an empty key combination".into());
        };
        for m in mods {
            let flag = match m.to_ascii_lowercase().as_str() {
                "ctrl" | "control" => &mut c.ctrl,
                "alt" | "option" => &mut c.alt,
                "shift" => &mut c.shift,
                "super" | "meta" | "cmd" | "command" | "win" => &mut c.meta,
                _ => {
                    return Err(format!(
                        "`{m}` in `{s}` is no modifier (Ctrl, Alt, Shift, Super)"
                    ));
                }
            };
            *flag = true;
        }
        let name = match key.len() {
            1 if key.chars().all(|ch| ch.is_ascii_alphabetic()) => {
                format!("Key{}", key.to_ascii_uppercase())
            }
            1 if key.chars().all(|ch| ch.is_ascii_digit()) => format!("Digit{key}"),
            _ => (*key).to_string(),
        };
        c.usage = nephele_protocol::hid::usage_from_name(&name)
            .ok_or_else(|| format!("`{key}` in `{s}` is no key (use Q, 5, F12, End, KeyQ…)"))?;
        if !(c.ctrl || c.alt || c.meta) {
            return Err(format!(
                "`{s}` needs Ctrl, Alt or Super, or it would be taken from the desktop's typing"
            ));
        }
        Ok(c)
    }
}

impl TryFrom<String> for Chord {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Chord> for String {
    fn from(c: Chord) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for Chord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (on, name) in [
            (self.ctrl, "Ctrl+"),
            (self.alt, "Alt+"),
            (self.shift, "Shift+"),
            (self.meta, "Super+"),
        ] {
            if on {
                f.write_str(name)?;
            }
        }
        let name = nephele_protocol::hid::name_from_usage(self.usage).unwrap_or("?");
        let short = name
            .strip_prefix("Key")
            .or_else(|| name.strip_prefix("Digit"))
            .unwrap_or(name);
        f.write_str(short)
    }
}

fn chord(s: &str) -> Chord {
    s.parse().unwrap_or(Chord {
        ctrl: true,
        alt: true,
        shift: true,
        meta: false,
        usage: 0,
    })
}

/// `[shortcuts]`: Moonlight's habit, Ctrl+Alt+Shift and a letter, so they
/// never collide with what the remote desktop uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Shortcuts {
    /// Close the session.
    pub quit: Chord,
    /// Fullscreen on and off.
    pub fullscreen: Chord,
    /// Pointer capture (relative mouse) on and off; also releases the keyboard grab.
    pub capture: Chord,
    /// The statistics overlay.
    pub stats: Chord,
    /// Microphone on and off.
    pub microphone: Chord,
    /// Presentation mode (keep the session active).
    pub presentation: Chord,
    /// The in-session menu.
    pub menu: Chord,
}

impl Default for Shortcuts {
    fn default() -> Self {
        Self {
            quit: chord("Ctrl+Alt+Shift+Q"),
            fullscreen: chord("Ctrl+Alt+Shift+X"),
            capture: chord("Ctrl+Alt+Shift+Z"),
            stats: chord("Ctrl+Alt+Shift+S"),
            microphone: chord("Ctrl+Alt+Shift+M"),
            presentation: chord("Ctrl+Alt+Shift+P"),
            menu: chord("Ctrl+Alt+Shift+N"),
        }
    }
}

/// `[kiosk]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Kiosk {
    /// Run as a kiosk: fullscreen and borderless, connect without
    /// questions, reconnect forever, no shortcut but `exit`.
    pub enabled: bool,
    /// The administrator's way out, the only key combination a kiosk obeys.
    pub exit: Chord,
    /// The longest wait between attempts to reconnect, in seconds.
    pub max_backoff_secs: u32,
}

impl Default for Kiosk {
    fn default() -> Self {
        Self {
            enabled: false,
            exit: chord("Ctrl+Alt+Shift+End"),
            max_backoff_secs: 30,
        }
    }
}

/// Keys that name secrets: refused wherever they appear.
const SECRET_KEYS: &[&str] = &["password", "token", "resume-token", "secret"];

/// Where the settings file is read from: `explicit`, else
/// `$NEPHELE_CONFIG`, else the platform's config directory.
pub fn default_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("NEPHELE_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

/// Where logs go: the platform's state directory (Linux:
/// `$XDG_STATE_HOME/nephele`, usually `~/.local/state/nephele`), else its
/// local data directory (Windows `%LOCALAPPDATA%\Nephele\data`, macOS
/// `~/Library/Application Support/Nephele`).
pub fn log_dir() -> Option<PathBuf> {
    let d = project_dirs()?;
    Some(
        d.state_dir()
            .map_or_else(|| d.data_local_dir().to_path_buf(), Path::to_path_buf),
    )
}

/// Where the last session's statistics and latency receipt are kept, for
/// support: beside the log.
pub fn last_session_path() -> Option<PathBuf> {
    log_dir().map(|d| d.join("last-session.json"))
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "Nephele")
}

/// A loaded settings file and what was wrong with it short of an error.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The settings.
    pub settings: Settings,
    /// The file they came from, if there was one.
    pub path: Option<PathBuf>,
    /// Keys the file holds that Nephele does not know (warn about each).
    pub unknown: Vec<String>,
}

/// Reads the settings at `path`; a file that does not exist gives the
/// defaults, unless it was named explicitly.
pub fn load(path: Option<PathBuf>, explicit: bool) -> Result<Loaded, ConfigError> {
    let Some(path) = path else {
        return Ok(Loaded::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Loaded::default());
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let (settings, unknown) = parse(&text).map_err(|e| match e {
        ParseError::Secret(key) => ConfigError::Secret {
            path: path.clone(),
            key,
        },
        ParseError::Invalid(message) => ConfigError::Invalid {
            path: path.clone(),
            message,
        },
    })?;
    Ok(Loaded {
        settings,
        path: Some(path),
        unknown,
    })
}

/// Why a settings text was refused.
#[derive(Debug, PartialEq)]
pub enum ParseError {
    /// A key naming a secret.
    Secret(String),
    /// Bad TOML or a bad value (the message names the key and line).
    Invalid(String),
}

/// Parses settings text; returns them with the unknown keys' paths.
pub fn parse(text: &str) -> Result<(Settings, Vec<String>), ParseError> {
    let mut unknown = Vec::new();
    let de = toml::Deserializer::parse(text).map_err(|e| ParseError::Invalid(e.to_string()))?;
    let settings: Settings = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
        .map_err(|e| {
            // Name the sections' unknown keys the way a reader wrote them.
            ParseError::Invalid(e.to_string().trim_end().to_string())
        })?;
    if let Some(key) = unknown
        .iter()
        .find(|k| SECRET_KEYS.iter().any(|s| k.rsplit('.').next() == Some(s)))
    {
        return Err(ParseError::Secret(key.clone()));
    }
    Ok((settings, unknown))
}

/// A commented settings file with every key at its default, for
/// `nephele config --example`.
pub fn example() -> String {
    let body = toml::to_string_pretty(&Settings::default()).unwrap_or_default();
    format!(
        "# Nephele's settings. Every key is optional; flags on the command line win.\n\
         # Passwords never go here: use $NEPHELE_PASSWORD, a systemd credential\n\
         # named nephele-password, or the prompt.\n\
         #\n\
         # directory = \"https://directory.example.com:7480\"\n\
         # user = \"alice@example\"\n\
         # ca = [\"/etc/nephele/ca.pem\"]\n\
         # desktop = \"engineering\"\n\
         # pop = \"auto\" or a PoP's name, e.g. \"pop-frankfurt\"\n\
         # [video] display-hz = 60; decoder = \"auto\", \"ffmpeg\" or \"openh264\"\n\
         #         codec = \"auto\", \"h264\", \"hevc\" or \"av1\"\n\
         #         monitor = \"all\" (spanned) or a monitor's number, \"2\"\n\
         # [audio] output-device = \"USB\", input-device = \"Headset\" (parts of names\n\
         #         that `nephele devices` lists)\n\
         # [input] mouse = \"absolute\" (desktops) or \"relative\" (games)\n\
         # [kiosk] enabled = true makes every start a kiosk (see `nephele --help`)\n\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        let (s, unknown) = parse("").unwrap();
        assert_eq!(s, Settings::default());
        assert!(unknown.is_empty());
    }

    #[test]
    fn the_example_parses_back_to_the_defaults() {
        let (s, unknown) = parse(&example()).unwrap();
        assert_eq!(s, Settings::default());
        assert!(unknown.is_empty(), "{unknown:?}");
    }

    #[test]
    fn values_are_read_and_unknown_keys_reported_by_path() {
        let text = r#"
directory = "https://dir.example:7480"
pop = "pop-mid"
colour = "blue"
[video]
width = 1920
height = 1080
fullscreen = true
codec = "hevc"
monitor = "2"
[audio]
mic-muted = true
output-device = "USB"
[input]
mouse = "relative"
keep-active = "presentation"
[shortcuts]
quit = "Ctrl+Alt+Shift+F4"
[kiosk]
enabled = true
exit = "Ctrl+Alt+End"
"#;
        let (s, unknown) = parse(text).unwrap();
        assert_eq!(unknown, vec!["colour".to_string()]);
        assert_eq!(s.directory.as_deref(), Some("https://dir.example:7480"));
        assert_eq!(s.pop, "pop-mid");
        assert_eq!(
            (s.video.width, s.video.height, s.video.fps),
            (1920, 1080, 60)
        );
        assert_eq!(s.video.codec, crate::video::CodecChoice::Hevc);
        assert_eq!(s.video.monitor, MonitorChoice::One(2));
        assert!(s.video.fullscreen && s.audio.mic_muted && s.audio.speaker);
        assert_eq!(s.audio.output_device.as_deref(), Some("USB"));
        assert_eq!(s.input.mouse, MouseMode::Relative);
        assert_eq!(s.input.keep_active, KeepActive::Presentation);
        assert_eq!(s.shortcuts.quit.to_string(), "Ctrl+Alt+Shift+F4");
        assert_eq!(s.shortcuts.stats.to_string(), "Ctrl+Alt+Shift+S");
        assert!(s.kiosk.enabled);
        assert_eq!(s.kiosk.exit.to_string(), "Ctrl+Alt+End");
    }

    #[test]
    fn a_bad_value_names_its_key_and_line() {
        let ParseError::Invalid(m) = parse("[video]\nwidth = 99999\n").unwrap_err() else {
            panic!("not invalid");
        };
        assert!(m.contains("width") && m.contains("line 2"), "{m}");
        let ParseError::Invalid(m) = parse("[input]\nmouse = \"sideways\"\n").unwrap_err() else {
            panic!("not invalid");
        };
        assert!(m.contains("mouse") && m.contains("sideways"), "{m}");
        let ParseError::Invalid(m) = parse("[video]\nmonitor = \"9\"\n").unwrap_err() else {
            panic!("not invalid");
        };
        assert!(m.contains("monitor") && m.contains("1 to 8"), "{m}");
        let ParseError::Invalid(m) = parse("[shortcuts]\nquit = \"Ctrl+Banana\"\n").unwrap_err()
        else {
            panic!("not invalid");
        };
        assert!(m.contains("quit") && m.contains("Banana"), "{m}");
        let (_, unknown) = parse("[video]\nwidht = 1\n").unwrap();
        assert_eq!(unknown, vec!["video.widht".to_string()]);
    }

    #[test]
    fn secrets_are_refused_wherever_they_are() {
        assert_eq!(
            parse("password = \"hunter2\"\n").unwrap_err(),
            ParseError::Secret("password".into())
        );
        assert_eq!(
            parse("[audio]\ntoken = \"x\"\n").unwrap_err(),
            ParseError::Secret("audio.token".into())
        );
    }

    #[test]
    fn chords_parse_and_print() {
        let c: Chord = "ctrl+alt+shift+q".parse().unwrap();
        assert_eq!(c.to_string(), "Ctrl+Alt+Shift+Q");
        assert!(c.matches(true, true, true, false, c.usage));
        assert!(!c.matches(true, true, false, false, c.usage));
        assert_eq!("Super+5".parse::<Chord>().unwrap().to_string(), "Super+5");
        assert!(
            "Shift+Q".parse::<Chord>().is_err(),
            "a shifted letter is typing"
        );
        assert!("Ctrl+Hyper+Q".parse::<Chord>().is_err());
        assert!("".parse::<Chord>().is_err());
    }
}
