//! Annex-B byte streams: NAL units by their start codes, and access
//! units (what a host sends per frame) by H.264's and HEVC's rules.

/// What a NAL unit is to access-unit splitting.
enum Kind {
    /// A slice; `first` when it is its picture's first.
    Slice { first: bool },
    /// A unit that opens a new access unit when it follows a slice.
    Opens,
    /// Anything else.
    Other,
}

/// Splits an Annex-B H.264 stream into access units (H.264 7.4.1.2.3): a
/// new one starts at an access unit delimiter, SEI, SPS, PPS or prefix NAL
/// unit, or at a slice whose `first_mb_in_slice` is 0, once the current one
/// holds a slice. Each unit is a contiguous part of `data`, start codes
/// included.
pub fn access_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    split(data, h264_kind)
}

/// Splits an Annex-B HEVC stream into access units (H.265 7.4.2.4.4): a new
/// one starts at a VPS, SPS, PPS, access unit delimiter, prefix SEI or
/// reserved unit (types 41–44, 48–55), or at a slice segment with
/// `first_slice_segment_in_pic_flag`, once the current one holds a slice.
pub fn hevc_access_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    split(data, hevc_kind)
}

fn split(data: &[u8], kind: fn(&[u8]) -> Kind) -> impl Iterator<Item = &[u8]> {
    let mut nals = nal_units(data).peekable();
    std::iter::from_fn(move || {
        let first = nals.next()?;
        let start = offset_in(data, first);
        let mut end = start + first.len();
        let mut has_slice = matches!(kind(first), Kind::Slice { .. });
        while let Some(next) = nals.peek() {
            let next_kind = kind(next);
            let starts_new = match next_kind {
                Kind::Slice { first } => has_slice && first,
                Kind::Opens => has_slice,
                Kind::Other => false,
            };
            if starts_new {
                break;
            }
            has_slice |= matches!(next_kind, Kind::Slice { .. });
            end = offset_in(data, next) + next.len();
            nals.next();
        }
        data.get(start..end)
    })
}

/// The Annex-B NAL units of `data`, each with its start code (a zero byte
/// before `00 00 01` counts as the start code's), found with memchr's SIMD
/// substring search: a file is scanned once, not once per unit.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = memchr::memmem::find_iter(data, &[0, 0, 1])
        .map(move |i| if i > 0 && data[i - 1] == 0 { i - 1 } else { i })
        .peekable();
    std::iter::from_fn(move || {
        let start = starts.next()?;
        let end = starts.peek().copied().unwrap_or(data.len());
        data.get(start..end)
    })
}

fn offset_in(data: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - data.as_ptr() as usize
}

/// The NAL unit past its start code: its header first.
fn payload(nal: &[u8]) -> &[u8] {
    let zeros = nal.iter().take_while(|&&b| b == 0).count();
    match nal.get(zeros) {
        Some(1) => &nal[zeros + 1..],
        _ => &[],
    }
}

/// H.264: slices are types 1 and 5, the first of a picture with
/// `first_mb_in_slice` 0 (the Exp-Golomb code `1`, the next byte's top bit).
fn h264_kind(nal: &[u8]) -> Kind {
    match payload(nal) {
        [h, b, ..] if matches!(h & 0x1f, 1 | 5) => Kind::Slice {
            first: b & 0x80 != 0,
        },
        [h, ..] if matches!(h & 0x1f, 6..=9 | 14..=18) => Kind::Opens,
        _ => Kind::Other,
    }
}

/// HEVC: two header bytes, the type in the first's bits 1–6; slice
/// segments are types 0–31, the first of a picture with the top bit of
/// the byte after the header set.
fn hevc_kind(nal: &[u8]) -> Kind {
    match payload(nal) {
        [h, _, b, ..] if (h >> 1) & 0x3f <= 31 => Kind::Slice {
            first: b & 0x80 != 0,
        },
        [h, ..] if matches!((h >> 1) & 0x3f, 32..=35 | 39 | 41..=44 | 48..=55) => Kind::Opens,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hevc_units_split_at_parameter_sets_and_first_slices() {
        // VPS, SPS, PPS, an IDR slice (first), a second slice segment of
        // the same picture, then a trailing picture's first slice.
        let stream: Vec<u8> = [
            &[0, 0, 0, 1, 0x40, 0x01, 0x0c][..],
            &[0, 0, 1, 0x42, 0x01, 0x01],
            &[0, 0, 1, 0x44, 0x01, 0xc1],
            &[0, 0, 1, 0x26, 0x01, 0xaf, 0x11],
            &[0, 0, 1, 0x26, 0x01, 0x2f, 0x22],
            &[0, 0, 1, 0x02, 0x01, 0xd0, 0x33],
        ]
        .concat();
        let units: Vec<&[u8]> = hevc_access_units(&stream).collect();
        assert_eq!(units.len(), 2, "{units:?}");
        assert_eq!(units[0].len(), stream.len() - 7);
        assert_eq!(units[1], &[0, 0, 1, 0x02, 0x01, 0xd0, 0x33]);
    }
}
