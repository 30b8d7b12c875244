//! Splitting encoded access units into datagrams, and putting them back
//! together on the client.
//!
//! The [`Fragmenter`] cuts an access unit into fragments of equal size (the
//! last may be shorter) and adds Reed–Solomon parity fragments (the
//! `reed-solomon-simd` crate: any `count` of the `count + parity` fragments
//! rebuild the frame). The [`Reassembler`] accepts fragments in any order,
//! rebuilds a frame from parity when enough arrived,
//! keeps a fixed number of frame slots with reused buffers, hands out complete
//! frames strictly in frame order, gives up on a frame at its deadline, and
//! after any loss withholds frames until the next keyframe (a decoder fed a
//! frame whose reference is missing shows garbage). It asks, through
//! [`Reassembler::poll_keyframe_request`], for that keyframe at a bounded rate.

mod fragment;
mod reassemble;
#[cfg(test)]
mod tests;

pub use fragment::{Fragmenter, parity_for};
pub use reassemble::{
    CompleteFrame, FragmentError, Reassembler, ReassemblerConfig, ReassemblyEvent, ReassemblyStats,
    SETTLE,
};

/// `a` comes before `b` in wrapping frame-number order.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
