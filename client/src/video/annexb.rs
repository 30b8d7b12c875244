//! Annex-B byte streams: NAL units by their start codes, and access
//! units (what a host sends per frame) by H.264's rules.

/// Splits an Annex-B stream into access units (H.264 7.4.1.2.3): a new one
/// starts at an access unit delimiter, SEI, SPS, PPS or prefix NAL unit, or
/// at a slice whose `first_mb_in_slice` is 0, once the current one holds a
/// slice. Each unit is a contiguous part of `data`, start codes included.
pub fn access_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut nals = nal_units(data).peekable();
    std::iter::from_fn(move || {
        let first = nals.next()?;
        let start = offset_in(data, first);
        let mut end = start + first.len();
        let mut has_slice = is_slice(first).is_some();
        while let Some(next) = nals.peek() {
            let starts_new = match is_slice(next) {
                Some(first_mb_zero) => has_slice && first_mb_zero,
                None => has_slice && matches!(nal_type(next), Some(6..=9 | 14..=18)),
            };
            if starts_new {
                break;
            }
            has_slice |= is_slice(next).is_some();
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

/// The NAL unit's header byte and the byte after it, past the start code.
fn nal_bytes(nal: &[u8]) -> Option<(u8, Option<u8>)> {
    let zeros = nal.iter().take_while(|&&b| b == 0).count();
    if nal.get(zeros) != Some(&1) {
        return None;
    }
    Some((*nal.get(zeros + 1)?, nal.get(zeros + 2).copied()))
}

fn nal_type(nal: &[u8]) -> Option<u8> {
    nal_bytes(nal).map(|(h, _)| h & 0x1f)
}

/// For a slice NAL unit (types 1 and 5), whether its `first_mb_in_slice` is
/// 0 (the Exp-Golomb code `1`); `None` for other units.
fn is_slice(nal: &[u8]) -> Option<bool> {
    match nal_bytes(nal)? {
        (h, Some(b)) if matches!(h & 0x1f, 1 | 5) => Some(b & 0x80 != 0),
        _ => None,
    }
}
