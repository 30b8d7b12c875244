//! Gamepads behind one interface: [`GilrsSource`] for real devices (feature
//! `gamepad`), [`ChannelSource`] for anything that feeds events itself (an
//! input script, tests). The client assigns slots and sends the events on;
//! it does not know which source a pad came from.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use nephele_protocol::pad::{PadAxis, PadButton, PadKind};

/// What a gamepad did, by the source's own device number (stable while
/// the device stays connected).
#[derive(Debug, Clone, PartialEq)]
pub enum PadEvent {
    /// A device arrived (or was there when the source started).
    Connected {
        /// Source-local device number.
        device: usize,
        /// Its name, for logs.
        name: String,
        /// Controller type.
        kind: PadKind,
        /// Whether it can rumble.
        rumble: bool,
    },
    /// The device left.
    Disconnected {
        /// Source-local device number.
        device: usize,
    },
    /// A button edge.
    Button {
        /// Source-local device number.
        device: usize,
        /// Which button.
        button: PadButton,
        /// Pressed or released.
        down: bool,
    },
    /// An axis moved, `-1.0..=1.0`.
    Axis {
        /// Source-local device number.
        device: usize,
        /// Which axis.
        axis: PadAxis,
        /// Where it is now.
        value: f32,
    },
}

/// A rumble request the source could not play.
#[derive(Debug, thiserror::Error)]
#[error("rumble on device {device}: {reason}")]
pub struct RumbleError {
    /// The device asked.
    pub device: usize,
    /// Why not.
    pub reason: String,
}

/// Where gamepad events come from and rumble goes to.
pub trait GamepadSource {
    /// The next event, waiting at most `timeout`; `None` if none came.
    fn next(&mut self, timeout: Duration) -> Option<PadEvent>;
    /// Runs the strong (low-frequency) and weak (high-frequency) motors of
    /// `device` at these strengths (`0.0..=1.0`) for `duration`.
    fn rumble(
        &mut self,
        device: usize,
        strong: f32,
        weak: f32,
        duration: Duration,
    ) -> Result<(), RumbleError>;
}

/// A source fed through a channel: scripted pads, tests. It has no motors:
/// rumble requests are accepted and go nowhere.
#[derive(Debug)]
pub struct ChannelSource {
    rx: Receiver<PadEvent>,
}

impl ChannelSource {
    /// A source and the sender that feeds it.
    pub fn new() -> (Sender<PadEvent>, Self) {
        let (tx, rx) = std::sync::mpsc::channel();
        (tx, Self { rx })
    }
}

impl GamepadSource for ChannelSource {
    fn next(&mut self, timeout: Duration) -> Option<PadEvent> {
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                // A source whose feeder is gone has nothing more to say,
                // but waits like any other rather than spin its caller.
                std::thread::sleep(timeout);
                None
            }
        }
    }

    fn rumble(&mut self, _: usize, _: f32, _: f32, _: Duration) -> Result<(), RumbleError> {
        Ok(())
    }
}

#[cfg(feature = "gamepad")]
pub use real::GilrsSource;

#[cfg(feature = "gamepad")]
mod real {
    use std::collections::HashMap;
    use std::time::Duration;

    use gilrs::ff::{BaseEffect, BaseEffectType, EffectBuilder, Replay, Ticks};
    use gilrs::{Axis, Button, EventType, Gilrs};
    use nephele_protocol::pad::{PadAxis, PadButton, PadKind};

    use super::{GamepadSource, PadEvent, RumbleError};

    /// The machine's gamepads through gilrs (evdev on Linux, Windows.Gaming.Input,
    /// IOKit on macOS).
    pub struct GilrsSource {
        gilrs: Gilrs,
        /// The effect playing on each device, kept so it is not dropped.
        effects: HashMap<usize, gilrs::ff::Effect>,
    }

    impl std::fmt::Debug for GilrsSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("GilrsSource").finish_non_exhaustive()
        }
    }

    impl GilrsSource {
        /// Opens the platform's gamepad layer; an error means no gamepads
        /// here (no input devices, a sandbox), not a broken session.
        pub fn new() -> Result<Self, String> {
            let gilrs = Gilrs::new().map_err(|e| e.to_string())?;
            Ok(Self {
                gilrs,
                effects: HashMap::new(),
            })
        }
    }

    /// The controller type from the USB vendor.
    fn kind(vendor: Option<u16>) -> PadKind {
        match vendor {
            Some(0x045e) => PadKind::Xbox,
            Some(0x054c) => PadKind::PlayStation,
            Some(0x057e) => PadKind::Nintendo,
            _ => PadKind::Generic,
        }
    }

    /// gilrs' buttons in [`PadButton`]'s code order (the names are the same).
    const BUTTONS: [Button; 19] = [
        Button::South,
        Button::East,
        Button::North,
        Button::West,
        Button::C,
        Button::Z,
        Button::LeftTrigger,
        Button::LeftTrigger2,
        Button::RightTrigger,
        Button::RightTrigger2,
        Button::Select,
        Button::Start,
        Button::Mode,
        Button::LeftThumb,
        Button::RightThumb,
        Button::DPadUp,
        Button::DPadDown,
        Button::DPadLeft,
        Button::DPadRight,
    ];

    /// gilrs' axes in [`PadAxis`]'s code order.
    const AXES: [Axis; 8] = [
        Axis::LeftStickX,
        Axis::LeftStickY,
        Axis::LeftZ,
        Axis::RightStickX,
        Axis::RightStickY,
        Axis::RightZ,
        Axis::DPadX,
        Axis::DPadY,
    ];

    fn button(b: Button) -> Option<PadButton> {
        let i = BUTTONS.iter().position(|x| *x == b)?;
        PadButton::ALL.get(i).copied()
    }

    fn axis(a: Axis) -> Option<PadAxis> {
        let i = AXES.iter().position(|x| *x == a)?;
        PadAxis::ALL.get(i).copied()
    }

    #[cfg(test)]
    #[test]
    fn gilrs_names_map_to_the_same_protocol_names() {
        for b in BUTTONS {
            assert_eq!(
                button(b).map(PadButton::name),
                Some(format!("{b:?}").as_str())
            );
        }
        for a in AXES {
            assert_eq!(axis(a).map(PadAxis::name), Some(format!("{a:?}").as_str()));
        }
        assert_eq!(button(Button::Unknown), None);
    }

    impl GamepadSource for GilrsSource {
        fn next(&mut self, timeout: Duration) -> Option<PadEvent> {
            let ev = self.gilrs.next_event_blocking(Some(timeout))?;
            let device = usize::from(ev.id);
            match ev.event {
                EventType::Connected => {
                    let pad = self.gilrs.gamepad(ev.id);
                    Some(PadEvent::Connected {
                        device,
                        name: pad.name().to_string(),
                        kind: kind(pad.vendor_id()),
                        rumble: pad.is_ff_supported(),
                    })
                }
                EventType::Disconnected => {
                    self.effects.remove(&device);
                    Some(PadEvent::Disconnected { device })
                }
                EventType::ButtonPressed(b, _) => Some(PadEvent::Button {
                    device,
                    button: button(b)?,
                    down: true,
                }),
                EventType::ButtonReleased(b, _) => Some(PadEvent::Button {
                    device,
                    button: button(b)?,
                    down: false,
                }),
                EventType::AxisChanged(a, value, _) => Some(PadEvent::Axis {
                    device,
                    axis: axis(a)?,
                    value,
                }),
                // Analog triggers also report as LeftZ/RightZ axes on most
                // pads; repeats and filtered events carry nothing new.
                _ => None,
            }
        }

        fn rumble(
            &mut self,
            device: usize,
            strong: f32,
            weak: f32,
            duration: Duration,
        ) -> Result<(), RumbleError> {
            let err = |reason: String| RumbleError { device, reason };
            let id = self
                .gilrs
                .gamepads()
                .map(|(id, _)| id)
                .find(|id| usize::from(*id) == device)
                .ok_or_else(|| err("no such gamepad".into()))?;
            let play_for = Ticks::from_ms(duration.as_millis().min(u128::from(u32::MAX)) as u32);
            let magnitude = |v: f32| (v.clamp(0.0, 1.0) * f32::from(u16::MAX)) as u16;
            let effect = EffectBuilder::new()
                .add_effect(BaseEffect {
                    kind: BaseEffectType::Strong {
                        magnitude: magnitude(strong),
                    },
                    scheduling: Replay {
                        play_for,
                        ..Default::default()
                    },
                    envelope: Default::default(),
                })
                .add_effect(BaseEffect {
                    kind: BaseEffectType::Weak {
                        magnitude: magnitude(weak),
                    },
                    scheduling: Replay {
                        play_for,
                        ..Default::default()
                    },
                    envelope: Default::default(),
                })
                .gamepads(&[id])
                .finish(&mut self.gilrs)
                .map_err(|e| err(e.to_string()))?;
            effect.play().map_err(|e| err(e.to_string()))?;
            self.effects.insert(device, effect);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_source_passes_events_on_and_waits_when_its_feeder_is_gone() {
        let (tx, mut src) = ChannelSource::new();
        assert_eq!(src.next(Duration::from_millis(1)), None);
        let ev = PadEvent::Button {
            device: 7,
            button: PadButton::South,
            down: true,
        };
        tx.send(ev.clone()).unwrap();
        assert_eq!(src.next(Duration::from_millis(100)), Some(ev));
        drop(tx);
        // No event, and no spin: it waits its timeout like any source.
        let t = std::time::Instant::now();
        assert_eq!(src.next(Duration::from_millis(20)), None);
        assert!(t.elapsed() >= Duration::from_millis(20));
    }
}
