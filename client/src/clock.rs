//! The client's clock for stamps exchanged with the host: microseconds
//! since the process first looked at it. The session core counts from the
//! same zero ([`epoch`]), so the host's clock, once mapped, compares with
//! every stamp taken here.

use std::sync::LazyLock;
use std::time::Instant;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The clock's zero.
pub fn epoch() -> Instant {
    *EPOCH
}

/// Microseconds of the client's clock at `t` (negative before its zero).
pub fn local_us(t: Instant) -> i64 {
    let epoch = *EPOCH;
    if t >= epoch {
        t.duration_since(epoch).as_micros() as i64
    } else {
        -(epoch.duration_since(t).as_micros() as i64)
    }
}
