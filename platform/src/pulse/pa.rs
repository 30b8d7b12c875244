//! The sound server through libpulse (see the module above).

use libpulse_binding::def::BufferAttr;
use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::Direction;
use libpulse_simple_binding::Simple;

#[cfg(doc)]
use super::DEFAULT_MONITOR;

/// Errors of the sound server.
#[derive(Debug, thiserror::Error)]
pub enum PulseError {
    /// No server answered, or it refused the stream.
    #[error("PulseAudio: recording `{source_name}`: {reason}")]
    Open {
        /// The source asked for.
        source_name: String,
        /// The server's words.
        reason: String,
    },
    /// The stream broke (the server went away).
    #[error("PulseAudio: {0}")]
    Stream(String),
}

/// Records what a sink plays, as interleaved 32-bit float frames.
pub struct MonitorRecorder {
    stream: Simple,
    /// One read's bytes, reused.
    bytes: Vec<u8>,
}

impl std::fmt::Debug for MonitorRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorRecorder")
            .field("read_bytes", &self.bytes.capacity())
            .finish()
    }
}

impl MonitorRecorder {
    /// Opens `source` (a monitor such as `speaker.monitor`, or
    /// [`DEFAULT_MONITOR`]) at `rate` Hz with `channels` channels; the
    /// server delivers `fragment` frames at a time, so a read of that many
    /// returns as soon as they were played.
    pub fn open(
        app: &str,
        source: &str,
        rate: u32,
        channels: u8,
        fragment: usize,
    ) -> Result<Self, PulseError> {
        let open_err = |reason: String| PulseError::Open {
            source_name: source.to_string(),
            reason,
        };
        if source.contains('\0') || app.contains('\0') {
            return Err(open_err("the name holds a NUL character".into()));
        }
        let spec = Spec {
            format: Format::F32le,
            rate,
            channels,
        };
        if !spec.is_valid() {
            return Err(open_err(format!(
                "{rate} Hz with {channels} channels is not a valid format"
            )));
        }
        let bytes = (fragment * usize::from(channels) * 4) as u32;
        let attr = BufferAttr {
            maxlength: u32::MAX,
            tlength: u32::MAX,
            prebuf: u32::MAX,
            minreq: u32::MAX,
            // Small fragments: each read returns one packet's worth as
            // soon as it was played, not a server-sized chunk later.
            fragsize: bytes,
        };
        let stream = Simple::new(
            None,
            app,
            Direction::Record,
            Some(source),
            "desktop sound",
            &spec,
            None,
            Some(&attr),
        )
        .map_err(|e| open_err(format!("{e}")))?;
        Ok(Self {
            stream,
            bytes: Vec::with_capacity(bytes as usize),
        })
    }

    /// Fills `pcm` (interleaved frames), waiting until the sink has played
    /// that much.
    pub fn read(&mut self, pcm: &mut [f32]) -> Result<(), PulseError> {
        self.bytes.resize(pcm.len() * 4, 0);
        self.stream
            .read(&mut self.bytes)
            .map_err(|e| PulseError::Stream(format!("{e}")))?;
        for (s, b) in pcm.iter_mut().zip(self.bytes.chunks_exact(4)) {
            *s = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// Drops what was recorded but not read (after a pause, so the next
    /// read is current).
    pub fn discard(&self) -> Result<(), PulseError> {
        self.stream
            .flush()
            .map_err(|e| PulseError::Stream(format!("{e}")))
    }
}

/// A microphone offered to the desktop session: a null sink the client's
/// microphone is played into, and a source remapped from its monitor, so
/// programs in the session record from an ordinary input device. Both
/// modules are unloaded when this is dropped.
pub struct VirtualMicrophone {
    mainloop: libpulse_binding::mainloop::standard::Mainloop,
    context: libpulse_binding::context::Context,
    modules: Vec<u32>,
    playback: Option<Simple>,
    source: String,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for VirtualMicrophone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualMicrophone")
            .field("source", &self.source)
            .field("modules", &self.modules)
            .finish()
    }
}

impl VirtualMicrophone {
    /// Creates the source `name` (letters, digits, `_` and `-` only) for
    /// mono sound at `rate` Hz.
    pub fn create(name: &str, rate: u32) -> Result<Self, PulseError> {
        use libpulse_binding::context::{Context, FlagSet, State};
        use libpulse_binding::mainloop::standard::{IterateResult, Mainloop};
        let fail = |reason: String| PulseError::Open {
            source_name: name.to_string(),
            reason,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(fail(
                "a source name is letters, digits, _ and - only".into(),
            ));
        }
        let mut mainloop = Mainloop::new().ok_or_else(|| fail("no main loop".into()))?;
        let mut context =
            Context::new(&mainloop, "Nephele host").ok_or_else(|| fail("no context".into()))?;
        context
            .connect(None, FlagSet::NOAUTOSPAWN, None)
            .map_err(|e| fail(format!("{e}")))?;
        loop {
            if let IterateResult::Quit(_) | IterateResult::Err(_) = mainloop.iterate(true) {
                return Err(fail("the main loop failed".into()));
            }
            match context.get_state() {
                State::Ready => break,
                State::Failed | State::Terminated => {
                    return Err(fail(format!("{}", context.errno())));
                }
                _ => {}
            }
        }
        let mut me = Self {
            mainloop,
            context,
            modules: Vec::new(),
            playback: None,
            source: name.to_string(),
            bytes: Vec::new(),
        };
        let sink = format!("{name}-feed");
        me.load(
            "module-null-sink",
            &format!(
                "sink_name={sink} rate={rate} channels=1 sink_properties=device.description={name}-feed"
            ),
        )
        .map_err(fail)?;
        me.load(
            "module-remap-source",
            &format!(
                "master={sink}.monitor source_name={name} source_properties=device.description={name}"
            ),
        )
        .map_err(fail)?;
        let spec = Spec {
            format: Format::F32le,
            rate,
            channels: 1,
        };
        // Short buffer: the voice is heard about when it was spoken.
        let bytes = rate / 1000 * 40 * 4;
        let attr = BufferAttr {
            maxlength: u32::MAX,
            tlength: bytes,
            prebuf: u32::MAX,
            minreq: u32::MAX,
            fragsize: u32::MAX,
        };
        let playback = Simple::new(
            None,
            "Nephele host",
            Direction::Playback,
            Some(&sink),
            "client microphone",
            &spec,
            None,
            Some(&attr),
        )
        .map_err(|e| fail(format!("{e}")))?;
        me.playback = Some(playback);
        Ok(me)
    }

    /// Loads a module; its index is kept for unloading.
    fn load(&mut self, module: &str, args: &str) -> Result<(), String> {
        use libpulse_binding::mainloop::standard::IterateResult;
        use libpulse_binding::operation::State;
        let index = std::rc::Rc::new(std::cell::Cell::new(None));
        let got = index.clone();
        let op = self
            .context
            .introspect()
            .load_module(module, args, move |i| got.set(Some(i)));
        while op.get_state() == State::Running {
            if let IterateResult::Quit(_) | IterateResult::Err(_) = self.mainloop.iterate(true) {
                return Err(format!("loading {module}: the main loop failed"));
            }
        }
        match index.get() {
            Some(i) if i != u32::MAX => {
                self.modules.push(i);
                Ok(())
            }
            _ => Err(format!("the server refused {module} {args}")),
        }
    }

    /// Plays mono samples into the source (waits only while its short
    /// buffer is full).
    pub fn play(&mut self, pcm: &[f32]) -> Result<(), PulseError> {
        let Some(p) = &self.playback else {
            return Ok(());
        };
        self.bytes.clear();
        for s in pcm {
            self.bytes.extend_from_slice(&s.to_le_bytes());
        }
        p.write(&self.bytes)
            .map_err(|e| PulseError::Stream(format!("{e}")))
    }
}

impl Drop for VirtualMicrophone {
    fn drop(&mut self) {
        use libpulse_binding::mainloop::standard::IterateResult;
        use libpulse_binding::operation::State;
        self.playback = None;
        for i in std::mem::take(&mut self.modules).into_iter().rev() {
            let op = self.context.introspect().unload_module(i, |_| {});
            while op.get_state() == State::Running {
                if let IterateResult::Quit(_) | IterateResult::Err(_) = self.mainloop.iterate(true)
                {
                    break;
                }
            }
        }
        self.context.disconnect();
    }
}
