//! IVF, the simple container AV1 streams come in from FFmpeg and the
//! reference tools (`-f ivf`): a 32-byte file header, then each frame (an
//! AV1 temporal unit) after a 12-byte header giving its length.

/// The frames of an IVF file, or `None` when `data` is not one. A frame
/// cut short by the end of the file ends the iteration.
pub fn frames(data: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    if data.get(..4) != Some(b"DKIF") {
        return None;
    }
    let header = usize::from(u16::from_le_bytes([*data.get(6)?, *data.get(7)?]));
    let mut rest = data.get(header.max(32)..)?;
    Some(std::iter::from_fn(move || {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let frame = rest.get(12..12 + len)?;
        rest = &rest[12 + len..];
        Some(frame)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_whole_and_a_cut_one_ends_the_file() {
        let mut file = b"DKIF\0\0\x20\0AV01".to_vec();
        file.resize(32, 0);
        for payload in [&b"abc"[..], b"defgh"] {
            file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            file.extend_from_slice(&[0; 8]);
            file.extend_from_slice(payload);
        }
        let whole: Vec<&[u8]> = frames(&file).unwrap().collect();
        assert_eq!(whole, [&b"abc"[..], b"defgh"]);
        let cut: Vec<&[u8]> = frames(&file[..file.len() - 1]).unwrap().collect();
        assert_eq!(cut, [&b"abc"[..]]);
        assert!(frames(b"\0\0\0\x01").is_none());
    }
}
