//! Length-prefixed messages on a byte stream (the control, input and
//! recovery lanes between client and gateway).
//!
//! Each message is preceded by its length as a big-endian `u16`. The reader
//! holds at most one partial message, and a length above
//! [`crate::MAX_STREAM_MESSAGE`] is rejected before anything is buffered, so a
//! peer cannot make it grow without bound.

use crate::MAX_STREAM_MESSAGE;

wire_enum! {
    /// The first byte a client writes on each stream it opens, naming the lane.
    pub enum Lane {
        /// Bidirectional: hello/welcome, ping/pong, goodbye.
        Control = 1 => "control",
        /// Client → gateway: keys, buttons, pointer, wheel; reliable and ordered.
        Input = 2 => "input",
        /// Client → gateway: keyframe requests, on their own stream so they
        /// never queue behind input or control traffic.
        Recovery = 3 => "recovery",
    }
}

/// Error from [`FrameReader`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The announced length exceeds [`MAX_STREAM_MESSAGE`] or is zero.
    #[error("stream message length {0} outside 1..={MAX_STREAM_MESSAGE}")]
    BadLength(usize),
}

/// Appends one length-prefixed message to `out`: `encode` writes the body.
pub fn write_frame(out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    encode(out);
    let len = out.len() - start - 2;
    debug_assert!(len <= MAX_STREAM_MESSAGE);
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    out[start..start + 2].copy_from_slice(&len.to_be_bytes());
}

/// Cuts a byte stream into messages.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out by `next_frame`, dropped lazily.
    consumed: usize,
}

impl FrameReader {
    /// A reader with no buffered bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    ///
    /// The caller must drain with [`FrameReader::next_frame`] before pushing
    /// more; the buffer never holds more than one partial message plus the
    /// bytes pushed since the last drain.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message's bytes, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FramingError> {
        let avail = &self.buf[self.consumed..];
        if avail.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([avail[0], avail[1]]));
        if len == 0 || len > MAX_STREAM_MESSAGE {
            return Err(FramingError::BadLength(len));
        }
        if avail.len() < 2 + len {
            return Ok(None);
        }
        let start = self.consumed + 2;
        self.consumed += 2 + len;
        Ok(Some(&self.buf[start..start + len]))
    }

    /// Bytes currently held (for tests and for bounding memory).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_survive_any_split(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..20), chunk in 1usize..64) {
            let mut stream = Vec::new();
            for m in &msgs {
                write_frame(&mut stream, |o| o.extend_from_slice(m));
            }
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                r.push(c);
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f.to_vec());
                }
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(r.buffered(), 0);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut r = FrameReader::new();
            r.push(&bytes);
            while let Ok(Some(_)) = r.next_frame() {}
            prop_assert!(r.buffered() <= bytes.len());
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_buffering() {
        let mut r = FrameReader::new();
        r.push(&[0xFF, 0xFF, 1, 2, 3]);
        assert_eq!(r.next_frame(), Err(FramingError::BadLength(0xFFFF)));
        let mut r = FrameReader::new();
        r.push(&[0, 0]);
        assert_eq!(r.next_frame(), Err(FramingError::BadLength(0)));
    }
}
