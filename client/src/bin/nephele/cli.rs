//! The command line: subcommands, their flags, and the long help.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use nephele_client::audio::AudioConfig;
use nephele_client::config::{
    Kiosk, MonitorChoice, MouseMode, Resolution, Settings, Shortcuts, Typing,
};
use nephele_client::video::{CodecChoice, DecoderChoice};
use nephele_protocol::activity::{IdlePolicy, KeepActive};

/// The long help's closing part: settings, kiosk mode, shortcuts, logs.
const MORE_HELP: &str = "\
SETTINGS FILE
  Settings are read from a TOML file; flags on the command line win over it.
  It lives in the platform's config directory:
    Linux    $XDG_CONFIG_HOME/nephele/config.toml (~/.config/nephele/config.toml)
    Windows  %APPDATA%\\Nephele\\config\\config.toml
    macOS    ~/Library/Application Support/Nephele/config.toml
  or where --config or $NEPHELE_CONFIG says. `nephele config` shows which
  file is read and what it sets; `nephele config --example` prints every key
  with its default: directory, user, ca, desktop, pop (auto or a PoP's name),
  [video] width, height, fps, display-hz, fullscreen, stats-overlay, decoder, codec, monitor,
  [audio] speaker, microphone, mic-muted, output-device, input-device,
  [input] mouse (absolute or relative), keep-active, clipboard (share its
  text with the desktop both ways, up to 1 KiB; off unless set or
  --clipboard), [shortcuts] and [kiosk].
  Unknown keys are warned about; a bad value stops with its key and line.
  Passwords and tokens are never kept there: the password comes from
  $NEPHELE_PASSWORD, a systemd credential named nephele-password, or a prompt.

KIOSK MODE
  `nephele connect --kiosk` (or `[kiosk] enabled = true`) runs unattended:
  fullscreen without window decorations, connects to the configured
  directory and desktop without asking anything, and whenever the session
  fails or ends tries again for ever, waiting 1 s, 2 s, 4 s… up to
  `[kiosk] max-backoff-secs` (30). No shortcut works and closing is refused,
  except the administrator's combination `[kiosk] exit`
  (Ctrl+Alt+Shift+End unless set; X servers keep Ctrl+Alt+F1…F12 for
  themselves). packaging/linux has a systemd user unit
  and an autostart entry that start it at login.

SHORTCUTS (in the window; change them under [shortcuts])
  Ctrl+Alt+Shift+Q  quit                 Ctrl+Alt+Shift+X  fullscreen
  Ctrl+Alt+Shift+Z  capture the pointer (relative mouse for games) or let go
  Ctrl+Alt+Shift+S  statistics overlay   Ctrl+Alt+Shift+M  microphone
  Ctrl+Alt+Shift+P  presentation mode (the session stays active without input)
  Ctrl+Alt+Shift+N  the session's menu: disconnect, fullscreen, statistics,
                    microphone, keep active, Ctrl+Alt+Del

LOGS
  Written to nephele.log in the platform's state directory
  (Linux ~/.local/state/nephele, Windows %LOCALAPPDATA%\\Nephele\\data,
  macOS ~/Library/Application Support/Nephele) and to stderr; RUST_LOG
  filters what stderr shows (default: warnings and the client's progress).";

#[derive(Debug, Parser)]
#[command(
    name = "nephele",
    version,
    about = "Nephele: your cloud desktop, as if it were local",
    after_long_help = MORE_HELP
)]
pub(crate) struct Cli {
    /// Read settings from this TOML file instead of the platform's config
    /// directory (also $NEPHELE_CONFIG); see SETTINGS FILE in --help.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Without a command: the launcher (add a service, sign in, choose a
    /// desktop), or a kiosk's desktop when the settings enable kiosk mode.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Sign in, choose the nearest PoP and show the remote desktop.
    #[command(after_long_help = MORE_HELP)]
    Connect(ConnectArgs),
    /// Sign in, measure every PoP and show the choice.
    Probe(ProbeArgs),
    /// Run the reference service on loopback and connect to it.
    #[command(after_long_help = MORE_HELP)]
    Demo(DemoArgs),
    /// Decode a raw H.264 (Annex B) file through the client's decode path.
    Decode(DecodeArgs),
    /// Show which settings file is read and what it sets, or print an example.
    #[command(after_long_help = MORE_HELP)]
    Config(ConfigArgs),
    /// List the sound devices, for `[audio] output-device` and `input-device`.
    Devices,
}

#[derive(Debug, Default, Args)]
pub(crate) struct StreamArgs {
    /// Run without a window (same network and decode path).
    #[arg(long)]
    pub(crate) headless: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
    /// Write session statistics as JSON here when the session ends.
    #[arg(long, value_name = "PATH")]
    pub(crate) stats_json: Option<PathBuf>,
    /// Play timed input from this file (`MS type TEXT`, `MS key NAME down|up`,
    /// `MS move X Y`, `MS move-by DX DY`, `MS button NAME down|up`, `MS wheel DX DY`,
    /// `MS pad N connect [TYPE] [rumble]|disconnect`, `MS pad N button NAME down|up`,
    /// `MS pad N axis NAME VALUE` with gilrs' names).
    #[arg(long, value_name = "PATH")]
    pub(crate) input_script: Option<PathBuf>,
    /// The desktop's size: `window` follows the window whenever it settles
    /// after a resize; `fixed` keeps --width × --height, scaled to fit
    /// [settings: video.resolution; default window, or fixed when --width
    /// or --height is given].
    #[arg(long, value_name = "MODE")]
    pub(crate) resolution: Option<Resolution>,
    /// Requested picture width [settings: video.width; default 1280].
    #[arg(long)]
    pub(crate) width: Option<u16>,
    /// Requested picture height [settings: video.height; default 720].
    #[arg(long)]
    pub(crate) height: Option<u16>,
    /// Requested frame rate [settings: video.fps; default 60].
    #[arg(long)]
    pub(crate) fps: Option<u8>,
    /// Save the video received (raw H.264 Annex B) to this file, for
    /// `nephele decode` or any player.
    #[arg(long, value_name = "PATH")]
    pub(crate) save_stream: Option<PathBuf>,
    /// The H.264 decoder [settings: video.decoder; default auto: FFmpeg's
    /// where the system has libavcodec, else the built-in openh264].
    #[arg(long, value_enum)]
    pub(crate) decoder: Option<DecoderChoice>,
    /// The codec to stream in, where the host makes it and this client
    /// decodes it [settings: video.codec; default auto: the host's first
    /// choice among those this client decodes].
    #[arg(long, value_enum)]
    pub(crate) codec: Option<CodecChoice>,
    /// Of a desktop of several monitors, the window shows `all` of them
    /// spanned, or one alone by its number, left to right from 1
    /// [settings: video.monitor; default all].
    #[arg(long, value_name = "all|N")]
    pub(crate) monitor: Option<MonitorChoice>,
    /// Present at most this many pictures a second in the window (default:
    /// the monitor's refresh rate, where the platform reports one)
    /// [settings: video.display-hz].
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) display_hz: Option<u16>,
    /// Start fullscreen (Ctrl+Alt+Shift+X toggles) [settings: video.fullscreen].
    #[arg(long)]
    pub(crate) fullscreen: bool,
    /// Show the statistics overlay (Ctrl+Alt+Shift+S toggles)
    /// [settings: video.stats-overlay].
    #[arg(long)]
    pub(crate) stats_overlay: bool,
    /// Typing: `text` sends the characters your layout, dead keys or input
    /// method make, and the desktop types them whatever its layout; `keys`
    /// sends every key by its position (games) [settings: input.typing;
    /// default text].
    #[arg(long, value_name = "MODE")]
    pub(crate) typing: Option<Typing>,
    /// Mouse mode at the start: absolute (desktops) or relative (games:
    /// the pointer is captured; Ctrl+Alt+Shift+Z toggles) [settings: input.mouse].
    #[arg(long, value_name = "MODE")]
    pub(crate) mouse: Option<MouseMode>,
    /// No sound: neither the desktop's audio nor the microphone.
    #[arg(long)]
    pub(crate) no_audio: bool,
    /// Do not capture the microphone (the desktop's audio still plays).
    #[arg(long)]
    pub(crate) no_mic: bool,
    /// Start with the microphone muted (Ctrl+Alt+Shift+M toggles it in the window).
    #[arg(long)]
    pub(crate) mic_muted: bool,
    /// Ask the service to keep the session active without input, and why:
    /// presentation, video, spectating or recording (Ctrl+Alt+Shift+P
    /// toggles presentation mode in the window) [settings: input.keep-active].
    #[arg(long, value_name = "REASON")]
    pub(crate) keep_active: Option<KeepActive>,
    /// Share the clipboard's text with the desktop, both ways (up to 1 KiB)
    /// [settings: input.clipboard].
    #[arg(long)]
    pub(crate) clipboard: bool,
    /// Kiosk mode: fullscreen and borderless, no questions, reconnects for
    /// ever with backoff, no way out but the administrator's combination
    /// (see KIOSK MODE in --help) [settings: kiosk.enabled].
    #[arg(long, conflicts_with = "headless")]
    pub(crate) kiosk: bool,
}

/// What a session runs with: the settings file under the flags.
pub(crate) struct Prefs {
    pub(crate) resolution: Resolution,
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) fps: u8,
    pub(crate) display_hz: Option<u16>,
    pub(crate) decoder: DecoderChoice,
    pub(crate) codec: CodecChoice,
    pub(crate) monitor: MonitorChoice,
    pub(crate) audio: AudioConfig,
    pub(crate) keep_active: KeepActive,
    pub(crate) fullscreen: bool,
    pub(crate) stats_overlay: bool,
    pub(crate) mouse: MouseMode,
    pub(crate) typing: Typing,
    pub(crate) shortcuts: Shortcuts,
    pub(crate) kiosk: Option<Kiosk>,
    pub(crate) clipboard: bool,
}

impl StreamArgs {
    pub(crate) fn prefs(&self, s: &Settings) -> Result<Prefs> {
        let kiosk = (self.kiosk || s.kiosk.enabled).then(|| s.kiosk.clone());
        if kiosk.is_some() && self.headless {
            bail!(
                "kiosk mode needs a window: drop --headless, or `[kiosk] enabled` from the settings"
            );
        }
        let sized = (self.width.is_some() || self.height.is_some()).then_some(Resolution::Fixed);
        Ok(Prefs {
            resolution: self.resolution.or(sized).unwrap_or(s.video.resolution),
            width: self.width.unwrap_or(s.video.width),
            height: self.height.unwrap_or(s.video.height),
            fps: self.fps.unwrap_or(s.video.fps),
            display_hz: self.display_hz.or(s.video.display_hz),
            decoder: self.decoder.unwrap_or(s.video.decoder),
            codec: self.codec.unwrap_or(s.video.codec),
            monitor: self.monitor.unwrap_or(s.video.monitor),
            audio: AudioConfig {
                speaker: !self.no_audio && s.audio.speaker,
                microphone: !self.no_audio && !self.no_mic && s.audio.microphone,
                mic_muted: self.mic_muted || s.audio.mic_muted,
                output_device: s.audio.output_device.clone(),
                input_device: s.audio.input_device.clone(),
            },
            keep_active: self.keep_active.unwrap_or(s.input.keep_active),
            fullscreen: self.fullscreen || s.video.fullscreen,
            stats_overlay: self.stats_overlay || s.video.stats_overlay,
            mouse: self.mouse.unwrap_or(s.input.mouse),
            typing: self.typing.unwrap_or(s.input.typing),
            shortcuts: s.shortcuts.clone(),
            kiosk,
            clipboard: self.clipboard || s.input.clipboard,
        })
    }
}

#[derive(Debug, Default, Clone, Args)]
pub(crate) struct LoginArgs {
    /// CA certificate (PEM) trusted for the directory and the gateways;
    /// repeat for several (default: what this computer trusts) [settings: ca, added
    /// to these]. `nephele-server all` writes its CA to STATE_DIR/ca.pem.
    #[arg(long, value_name = "PATH")]
    pub(crate) ca: Vec<PathBuf>,
    /// Who to sign in as: NAME or NAME@TENANT (default: settings' user,
    /// else $NEPHELE_USER, else your login name). The password comes from
    /// $NEPHELE_PASSWORD, a systemd credential or a prompt.
    #[arg(long, value_name = "NAME")]
    pub(crate) user: Option<String>,
    /// Which desktop or app to open (default: settings' desktop, else the
    /// first in your catalog).
    #[arg(long, value_name = "ID")]
    pub(crate) desktop: Option<String>,
    /// The PoP to use when it answers, instead of the nearest measured
    /// (`auto`) [settings: pop].
    #[arg(long, value_name = "NAME")]
    pub(crate) pop: Option<String>,
}

#[derive(Debug, Default, Args)]
pub(crate) struct ConnectArgs {
    /// The directory, as https://HOST:PORT [settings: directory].
    #[arg(long, value_name = "URL")]
    pub(crate) directory: Option<String>,
    /// Connect straight to this gateway (HOST:PORT) instead, without the directory.
    #[arg(
        long,
        value_name = "ADDR",
        conflicts_with = "directory",
        requires = "ca"
    )]
    pub(crate) gateway: Option<String>,
    /// Name to verify in the gateway's certificate (default: the host part of --gateway).
    #[arg(long, value_name = "NAME", requires = "gateway")]
    pub(crate) server_name: Option<String>,
    #[command(flatten)]
    pub(crate) login: LoginArgs,
    #[command(flatten)]
    pub(crate) stream: StreamArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The directory, as https://HOST:PORT [settings: directory].
    #[arg(long, value_name = "URL")]
    pub(crate) directory: Option<String>,
    #[command(flatten)]
    pub(crate) login: LoginArgs,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Print a settings file with every key at its default instead.
    #[arg(long)]
    pub(crate) example: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Have the demo host append every input event it receives to this file (JSON lines).
    #[arg(long, value_name = "PATH")]
    pub(crate) record_input: Option<PathBuf>,
    /// Put a simulated network between the client and the PoPs, per
    /// direction: `rtt=40ms,jitter=5ms,loss=5%,burst=3,bw=20mbit,queue=100ms,blackout=3s+500ms`,
    /// then changes over time as `; @5s bw=5mbit; @10s bw=20mbit`.
    #[arg(long, value_name = "SPEC", default_value = "", value_parser = checked::<nephele_protocol::impair::Impairment>)]
    pub(crate) network: String,
    /// The most video bits per second the host sends; congestion control
    /// adapts below it (default: from the picture size).
    #[arg(long, value_name = "BPS", default_value_t = 0)]
    pub(crate) bitrate: u32,
    /// Play a video panel on the demo desktop that changes completely every
    /// frame, as a game or a film would: the stream then uses all the
    /// bitrate it is allowed.
    #[arg(long)]
    pub(crate) motion: bool,
    /// Have the demo desktop play a steady tone of this many hertz
    /// (20–20000), besides its click on every key press.
    #[arg(long, value_name = "HZ")]
    pub(crate) tone: Option<String>,
    /// Have the demo host write the microphone sound it receives to this
    /// WAV file (48 kHz, mono, 16-bit).
    #[arg(long, value_name = "PATH")]
    pub(crate) record_mic: Option<PathBuf>,
    /// When the directory has idle sessions warned, paused (no capture or
    /// encoding) and suspended (resources released, state kept), as in
    /// `warn=2s,pause=3s,suspend=6s`; `never` turns pausing off.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "warn=14m,pause=15m,suspend=60m",
        value_parser = checked::<IdlePolicy>
    )]
    pub(crate) idle_policy: String,
    /// Kill parts of the service mid-session, as a crash would, to watch the
    /// session survive: `kill-gateway@3s,kill-host@6s` (times from the
    /// first picture; the session's own gateway and host).
    #[arg(long, value_name = "PLAN", default_value = "")]
    pub(crate) chaos: String,
    /// The PoP to use instead of the nearest measured (pop-near, pop-mid, pop-far).
    #[arg(long = "pop", value_name = "NAME")]
    pub(crate) stream_pop: Option<String>,
    #[command(flatten)]
    pub(crate) stream: StreamArgs,
}

/// A flag's value, checked by parsing it as `T` and passed on as written
/// (to the demo's service, which parses it again).
pub(crate) fn checked<T>(s: &str) -> Result<String, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// A raw video stream: H.264 or HEVC Annex B, or AV1 in IVF.
    pub(crate) file: PathBuf,
    /// Its codec (default: from the file's name: `.265`, `.hevc`: HEVC;
    /// `.ivf`, `.av1`: AV1; otherwise H.264).
    #[arg(long, value_enum, default_value_t = CodecChoice::Auto)]
    pub(crate) codec: CodecChoice,
    /// Print the SHA-1 of the decoded pictures (the conformance digest).
    #[arg(long)]
    pub(crate) sha1: bool,
    /// Time decoding and conversion to the window's pixel format per picture.
    #[arg(long)]
    pub(crate) bench: bool,
    /// With --bench: also scale each picture into a window of this size
    /// (WIDTHxHEIGHT), as the window does; the conversion time includes it.
    #[arg(long, value_name = "WxH", value_parser = parse_size, requires = "bench")]
    pub(crate) scale: Option<(u32, u32)>,
    /// The H.264 decoder (auto: FFmpeg's where the system has libavcodec,
    /// else the built-in openh264).
    #[arg(long, value_enum, default_value_t = DecoderChoice::Auto)]
    pub(crate) decoder: DecoderChoice,
}

/// `WIDTHxHEIGHT`, each 1 to 16384.
fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}`: expected WIDTHxHEIGHT, such as 1920x1080");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(1..=16384).contains(&w) || !(1..=16384).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}
