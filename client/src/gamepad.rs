//! Gamepads: every source ([`nephele_platform::gamepad`]) gets its own
//! thread; [`PadSlots`] gives each arriving device the lowest free of the
//! protocol's slots (so slots follow arrival order and stay put while a pad
//! is connected) and turns its events into input events; rumble from the
//! host goes back to the source that owns the slot's device.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nephele_platform::gamepad::{ChannelSource, GamepadSource, PadEvent};
use nephele_protocol::pad::{MAX_PADS, PadKind, axis_from_f32, axis_to_f32};
use nephele_protocol::wire::InputEvent;

use crate::handle::InputHandle;
use crate::stats::Stats;

/// Which source and device hold each slot.
#[derive(Debug, Default)]
pub struct PadSlots {
    slots: [Option<(usize, usize)>; MAX_PADS as usize],
    /// What each connected pad announced, to announce it again.
    kinds: [Option<(PadKind, bool)>; MAX_PADS as usize],
}

impl PadSlots {
    /// The input event for `ev` from source `source`, if it means anything
    /// to the host: a device beyond the sixteenth, or events of a device
    /// that never arrived, are dropped.
    pub fn on_event(&mut self, source: usize, ev: &PadEvent) -> Option<InputEvent> {
        let slot_of = |slots: &[Option<(usize, usize)>], device: usize| {
            slots
                .iter()
                .position(|s| *s == Some((source, device)))
                .map(|i| i as u8)
        };
        match *ev {
            PadEvent::Connected {
                device,
                kind,
                rumble,
                ref name,
            } => {
                if let Some(pad) = slot_of(&self.slots, device) {
                    // Announced again (a source restarting): same slot.
                    return Some(InputEvent::PadConnect { pad, kind, rumble });
                }
                let Some(free) = self.slots.iter().position(Option::is_none) else {
                    tracing::warn!(name, "a 17th gamepad is ignored");
                    return None;
                };
                self.slots[free] = Some((source, device));
                self.kinds[free] = Some((kind, rumble));
                tracing::info!(name, slot = free, ?kind, rumble, "gamepad connected");
                Some(InputEvent::PadConnect {
                    pad: free as u8,
                    kind,
                    rumble,
                })
            }
            PadEvent::Disconnected { device } => {
                let pad = slot_of(&self.slots, device)?;
                self.slots[usize::from(pad)] = None;
                self.kinds[usize::from(pad)] = None;
                Some(InputEvent::PadDisconnect { pad })
            }
            PadEvent::Button {
                device,
                button,
                down,
            } => Some(InputEvent::PadButton {
                pad: slot_of(&self.slots, device)?,
                button,
                down,
            }),
            PadEvent::Axis {
                device,
                axis,
                value,
            } => Some(InputEvent::PadAxis {
                pad: slot_of(&self.slots, device)?,
                axis,
                value: axis_from_f32(value),
            }),
        }
    }

    /// A connect event for every pad connected now (for a host that lost
    /// them: a new host, or one that released everything on a reconnect).
    pub fn connected(&self) -> Vec<InputEvent> {
        (0..MAX_PADS)
            .zip(&self.kinds)
            .filter_map(|(pad, k)| {
                k.map(|(kind, rumble)| InputEvent::PadConnect { pad, kind, rumble })
            })
            .collect()
    }

    /// The source and device in slot `pad`.
    pub fn device(&self, pad: u8) -> Option<(usize, usize)> {
        *self.slots.get(usize::from(pad))?
    }
}

/// A script's pad line as the scripted source's device event: the script's
/// pad number is the device, and the slot is assigned like any pad's.
pub fn scripted(ev: &InputEvent) -> Option<PadEvent> {
    Some(match *ev {
        InputEvent::PadConnect { pad, kind, rumble } => PadEvent::Connected {
            device: usize::from(pad),
            name: format!("scripted pad {pad}"),
            kind,
            rumble,
        },
        InputEvent::PadDisconnect { pad } => PadEvent::Disconnected {
            device: usize::from(pad),
        },
        InputEvent::PadButton { pad, button, down } => PadEvent::Button {
            device: usize::from(pad),
            button,
            down,
        },
        InputEvent::PadAxis { pad, axis, value } => PadEvent::Axis {
            device: usize::from(pad),
            axis,
            value: axis_to_f32(value),
        },
        _ => return None,
    })
}

/// A rumble for one device.
#[derive(Debug, Clone, Copy)]
struct RumbleCmd {
    device: usize,
    strong: f32,
    weak: f32,
    duration: Duration,
}

/// Rumble requests waiting for a source's thread, at most.
const RUMBLE_QUEUE: usize = 16;

/// How long a source thread waits for an event before it looks at rumble
/// requests and whether to stop.
const POLL: Duration = Duration::from_millis(10);

/// The session's gamepads: a thread per source.
pub struct Gamepads {
    slots: Arc<Mutex<PadSlots>>,
    rumble: Vec<SyncSender<RumbleCmd>>,
    script: Sender<PadEvent>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Gamepads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gamepads")
            .field("sources", &self.rumble.len())
            .finish()
    }
}

impl Gamepads {
    /// Starts the scripted source and the machine's gamepads.
    pub fn start(input: InputHandle, stats: Arc<Stats>) -> Self {
        let slots = Arc::new(Mutex::new(PadSlots::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (script, scripted) = ChannelSource::new();
        let mut pads = Self {
            slots,
            rumble: Vec::new(),
            script,
            stop,
            threads: Vec::new(),
        };
        pads.spawn("nephele-pad-script", &input, &stats, move || {
            Some(Box::new(scripted) as Box<dyn GamepadSource>)
        });
        pads.spawn("nephele-pad", &input, &stats, real_source);
        pads
    }

    /// Announces every connected pad to the host again.
    pub fn announce_again(&self, input: &InputHandle) {
        let events = self.slots.lock().map(|s| s.connected()).unwrap_or_default();
        for ev in events {
            if let Err(e) = input.push(ev) {
                tracing::warn!(error = %e, "gamepad not announced again");
            }
        }
    }

    /// Feeds scripted device events.
    pub fn script(&self) -> Sender<PadEvent> {
        self.script.clone()
    }

    /// Plays a rumble the host asked for on whichever device holds `pad`.
    pub fn rumble(&self, pad: u8, strong: u16, weak: u16, duration_ms: u16) {
        let Some((source, device)) = self.slots.lock().ok().and_then(|s| s.device(pad)) else {
            return;
        };
        let cmd = RumbleCmd {
            device,
            strong: f32::from(strong) / f32::from(u16::MAX),
            weak: f32::from(weak) / f32::from(u16::MAX),
            duration: Duration::from_millis(duration_ms.into()),
        };
        if let Some(tx) = self.rumble.get(source)
            && let Err(TrySendError::Full(_)) = tx.try_send(cmd)
        {
            tracing::debug!(pad, "rumble dropped: the gamepad thread is behind");
        }
    }

    /// Runs a source, made on its own thread (gilrs' state stays on the
    /// thread that created it).
    fn spawn(
        &mut self,
        name: &str,
        input: &InputHandle,
        stats: &Arc<Stats>,
        make: impl FnOnce() -> Option<Box<dyn GamepadSource>> + Send + 'static,
    ) {
        let index = self.rumble.len();
        let (tx, rx) = std::sync::mpsc::sync_channel(RUMBLE_QUEUE);
        let (slots, stop, input, stats) = (
            self.slots.clone(),
            self.stop.clone(),
            input.clone(),
            stats.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Button presses are input: as prompt as keys.
                nephele_platform::sched::latency_critical();
                if let Some(source) = make() {
                    run_source(index, source, &slots, &input, &stats, &rx, &stop);
                }
            });
        match spawned {
            Ok(h) => {
                self.rumble.push(tx);
                self.threads.push(h);
            }
            Err(e) => tracing::warn!(error = %e, "no gamepad thread"),
        }
    }
}

impl Drop for Gamepads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn real_source() -> Option<Box<dyn GamepadSource>> {
    match nephele_platform::gamepad::GilrsSource::new() {
        Ok(s) => Some(Box::new(s)),
        Err(e) => {
            tracing::info!(error = %e, "no gamepads on this machine");
            None
        }
    }
}

fn run_source(
    index: usize,
    mut source: Box<dyn GamepadSource>,
    slots: &Mutex<PadSlots>,
    input: &InputHandle,
    stats: &Stats,
    rumble: &Receiver<RumbleCmd>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        if let Some(ev) = source.next(POLL) {
            let out = slots.lock().ok().and_then(|mut s| s.on_event(index, &ev));
            if let Some(out) = out
                && let Err(e) = input.push(out)
            {
                tracing::warn!(error = %e, "gamepad input not sent");
            }
        }
        while let Ok(c) = rumble.try_recv() {
            match source.rumble(c.device, c.strong, c.weak, c.duration) {
                Ok(()) => {
                    stats.pad_rumbles.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(error = %e, "rumble not played"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nephele_protocol::pad::{PadAxis, PadButton};

    fn connect(device: usize) -> PadEvent {
        PadEvent::Connected {
            device,
            name: format!("pad {device}"),
            kind: PadKind::Xbox,
            rumble: true,
        }
    }

    #[test]
    fn slots_follow_arrival_and_stay_put_while_connected() {
        let mut s = PadSlots::default();
        let slot = |e: Option<InputEvent>| match e {
            Some(InputEvent::PadConnect { pad, .. }) => pad,
            other => panic!("{other:?}"),
        };
        // Device 9 of source 0 first, then device 2 of source 1.
        assert_eq!(slot(s.on_event(0, &connect(9))), 0);
        assert_eq!(slot(s.on_event(1, &connect(2))), 1);
        assert_eq!(slot(s.on_event(0, &connect(3))), 2);
        // Slot 0 leaves; the others keep theirs, and the next arrival
        // takes the lowest free slot.
        assert_eq!(
            s.on_event(0, &PadEvent::Disconnected { device: 9 }),
            Some(InputEvent::PadDisconnect { pad: 0 })
        );
        assert_eq!(
            s.on_event(
                1,
                &PadEvent::Axis {
                    device: 2,
                    axis: PadAxis::LeftStickY,
                    value: -1.0
                }
            ),
            Some(InputEvent::PadAxis {
                pad: 1,
                axis: PadAxis::LeftStickY,
                value: -i16::MAX
            })
        );
        assert_eq!(slot(s.on_event(1, &connect(5))), 0);
        assert_eq!(s.device(0), Some((1, 5)));
        assert_eq!(s.device(2), Some((0, 3)));
        let again: Vec<u8> = s.connected().iter().map(|e| slot(Some(*e))).collect();
        assert_eq!(
            again,
            [0, 1, 2],
            "connected pads are announced again in slot order"
        );
        // Events of a device that never arrived mean nothing.
        let stray = PadEvent::Button {
            device: 44,
            button: PadButton::South,
            down: true,
        };
        assert_eq!(s.on_event(0, &stray), None);
        // Sixteen slots at most.
        for d in 100..113 {
            assert!(s.on_event(0, &connect(d)).is_some());
        }
        assert_eq!(s.on_event(0, &connect(200)), None);
    }
}
