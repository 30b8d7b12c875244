//! States other hosts replicate here, kept in case their host fails: at
//! most [`MAX_STANDBY`], each forgotten after [`STANDBY_TTL`] without a
//! refresh (the oldest goes first when full).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Restore;

/// Standby states kept for sessions of other hosts, at most.
pub const MAX_STANDBY: usize = 256;

/// A standby state not refreshed for this long is forgotten.
pub const STANDBY_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct Entry {
    input_seq: u32,
    version: u32,
    state: Vec<u8>,
    at: Instant,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Standby {
    entries: HashMap<u64, Entry>,
}

impl Standby {
    /// Keeps (or refreshes) a session's state; an older version than the
    /// one kept only refreshes its age (versions restart only with a new
    /// primary, so the compare wraps).
    pub fn keep(&mut self, id: u64, input_seq: u32, version: u32, state: &[u8], now: Instant) {
        if let Some(s) = self.entries.get_mut(&id) {
            if (version.wrapping_sub(s.version) as i32) >= 0 {
                s.input_seq = input_seq;
                s.version = version;
                s.state.clear();
                s.state.extend_from_slice(state);
            }
            s.at = now;
            return;
        }
        if self.entries.len() >= MAX_STANDBY {
            self.expire(now);
            if self.entries.len() >= MAX_STANDBY
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, s)| s.at)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            id,
            Entry {
                input_seq,
                version,
                state: state.to_vec(),
                at: now,
            },
        );
    }

    /// Whether a state is kept for `id`.
    pub fn holds(&self, id: u64) -> bool {
        self.entries.contains_key(&id)
    }

    /// The state kept for `id`, removed.
    pub fn take(&mut self, id: u64) -> Option<Restore> {
        self.entries.remove(&id).map(|e| Restore {
            input_seq: e.input_seq,
            state: e.state,
        })
    }

    /// Forgets states not refreshed for [`STANDBY_TTL`].
    pub fn expire(&mut self, now: Instant) {
        self.entries
            .retain(|_, s| now.saturating_duration_since(s.at) < STANDBY_TTL);
    }

    /// States kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_replace_older_ones_and_the_oldest_goes_when_full() {
        let t0 = Instant::now();
        let mut s = Standby::default();
        s.keep(1, 10, 5, b"five", t0);
        s.keep(1, 9, 4, b"four", t0);
        let r = s.take(1).unwrap();
        assert_eq!((r.input_seq, r.state.as_slice()), (10, &b"five"[..]));
        assert!(s.take(1).is_none());
        for id in 0..MAX_STANDBY as u64 {
            s.keep(id, 0, 0, b"x", t0 + Duration::from_millis(id));
        }
        s.keep(9999, 0, 0, b"new", t0 + Duration::from_secs(1));
        assert_eq!(s.len(), MAX_STANDBY);
        assert!(s.take(0).is_none(), "the oldest went");
        assert!(s.take(9999).is_some());
        s.expire(t0 + STANDBY_TTL + Duration::from_secs(2));
        assert!(s.is_empty());
    }
}
