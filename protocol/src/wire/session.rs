//! Opening and attaching sessions, liveness, the idle phases and state
//! replication on the wire.

use std::net::SocketAddr;

use super::reader::Reader;
use super::{DecodeError, GoodbyeReason, MAX_ATTACH_TOKEN, MAX_STATE, MAX_TOKEN, Message, ty};
use crate::activity::{ActivityReport, IdlePolicy, KeepActive, Phase, Presence};
use crate::codec::{Codec, CodecAsk, Codecs};

/// A token of at most `max` bytes (a longer one cut), after its length.
fn put_token(out: &mut Vec<u8>, token: &[u8], max: usize) {
    let token = &token[..token.len().min(max)];
    out.extend_from_slice(&(token.len() as u16).to_be_bytes());
    out.extend_from_slice(token);
}

/// A token [`put_token`] wrote; longer than `max` is an error.
fn get_token<'a>(r: &mut Reader<'a>, max: usize) -> Result<&'a [u8], DecodeError> {
    let len = usize::from(r.u16()?);
    if len > max {
        return Err(DecodeError::InvalidValue {
            field: "token length",
            value: len as u64,
        });
    }
    r.take(len)
}

/// A codec ask: the mask of codecs decoded (H.264's bit always set), then
/// the choice's bit (0: none).
fn put_codecs(out: &mut Vec<u8>, ask: &CodecAsk) {
    out.push(ask.decodes.mask());
    out.push(ask.prefer.map_or(0, Codec::bit));
}

/// A codec ask [`put_codecs`] wrote.
fn get_codecs(r: &mut Reader<'_>) -> Result<CodecAsk, DecodeError> {
    // Canonical only (what decodes re-encodes to the same bytes): H.264's
    // bit set, no bit of a codec this version does not know.
    let mask = r.u8()?;
    let decodes = Codecs::from_mask(mask);
    if decodes.mask() != mask {
        return Err(DecodeError::InvalidValue {
            field: "codecs decoded",
            value: mask.into(),
        });
    }
    let prefer = match r.u8()? {
        0 => None,
        bit => Some(Codec::ALL.into_iter().find(|c| c.bit() == bit).ok_or(
            DecodeError::InvalidValue {
                field: "preferred codec",
                value: bit.into(),
            },
        )?),
    };
    Ok(CodecAsk { decodes, prefer })
}

/// A codec by its number.
fn get_codec(r: &mut Reader<'_>) -> Result<Codec, DecodeError> {
    let v = r.u8()?;
    Codec::from_number(v).ok_or(DecodeError::InvalidValue {
        field: "codec",
        value: v.into(),
    })
}

/// `Message::Hello`: its bytes, both ways.
pub(super) mod hello {
    use super::*;

    pub(in crate::wire) fn put(
        out: &mut Vec<u8>,
        (width, height, fps): (&u16, &u16, &u8),
        token: &&[u8],
        client_session: &u64,
        codecs: &CodecAsk,
    ) {
        out.push(ty::HELLO);
        out.extend_from_slice(&width.to_be_bytes());
        out.extend_from_slice(&height.to_be_bytes());
        out.push(*fps);
        put_token(out, token, MAX_TOKEN);
        out.extend_from_slice(&client_session.to_be_bytes());
        put_codecs(out, codecs);
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let width = r.dimension("width")?;
        let height = r.dimension("height")?;
        let fps = r.fps()?;
        let token = get_token(r, MAX_TOKEN)?;
        Ok(Message::Hello {
            width,
            height,
            fps,
            token,
            client_session: r.u64()?,
            codecs: get_codecs(r)?,
        })
    }
}

/// `Message::Welcome`: its bytes, both ways.
pub(super) mod welcome {
    use super::*;

    pub(in crate::wire) fn put(
        out: &mut Vec<u8>,
        session_id: &u64,
        (width, height, fps): (&u16, &u16, &u8),
        host_time_us: &u64,
        input_delivered: &u32,
        codec: Codec,
    ) {
        out.push(ty::WELCOME);
        out.extend_from_slice(&session_id.to_be_bytes());
        out.extend_from_slice(&width.to_be_bytes());
        out.extend_from_slice(&height.to_be_bytes());
        out.push(*fps);
        out.extend_from_slice(&host_time_us.to_be_bytes());
        out.extend_from_slice(&input_delivered.to_be_bytes());
        out.push(codec.number());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::Welcome {
            session_id: r.u64()?,
            width: r.dimension("width")?,
            height: r.dimension("height")?,
            fps: r.fps()?,
            host_time_us: r.u64()?,
            input_delivered: r.u32()?,
            codec: get_codec(r)?,
        })
    }
}

/// `Message::Attach`: its bytes, both ways.
pub(super) mod attach {
    use super::*;

    pub(in crate::wire) fn put(
        out: &mut Vec<u8>,
        (width, height, fps): (u16, u16, u8),
        policy: &IdlePolicy,
        backup: &Option<SocketAddr>,
        client: &u64,
        token: &[u8],
        codecs: &CodecAsk,
    ) {
        out.push(ty::ATTACH);
        out.extend_from_slice(&client.to_be_bytes());
        out.extend_from_slice(&width.to_be_bytes());
        out.extend_from_slice(&height.to_be_bytes());
        out.push(fps);
        for ms in policy.to_wire() {
            out.extend_from_slice(&ms.to_be_bytes());
        }
        match backup {
            None => out.push(0),
            Some(SocketAddr::V4(a)) => {
                out.push(4);
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
            Some(SocketAddr::V6(a)) => {
                out.push(6);
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        // A longer token is cut, and so fails its host's check.
        put_token(out, token, MAX_ATTACH_TOKEN);
        put_codecs(out, codecs);
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let client = r.u64()?;
        let width = r.dimension("width")?;
        let height = r.dimension("height")?;
        let fps = r.fps()?;
        let policy = IdlePolicy::from_wire([r.u32()?, r.u32()?, r.u32()?]).map_err(|_| {
            DecodeError::InvalidValue {
                field: "idle policy order",
                value: 0,
            }
        })?;
        let backup = match r.u8()? {
            0 => None,
            4 => {
                let ip = std::net::Ipv4Addr::from(r.array::<4>()?);
                Some(SocketAddr::from((ip, r.u16()?)))
            }
            6 => {
                let ip = std::net::Ipv6Addr::from(r.array::<16>()?);
                Some(SocketAddr::from((ip, r.u16()?)))
            }
            other => {
                return Err(DecodeError::InvalidValue {
                    field: "address family",
                    value: other.into(),
                });
            }
        };
        let token = get_token(r, MAX_ATTACH_TOKEN)?;
        Ok(Message::Attach {
            width,
            height,
            fps,
            policy,
            backup,
            client,
            token,
            codecs: get_codecs(r)?,
        })
    }
}

/// `Message::Detach`: its bytes, both ways.
pub(super) mod detach {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>) {
        out.push(ty::DETACH);
    }

    pub(in crate::wire) fn get<'a>(_: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::Detach)
    }
}

/// `Message::Goodbye`: its bytes, both ways.
pub(super) mod goodbye {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, reason: &GoodbyeReason) {
        out.push(ty::GOODBYE);
        out.push(*reason as u8);
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::Goodbye {
            reason: r.code("goodbye reason", GoodbyeReason::from_u8)?,
        })
    }
}

/// `Message::Ping`: its bytes, both ways.
pub(super) mod ping {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, stamp_us: &u64) {
        out.push(ty::PING);
        out.extend_from_slice(&stamp_us.to_be_bytes());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::Ping { stamp_us: r.u64()? })
    }
}

/// `Message::Pong`: its bytes, both ways.
pub(super) mod pong {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, stamp_us: &u64, host_us: &u64) {
        out.push(ty::PONG);
        out.extend_from_slice(&stamp_us.to_be_bytes());
        out.extend_from_slice(&host_us.to_be_bytes());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::Pong {
            stamp_us: r.u64()?,
            host_us: r.u64()?,
        })
    }
}

/// `Message::Status`: its bytes, both ways.
pub(super) mod status {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, phase: &Phase, ms: &u32) {
        out.extend_from_slice(&[ty::STATUS, *phase as u8]);
        out.extend_from_slice(&ms.to_be_bytes());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let p = r.u8()?;
        let phase = Phase::from_u8(p).ok_or(DecodeError::InvalidValue {
            field: "phase",
            value: p.into(),
        })?;
        Ok(Message::Status {
            phase,
            ms: r.u32()?,
        })
    }
}

/// `Message::Activity`: its bytes, both ways.
pub(super) mod activity {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, a: &ActivityReport) {
        out.push(ty::ACTIVITY);
        out.extend_from_slice(&a.idle_ms.to_be_bytes());
        out.extend_from_slice(&[a.presence as u8, a.keep_active as u8]);
        out.extend_from_slice(&a.expected_idle_s.to_be_bytes());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let idle_ms = r.u32()?;
        let presence = r.u8()?;
        let presence = Presence::from_u8(presence).ok_or(DecodeError::InvalidValue {
            field: "presence",
            value: presence.into(),
        })?;
        let keep = r.u8()?;
        let keep_active = KeepActive::from_u8(keep).ok_or(DecodeError::InvalidValue {
            field: "keep-active reason",
            value: keep.into(),
        })?;
        Ok(Message::Activity(ActivityReport {
            idle_ms,
            presence,
            keep_active,
            expected_idle_s: r.u32()?,
        }))
    }
}

/// `Message::StateSync`: its bytes, both ways.
pub(super) mod state_sync {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, input_seq: &u32, version: &u32, state: &&[u8]) {
        let state = &state[..state.len().min(MAX_STATE)];
        out.push(ty::STATE_SYNC);
        out.extend_from_slice(&input_seq.to_be_bytes());
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&(state.len() as u16).to_be_bytes());
        out.extend_from_slice(state);
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let input_seq = r.u32()?;
        let version = r.u32()?;
        let len = usize::from(r.u16()?);
        if len > MAX_STATE {
            return Err(DecodeError::InvalidValue {
                field: "state length",
                value: len as u64,
            });
        }
        Ok(Message::StateSync {
            input_seq,
            version,
            state: r.take(len)?,
        })
    }
}

/// `Message::DisplaySize`: its bytes, both ways.
pub(super) mod display_size {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, width: &u16, height: &u16, refresh: &u8) {
        out.push(ty::DISPLAY_SIZE);
        out.extend_from_slice(&width.to_be_bytes());
        out.extend_from_slice(&height.to_be_bytes());
        out.push(*refresh);
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::DisplaySize {
            width: r.dimension("width")?,
            height: r.dimension("height")?,
            refresh: r.fps()?,
        })
    }
}

/// `Message::HostTiming`: its bytes, both ways.
pub(super) mod host_timing {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, capture_us: &u32, encode_us: &u32, frames: &u16) {
        out.push(ty::HOST_TIMING);
        out.extend_from_slice(&capture_us.to_be_bytes());
        out.extend_from_slice(&encode_us.to_be_bytes());
        out.extend_from_slice(&frames.to_be_bytes());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::HostTiming {
            capture_us: r.u32()?,
            encode_us: r.u32()?,
            frames: r.u16()?,
        })
    }
}

/// `Message::Monitors`: a count, then each monitor's left, top, width and
/// height. Only the canonical form is read: no empty monitor, at most
/// [`MAX_MONITORS`], in [`Monitors::new`]'s order.
pub(super) mod monitors {
    use super::*;
    use crate::monitors::{MAX_MONITORS, Monitor, Monitors};

    pub(in crate::wire) fn put(out: &mut Vec<u8>, list: &Monitors) {
        out.push(ty::MONITORS);
        out.push(list.len() as u8);
        for m in list.as_slice() {
            for v in [m.x, m.y, m.width, m.height] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let n = r.u8()?;
        if usize::from(n) > MAX_MONITORS {
            return Err(DecodeError::InvalidValue {
                field: "monitor count",
                value: n.into(),
            });
        }
        let mut read = [Monitor::default(); MAX_MONITORS];
        for m in &mut read[..usize::from(n)] {
            *m = Monitor {
                x: r.u16()?,
                y: r.u16()?,
                width: r.u16()?,
                height: r.u16()?,
            };
            if m.width == 0 || m.height == 0 {
                return Err(DecodeError::InvalidValue {
                    field: "monitor size",
                    value: 0,
                });
            }
        }
        let list = Monitors::new(read[..usize::from(n)].iter().copied());
        if list.as_slice() != &read[..usize::from(n)] {
            return Err(DecodeError::InvalidValue {
                field: "monitor order",
                value: n.into(),
            });
        }
        Ok(Message::Monitors(list))
    }
}
