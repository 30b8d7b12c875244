//! Video fragments and their recovery, sound, rumble, the clipboard and
//! the pointer on the wire.

use super::reader::Reader;
use super::{DecodeError, MAX_CLIPBOARD, MAX_CURSOR, Message, ty};
use crate::audio::MAX_AUDIO_PAYLOAD;

/// Most parity fragments one frame may carry.
pub const MAX_PARITY: u16 = 1024;

/// One datagram-sized piece of an encoded access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFragment<'a> {
    /// Frame number, increasing by one per encoded frame (wrapping).
    pub frame_id: u32,
    /// Index of this fragment within the frame: `0..count` carry the access
    /// unit, `count..count + parity` carry Reed–Solomon parity.
    pub index: u16,
    /// Number of data fragments in the frame (≥ 1).
    pub count: u16,
    /// Number of parity fragments (≤ [`MAX_PARITY`]).
    pub parity: u16,
    /// [`FRAG_FLAG_KEYFRAME`] and future flags.
    pub flags: u8,
    /// Host clock at capture, in microseconds since the host's session epoch.
    pub capture_us: u64,
    /// Bytes of every data fragment but the last, and of every parity
    /// fragment (even when there is parity).
    pub shard: u16,
    /// Bytes of the whole access unit: `(count - 1) * shard < frame_len <= count * shard`.
    pub frame_len: u32,
    /// The bytes of the access unit this fragment carries.
    pub payload: &'a [u8],
}

/// Bit set in [`VideoFragment::flags`] when the frame is an IDR (decodable alone).
pub const FRAG_FLAG_KEYFRAME: u8 = 1;

impl VideoFragment<'_> {
    /// Whether the header's numbers agree with each other and with the
    /// payload's size; the reason when they do not.
    pub fn check(&self) -> Result<(), &'static str> {
        let (count, parity, shard) = (self.count, self.parity, self.shard);
        if count == 0 {
            return Err("zero fragment count");
        }
        if parity > MAX_PARITY {
            return Err("too much parity");
        }
        if u32::from(self.index) >= u32::from(count) + u32::from(parity) {
            return Err("index past count");
        }
        if self.payload.is_empty() {
            return Err("empty payload");
        }
        if shard == 0 || (parity > 0 && shard % 2 != 0) {
            return Err("bad shard size");
        }
        let full = u64::from(shard) * u64::from(count);
        let before_last = full - u64::from(shard);
        let len = u64::from(self.frame_len);
        if len <= before_last || len > full {
            return Err("frame length does not match");
        }
        let expected = if u32::from(self.index) + 1 == u32::from(count) {
            (len - before_last) as usize
        } else {
            usize::from(shard)
        };
        if self.payload.len() != expected {
            return Err("payload size does not match");
        }
        Ok(())
    }
}

/// `Message::Video`: its bytes, both ways.
pub(super) mod video {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, f: &VideoFragment<'_>) {
        out.push(ty::VIDEO);
        out.extend_from_slice(&f.frame_id.to_be_bytes());
        out.extend_from_slice(&f.index.to_be_bytes());
        out.extend_from_slice(&f.count.to_be_bytes());
        out.extend_from_slice(&f.parity.to_be_bytes());
        out.push(f.flags);
        out.extend_from_slice(&f.capture_us.to_be_bytes());
        out.extend_from_slice(&f.shard.to_be_bytes());
        out.extend_from_slice(&f.frame_len.to_be_bytes());
        out.extend_from_slice(f.payload);
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let frame_id = r.u32()?;
        let index = r.u16()?;
        let count = r.u16()?;
        let parity = r.u16()?;
        let flags = r.u8()?;
        let capture_us = r.u64()?;
        let shard = r.u16()?;
        let frame_len = r.u32()?;
        let payload = r.rest();
        let f = VideoFragment {
            frame_id,
            index,
            count,
            parity,
            flags,
            capture_us,
            shard,
            frame_len,
            payload,
        };
        f.check().map_err(DecodeError::BadFragment)?;
        Ok(Message::Video(f))
    }
}

/// `Message::KeyframeRequest`: its bytes, both ways.
pub(super) mod keyframe_request {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, last_good_frame: &u32) {
        out.push(ty::KEYFRAME_REQUEST);
        out.extend_from_slice(&last_good_frame.to_be_bytes());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::KeyframeRequest {
            last_good_frame: r.u32()?,
        })
    }
}

/// `Message::ReceiverReport`: its bytes, both ways.
pub(super) mod receiver_report {
    use super::*;

    pub(in crate::wire) fn put(
        out: &mut Vec<u8>,
        loss_permille: &u16,
        queue_delay_ms: &u16,
        recv_kbps: &u32,
    ) {
        out.push(ty::RECEIVER_REPORT);
        out.extend_from_slice(&loss_permille.to_be_bytes());
        out.extend_from_slice(&queue_delay_ms.to_be_bytes());
        out.extend_from_slice(&recv_kbps.to_be_bytes());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let loss_permille = r.u16()?;
        if loss_permille > 1000 {
            return Err(DecodeError::InvalidValue {
                field: "loss per mille",
                value: loss_permille.into(),
            });
        }
        Ok(Message::ReceiverReport {
            loss_permille,
            queue_delay_ms: r.u16()?,
            recv_kbps: r.u32()?,
        })
    }
}

/// `Message::Audio`: its bytes, both ways.
pub(super) mod audio {
    use super::*;

    pub(in crate::wire) fn put(
        out: &mut Vec<u8>,
        seq: &u32,
        capture_us: &u64,
        payload: &&[u8],
        previous: &&[u8],
    ) {
        let payload = &payload[..payload.len().min(MAX_AUDIO_PAYLOAD)];
        let previous = &previous[..previous.len().min(MAX_AUDIO_PAYLOAD)];
        out.push(ty::AUDIO);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&capture_us.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&(previous.len() as u16).to_be_bytes());
        out.extend_from_slice(previous);
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let seq = r.u32()?;
        let capture_us = r.u64()?;
        let len = usize::from(r.u16()?);
        let payload = r.take(len)?;
        let len = usize::from(r.u16()?);
        let previous = r.take(len)?;
        for (field, p) in [("audio payload", payload), ("audio copy", previous)] {
            if p.len() > MAX_AUDIO_PAYLOAD {
                return Err(DecodeError::InvalidValue {
                    field,
                    value: p.len() as u64,
                });
            }
        }
        Ok(Message::Audio {
            seq,
            capture_us,
            payload,
            previous,
        })
    }
}

/// `Message::Rumble`: its bytes, both ways.
pub(super) mod rumble {
    use super::*;

    pub(in crate::wire) fn put(
        out: &mut Vec<u8>,
        pad: &u8,
        strong: &u16,
        weak: &u16,
        duration_ms: &u16,
    ) {
        out.extend_from_slice(&[ty::RUMBLE, *pad]);
        out.extend_from_slice(&strong.to_be_bytes());
        out.extend_from_slice(&weak.to_be_bytes());
        out.extend_from_slice(&duration_ms.to_be_bytes());
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::Rumble {
            pad: r.slot()?,
            strong: r.u16()?,
            weak: r.u16()?,
            duration_ms: r.u16()?,
        })
    }
}

/// `Message::Clipboard`: its bytes, both ways.
pub(super) mod clipboard {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, text: &&[u8]) {
        let text = &text[..text.len().min(MAX_CLIPBOARD)];
        out.push(ty::CLIPBOARD);
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text);
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let len = usize::from(r.u16()?);
        if len > MAX_CLIPBOARD {
            return Err(DecodeError::InvalidValue {
                field: "clipboard length",
                value: len as u64,
            });
        }
        Ok(Message::Clipboard { text: r.take(len)? })
    }
}

/// `Message::CursorShape`: its bytes, both ways.
pub(super) mod cursor_shape {
    use super::*;

    // One argument per field of the message, as for every other message.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::wire) fn put(
        out: &mut Vec<u8>,
        serial: &u32,
        width: &u16,
        height: &u16,
        hot_x: &u16,
        hot_y: &u16,
        first_row: &u16,
        rgba: &&[u8],
    ) {
        out.push(ty::CURSOR_SHAPE);
        out.extend_from_slice(&serial.to_be_bytes());
        for v in [*width, *height, *hot_x, *hot_y, *first_row] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        let row = usize::from(*width) * 4;
        let rows = (rgba.len() / row.max(1)).min(usize::from(MAX_CURSOR));
        out.extend_from_slice(&(rows as u16).to_be_bytes());
        out.extend_from_slice(&rgba[..rows * row]);
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        let serial = r.u32()?;
        let mut size = |field| {
            let v = r.u16()?;
            if v == 0 || v > MAX_CURSOR {
                return Err(DecodeError::InvalidValue {
                    field,
                    value: v.into(),
                });
            }
            Ok(v)
        };
        let (width, height) = (size("cursor width")?, size("cursor height")?);
        let (hot_x, hot_y, first_row, rows) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
        for (field, v, limit) in [
            ("cursor hot x", hot_x, width),
            ("cursor hot y", hot_y, height),
            ("cursor rows", first_row.saturating_add(rows), height + 1),
        ] {
            if v >= limit {
                return Err(DecodeError::InvalidValue {
                    field,
                    value: v.into(),
                });
            }
        }
        let rgba = r.take(usize::from(rows) * usize::from(width) * 4)?;
        Ok(Message::CursorShape {
            serial,
            width,
            height,
            hot_x,
            hot_y,
            first_row,
            rgba,
        })
    }
}

/// `Message::CursorPosition`: its bytes, both ways.
pub(super) mod cursor_position {
    use super::*;

    pub(in crate::wire) fn put(out: &mut Vec<u8>, x: &u16, y: &u16, visible: &bool) {
        out.push(ty::CURSOR_POSITION);
        out.extend_from_slice(&x.to_be_bytes());
        out.extend_from_slice(&y.to_be_bytes());
        out.push(u8::from(*visible));
    }

    pub(in crate::wire) fn get<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
        Ok(Message::CursorPosition {
            x: r.u16()?,
            y: r.u16()?,
            visible: match r.u8()? {
                0 => false,
                1 => true,
                v => {
                    return Err(DecodeError::InvalidValue {
                        field: "cursor visible",
                        value: v.into(),
                    });
                }
            },
        })
    }
}
