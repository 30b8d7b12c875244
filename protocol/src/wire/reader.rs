//! Reading a message's fields: every length checked against the bytes
//! present before anything is taken, every code against its table.

use super::DecodeError;
use crate::MAX_DIMENSION;

/// The unread rest of a message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes not read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// A one-byte code of `field`'s table (`from` looks it up).
    pub fn code<T>(
        &mut self,
        field: &'static str,
        from: fn(u8) -> Option<T>,
    ) -> Result<T, DecodeError> {
        let v = self.u8()?;
        from(v).ok_or(DecodeError::InvalidValue {
            field,
            value: v.into(),
        })
    }

    /// A gamepad slot (`0..MAX_PADS`).
    pub fn slot(&mut self) -> Result<u8, DecodeError> {
        let pad = self.u8()?;
        if pad < crate::pad::MAX_PADS {
            Ok(pad)
        } else {
            Err(DecodeError::InvalidValue {
                field: "pad slot",
                value: pad.into(),
            })
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                needed: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::InvalidValue {
                field,
                value: v.into(),
            }),
        }
    }
    pub fn dimension(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let v = self.u16()?;
        // Even sizes only: I420 chroma planes are half size in both directions.
        if v == 0 || v > MAX_DIMENSION || v % 2 != 0 {
            return Err(DecodeError::InvalidValue {
                field,
                value: v.into(),
            });
        }
        Ok(v)
    }
    pub fn fps(&mut self) -> Result<u8, DecodeError> {
        let v = self.u8()?;
        if v == 0 || v > 240 {
            return Err(DecodeError::InvalidValue {
                field: "fps",
                value: v.into(),
            });
        }
        Ok(v)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}
