//! Sound devices through cpal: the default output and input, kept open by a
//! supervisor thread that reopens them when the device fails, disappears or
//! the system's default changes, so a pulled headset or a new default costs
//! well under a second of sound.
//!
//! The sound itself comes from (or goes to) a [`Render`] or [`Capture`]
//! shared with the rest of the program; the device's callback thread locks
//! it for the few microseconds a callback takes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};

/// How often the supervisor checks the stream and the default device.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Without a device, retries start at [`CHECK_EVERY`] and back off to this,
/// so a machine with no sound card is not asked (and its sound library does
/// not complain) five times a second.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Retries back off only to this once a device has worked.
const RETRY_AFTER_LOSS: Duration = Duration::from_millis(400);

/// Device buffer asked for first: 20 ms at 48 kHz (devices that refuse it
/// get their default). With 10 ms, a sound server (PulseAudio) ran dry
/// now and then while the machine was busy: a gap, which is worse than
/// 10 ms more delay.
const PREFERRED_BUFFER: u32 = 960;

/// Gives the device's callback thread (the sound library's own, not ours)
/// the input path's scheduling on its first callback: a callback that
/// waits behind a decoder is a gap in the sound.
#[derive(Default)]
struct Prioritize(bool);

impl Prioritize {
    fn once(&mut self) {
        if !self.0 {
            self.0 = true;
            crate::sched::latency_critical();
        }
    }
}

/// The device's format, as the callback sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Interleaved channels.
    pub channels: usize,
    /// Samples per second per channel.
    pub rate: u32,
}

/// Produces what the output device plays.
pub trait Render: Send + 'static {
    /// Fills `out` (interleaved samples in `format`); `delay` is how long
    /// until the first of them reaches the speaker, as far as the device knows.
    fn render(&mut self, out: &mut [f32], format: Format, delay: Duration);
}

/// Takes what the input device recorded.
pub trait Capture: Send + 'static {
    /// `data` holds interleaved samples in `format`.
    fn capture(&mut self, data: &[f32], format: Format);
}

/// What a device supervisor reports.
#[derive(Debug, Default)]
pub struct DeviceStatus {
    /// Times a stream was opened (the first, and every reopening).
    pub opened: AtomicU64,
    /// Times the stream failed or the device went away.
    pub failures: AtomicU64,
    /// The device's name and format, once open.
    pub device: Mutex<String>,
}

/// A device kept open until dropped.
#[derive(Debug)]
pub struct Device {
    stop: Arc<AtomicBool>,
    status: Arc<DeviceStatus>,
    thread: Option<JoinHandle<()>>,
}

impl Device {
    /// The supervisor's counters.
    pub fn status(&self) -> Arc<DeviceStatus> {
        self.status.clone()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Errors starting a device supervisor.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The supervisor thread could not start.
    #[error("starting the sound thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    Output,
    Input,
}

/// Plays what `render` produces on the output whose name contains
/// `prefer` (any case), else the default output, reopening as needed.
pub fn play<R: Render>(
    render: Arc<Mutex<R>>,
    prefer: Option<String>,
) -> Result<Device, AudioError> {
    supervise(
        "nephele-audio-out",
        Direction::Output,
        prefer,
        move |dev, cfg, fmt, failed| open_output(dev, cfg, fmt, render.clone(), failed),
    )
}

/// Records the input whose name contains `prefer` (any case), else the
/// default input, into `capture`, reopening as needed.
pub fn record<C: Capture>(
    capture: Arc<Mutex<C>>,
    prefer: Option<String>,
) -> Result<Device, AudioError> {
    supervise(
        "nephele-audio-in",
        Direction::Input,
        prefer,
        move |dev, cfg, fmt, failed| open_input(dev, cfg, fmt, capture.clone(), failed),
    )
}

type Opener = dyn FnMut(
        &cpal::Device,
        &StreamConfig,
        SampleFormat,
        Arc<Alarm>,
    ) -> Result<cpal::Stream, cpal::BuildStreamError>
    + Send;

fn supervise(
    name: &str,
    dir: Direction,
    prefer: Option<String>,
    open: impl FnMut(
        &cpal::Device,
        &StreamConfig,
        SampleFormat,
        Arc<Alarm>,
    ) -> Result<cpal::Stream, cpal::BuildStreamError>
    + Send
    + 'static,
) -> Result<Device, AudioError> {
    let stop = Arc::new(AtomicBool::new(false));
    let status = Arc::new(DeviceStatus::default());
    let thread = {
        let stop = stop.clone();
        let status = status.clone();
        let mut open: Box<Opener> = Box::new(open);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run_supervisor(dir, prefer.as_deref(), &stop, &status, &mut *open))
            .map_err(AudioError::Thread)?
    };
    Ok(Device {
        stop,
        status,
        thread: Some(thread),
    })
}

/// Lists `dir`'s devices and returns the first whose name contains
/// `want` (lower case), if any.
fn find_device(host: &cpal::Host, dir: Direction, want: &str) -> Option<cpal::Device> {
    let devices = match dir {
        Direction::Output => host.output_devices(),
        Direction::Input => host.input_devices(),
    };
    devices
        .ok()?
        .find(|d| d.name().is_ok_and(|n| n.to_lowercase().contains(want)))
}

/// The names of the machine's sound devices, outputs then inputs, for
/// choosing one in the settings.
pub fn device_names() -> (Vec<String>, Vec<String>) {
    let host = cpal::default_host();
    let names = |d: Result<Box<dyn Iterator<Item = cpal::Device>>, _>| {
        d.map(|ds: Box<dyn Iterator<Item = cpal::Device>>| {
            ds.filter_map(|d| d.name().ok()).collect()
        })
        .unwrap_or_default()
    };
    let outputs = host
        .output_devices()
        .map(|d| Box::new(d) as Box<dyn Iterator<Item = _>>);
    let inputs = host
        .input_devices()
        .map(|d| Box::new(d) as Box<dyn Iterator<Item = _>>);
    (names(outputs), names(inputs))
}

/// Keeps one stream open on `dir`'s preferred device (by part of its
/// name), else its default device. cpal's streams may not move between
/// threads on every platform, so this thread owns it.
fn run_supervisor(
    dir: Direction,
    prefer: Option<&str>,
    stop: &AtomicBool,
    status: &DeviceStatus,
    open: &mut Opener,
) {
    let prefer = prefer.map(str::to_lowercase).filter(|p| !p.is_empty());
    let host = cpal::default_host();
    let mut current: Option<(cpal::Stream, String, Arc<Alarm>)> = None;
    let mut last_complaint = String::new();
    let mut retry = CHECK_EVERY;
    let mut next_try = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if current.is_none() && Instant::now() < next_try {
            std::thread::park_timeout(CHECK_EVERY);
            continue;
        }
        let system_default = || match dir {
            Direction::Output => host.default_output_device(),
            Direction::Input => host.default_input_device(),
        };
        // The default is followed as it changes; a preferred device is
        // kept until it fails, and looked for (listing devices is slow on
        // some systems) only when a stream must be opened.
        let (stale, mut default) = match (&current, &prefer) {
            (Some((_, name, alarm)), None) => {
                let d = system_default();
                let changed =
                    d.as_ref().and_then(|d| d.name().ok()).as_deref() != Some(name.as_str());
                (alarm.raised() || changed, d)
            }
            (Some((_, _, alarm)), Some(_)) => (alarm.raised(), None),
            (None, _) => (true, None),
        };
        if stale && (default.is_none() || prefer.is_some()) {
            let preferred = prefer
                .as_deref()
                .and_then(|want| find_device(&host, dir, want));
            if let (Some(want), None) = (&prefer, &preferred)
                && last_complaint.is_empty()
            {
                tracing::warn!(?dir, want = %want, "no sound device has that in its name; using the default");
            }
            default = preferred.or_else(system_default);
        }
        let default_name = default.as_ref().and_then(|d| d.name().ok());
        if stale {
            if let Some((_, _, alarm)) = current.take() {
                if alarm.raised() {
                    status.failures.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(?dir, "sound device lost or changed; reopening");
            }
            // A fresh alarm per stream: a dropped stream's last cries do
            // not condemn the next.
            let alarm = Arc::new(Alarm {
                failed: AtomicBool::new(false),
                supervisor: std::thread::current(),
            });
            match default
                .ok_or_else(|| "no default device".to_string())
                .and_then(|d| start(&d, dir, open, alarm.clone()))
            {
                Ok((stream, desc)) => {
                    status.opened.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut d) = status.device.lock() {
                        d.clone_from(&desc);
                    }
                    tracing::info!(?dir, device = %desc, "sound device open");
                    last_complaint.clear();
                    retry = CHECK_EVERY;
                    current = Some((stream, default_name.unwrap_or_default(), alarm));
                }
                Err(e) => {
                    if e != last_complaint {
                        let what = match dir {
                            Direction::Output => "no sound output (speakers or headphones)",
                            Direction::Input => "no microphone",
                        };
                        tracing::warn!(error = %e, "{what}; will keep looking for one");
                        last_complaint = e;
                    }
                    next_try = Instant::now() + retry;
                    // A device that worked is likely back soon (a sound
                    // server restarting, a headset replugged): keep looking
                    // often. One never seen is looked for less and less.
                    let cap = if status.opened.load(Ordering::Relaxed) > 0 {
                        RETRY_AFTER_LOSS
                    } else {
                        MAX_RETRY
                    };
                    retry = (retry * 2).min(cap);
                }
            }
        }
        // Woken early by a failing stream's alarm.
        std::thread::park_timeout(CHECK_EVERY);
    }
}

/// Opens and starts a stream on `dev`, 48 kHz if the device offers it.
fn start(
    dev: &cpal::Device,
    dir: Direction,
    open: &mut Opener,
    failed: Arc<Alarm>,
) -> Result<(cpal::Stream, String), String> {
    let want = cpal::SampleRate(48_000);
    let (default, mut ranges) = match dir {
        Direction::Output => (
            dev.default_output_config().map_err(|e| e.to_string())?,
            dev.supported_output_configs()
                .map(|r| r.collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
        Direction::Input => (
            dev.default_input_config().map_err(|e| e.to_string())?,
            dev.supported_input_configs()
                .map(|r| r.collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    };
    // The default's channels and sample type, at 48 kHz where supported.
    ranges.retain(|r| {
        r.channels() == default.channels()
            && r.sample_format() == default.sample_format()
            && r.min_sample_rate() <= want
            && want <= r.max_sample_rate()
    });
    let chosen = ranges
        .into_iter()
        .next()
        .map(|r| r.with_sample_rate(want))
        .unwrap_or(default);
    let mut config = chosen.config();
    let format = chosen.sample_format();
    config.buffer_size = cpal::BufferSize::Fixed(PREFERRED_BUFFER);
    let stream = match open(dev, &config, format, failed.clone()) {
        Ok(s) => s,
        Err(_) => {
            config.buffer_size = cpal::BufferSize::Default;
            open(dev, &config, format, failed).map_err(|e| e.to_string())?
        }
    };
    stream.play().map_err(|e| e.to_string())?;
    let desc = format!(
        "{} ({} ch, {} Hz, {format})",
        dev.name().unwrap_or_else(|_| "unnamed".into()),
        config.channels,
        config.sample_rate.0
    );
    Ok((stream, desc))
}

/// Raised by a stream's error callback; wakes the supervisor at once.
#[derive(Debug)]
struct Alarm {
    failed: AtomicBool,
    supervisor: std::thread::Thread,
}

impl Alarm {
    fn raised(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

fn on_error(alarm: Arc<Alarm>) -> impl FnMut(cpal::StreamError) + Send + 'static {
    move |e| {
        // A dead device may report the same error thousands of times a
        // second until its stream is dropped: say it once.
        if !alarm.failed.swap(true, Ordering::Relaxed) {
            tracing::info!(error = %e, "sound device failed");
            alarm.supervisor.unpark();
        }
    }
}

fn open_output<R: Render>(
    dev: &cpal::Device,
    config: &StreamConfig,
    format: SampleFormat,
    render: Arc<Mutex<R>>,
    failed: Arc<Alarm>,
) -> Result<cpal::Stream, cpal::BuildStreamError> {
    let fmt = Format {
        channels: usize::from(config.channels),
        rate: config.sample_rate.0,
    };
    match format {
        SampleFormat::F32 => {
            let mut first = Prioritize::default();
            dev.build_output_stream(
                config,
                move |out: &mut [f32], info: &cpal::OutputCallbackInfo| {
                    first.once();
                    fill(&render, out, fmt, info);
                },
                on_error(failed),
                None,
            )
        }
        SampleFormat::I16 => output_converted::<i16, R>(dev, config, fmt, render, failed),
        SampleFormat::I32 => output_converted::<i32, R>(dev, config, fmt, render, failed),
        SampleFormat::U16 => output_converted::<u16, R>(dev, config, fmt, render, failed),
        _ => Err(cpal::BuildStreamError::StreamConfigNotSupported),
    }
}

fn fill<R: Render>(
    render: &Mutex<R>,
    out: &mut [f32],
    fmt: Format,
    info: &cpal::OutputCallbackInfo,
) {
    let ts = info.timestamp();
    let delay = ts.playback.duration_since(&ts.callback).unwrap_or_default();
    match render.lock() {
        Ok(mut r) => r.render(out, fmt, delay),
        Err(_) => out.fill(0.0),
    }
}

fn output_converted<T, R>(
    dev: &cpal::Device,
    config: &StreamConfig,
    fmt: Format,
    render: Arc<Mutex<R>>,
    failed: Arc<Alarm>,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample + FromSample<f32>,
    R: Render,
{
    // Grows to the device's buffer on the first callback, then stays.
    let mut scratch: Vec<f32> = Vec::with_capacity(8192);
    let mut first = Prioritize::default();
    dev.build_output_stream(
        config,
        move |out: &mut [T], info: &cpal::OutputCallbackInfo| {
            first.once();
            scratch.resize(out.len(), 0.0);
            fill(&render, &mut scratch, fmt, info);
            for (o, s) in out.iter_mut().zip(&scratch) {
                *o = T::from_sample(*s);
            }
        },
        on_error(failed),
        None,
    )
}

fn open_input<C: Capture>(
    dev: &cpal::Device,
    config: &StreamConfig,
    format: SampleFormat,
    capture: Arc<Mutex<C>>,
    failed: Arc<Alarm>,
) -> Result<cpal::Stream, cpal::BuildStreamError> {
    let fmt = Format {
        channels: usize::from(config.channels),
        rate: config.sample_rate.0,
    };
    match format {
        SampleFormat::F32 => {
            let mut first = Prioritize::default();
            dev.build_input_stream(
                config,
                move |data: &[f32], _: &cpal::InputCallbackInfo| {
                    first.once();
                    if let Ok(mut c) = capture.lock() {
                        c.capture(data, fmt);
                    }
                },
                on_error(failed),
                None,
            )
        }
        SampleFormat::I16 => input_converted::<i16, C>(dev, config, fmt, capture, failed),
        SampleFormat::I32 => input_converted::<i32, C>(dev, config, fmt, capture, failed),
        SampleFormat::U16 => input_converted::<u16, C>(dev, config, fmt, capture, failed),
        _ => Err(cpal::BuildStreamError::StreamConfigNotSupported),
    }
}

fn input_converted<T, C>(
    dev: &cpal::Device,
    config: &StreamConfig,
    fmt: Format,
    capture: Arc<Mutex<C>>,
    failed: Arc<Alarm>,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample,
    f32: FromSample<T>,
    C: Capture,
{
    let mut scratch: Vec<f32> = Vec::with_capacity(8192);
    let mut first = Prioritize::default();
    dev.build_input_stream(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            first.once();
            scratch.clear();
            scratch.extend(data.iter().map(|s| s.to_sample::<f32>()));
            if let Ok(mut c) = capture.lock() {
                c.capture(&scratch, fmt);
            }
        },
        on_error(failed),
        None,
    )
}
