//! Video codecs and how a client and a host agree on one.
//!
//! The client's `Hello` says which codecs it decodes and which one its
//! user asked for ([`CodecAsk`]); the gateway passes that on in its
//! `Attach`; the host picks with [`agree`] from what its encoders make, in
//! its own order of preference, and says the choice in its `Welcome`.
//! H.264 is the floor: every client decodes it (openh264) and every host
//! encodes it, so an agreement always exists.

/// A video coding format a session can stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Codec {
    /// H.264 / AVC, Annex B access units.
    #[default]
    H264,
    /// H.265 / HEVC, Annex B access units.
    Hevc,
    /// AV1, one temporal unit (low-overhead OBUs) per frame.
    Av1,
}

impl Codec {
    /// Every codec, in the protocol's numbering.
    pub const ALL: [Codec; 3] = [Codec::H264, Codec::Hevc, Codec::Av1];

    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            Self::H264 => "H.264",
            Self::Hevc => "HEVC",
            Self::Av1 => "AV1",
        }
    }

    /// Its number on the wire.
    pub(crate) fn number(self) -> u8 {
        match self {
            Self::H264 => 0,
            Self::Hevc => 1,
            Self::Av1 => 2,
        }
    }

    /// The codec numbered `v` on the wire.
    pub(crate) fn from_number(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.number() == v)
    }

    /// Its bit in a set's mask.
    pub(crate) fn bit(self) -> u8 {
        1 << self.number()
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Codecs in an order of preference, each at most once; H.264 is always
/// among them (added last when left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codecs {
    list: [Codec; 3],
    len: u8,
}

impl Default for Codecs {
    /// H.264 alone.
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Codecs {
    /// `order` without repeats, with H.264 added last when missing.
    pub fn new(order: &[Codec]) -> Self {
        let mut s = Self {
            list: [Codec::H264; 3],
            len: 0,
        };
        for &c in order.iter().chain(&[Codec::H264]) {
            if !s.contains(c) {
                s.list[usize::from(s.len)] = c;
                s.len += 1;
            }
        }
        s
    }

    /// In order of preference.
    pub fn iter(&self) -> impl Iterator<Item = Codec> + '_ {
        self.list[..usize::from(self.len)].iter().copied()
    }

    /// Whether `c` is among them.
    pub fn contains(&self, c: Codec) -> bool {
        self.iter().any(|x| x == c)
    }

    /// The set as a bit mask (order is not carried).
    pub(crate) fn mask(&self) -> u8 {
        self.iter().fold(0, |m, c| m | c.bit())
    }

    /// The set a mask names, in the protocol's numbering with H.264 last
    /// (as [`Codecs::new`] puts it); unknown bits are a newer peer's codecs
    /// and are left out.
    pub(crate) fn from_mask(mask: u8) -> Self {
        let mut order = [Codec::H264; 3];
        let mut n = 0;
        for c in Codec::ALL {
            if c != Codec::H264 && mask & c.bit() != 0 {
                order[n] = c;
                n += 1;
            }
        }
        Self::new(&order[..n])
    }
}

impl std::fmt::Display for Codecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(c.name())?;
        }
        Ok(())
    }
}

/// What a client says of codecs when it opens a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodecAsk {
    /// What it decodes.
    pub decodes: Codecs,
    /// What its user chose, if anything ("automatic" otherwise).
    pub prefer: Option<Codec>,
}

/// The codec a session streams: the client's choice when the host makes it
/// and the client decodes it, else the first of the host's `offer` the
/// client decodes (H.264 at worst).
pub fn agree(offer: Codecs, ask: CodecAsk) -> Codec {
    if let Some(c) = ask.prefer
        && offer.contains(c)
        && ask.decodes.contains(c)
    {
        return c;
    }
    offer
        .iter()
        .find(|&c| ask.decodes.contains(c))
        .unwrap_or(Codec::H264)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Codec::*;

    fn ask(decodes: &[Codec], prefer: Option<Codec>) -> CodecAsk {
        CodecAsk {
            decodes: Codecs::new(decodes),
            prefer,
        }
    }

    #[test]
    fn h264_is_always_there_and_nothing_twice() {
        assert_eq!(Codecs::new(&[]).iter().collect::<Vec<_>>(), [H264]);
        let c = Codecs::new(&[Av1, Hevc, Av1]);
        assert_eq!(c.iter().collect::<Vec<_>>(), [Av1, Hevc, H264]);
        assert_eq!(c.to_string(), "AV1, HEVC, H.264");
        assert_eq!(Codecs::from_mask(0b1111_1110).mask(), 0b111);
    }

    #[test]
    fn the_users_choice_wins_when_both_sides_can() {
        let offer = Codecs::new(&[H264, Hevc, Av1]);
        assert_eq!(agree(offer, ask(&[Hevc, Av1], Some(Av1))), Av1);
        assert_eq!(agree(offer, ask(&[Hevc, Av1], Some(Hevc))), Hevc);
        // The client cannot decode what its user chose: the host's order.
        assert_eq!(agree(offer, ask(&[Hevc], Some(Av1))), H264);
        // The host cannot make it.
        let offer = Codecs::new(&[Hevc]);
        assert_eq!(agree(offer, ask(&[Hevc, Av1], Some(Av1))), Hevc);
    }

    #[test]
    fn otherwise_the_hosts_order_decides() {
        let offer = Codecs::new(&[Av1, Hevc]);
        assert_eq!(agree(offer, ask(&[Hevc, Av1], None)), Av1);
        assert_eq!(agree(offer, ask(&[Hevc], None)), Hevc);
        assert_eq!(agree(offer, ask(&[], None)), H264);
        assert_eq!(agree(Codecs::default(), ask(&[Hevc, Av1], Some(Av1))), H264);
    }
}
