//! The service's own link: the datagrams between gateways and hosts, and
//! between a primary host and its backup. Every one is sealed with a key
//! the deployment's hosts and gateways hold (`link.key`, made with
//! `nephele-server new-link-key`), so a sender without it can neither open
//! a session on a host, nor type into one, nor read one, nor plant state on
//! a backup; and a host answers nothing it could not open, so a forged
//! source address reflects nothing.
//!
//! Each sender picks a random 16-byte id when it starts; its datagrams are
//! sealed with ChaCha20-Poly1305 under a key derived from the link key and
//! that id (HKDF-SHA256), with a counter as the nonce. The receiver keeps a
//! 64-datagram replay window per sender, so a datagram seen on the wire and
//! sent again is dropped.
//!
//! On the wire: `sender id (16) | counter (8, big-endian) | ciphertext | tag (16)`.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Prk, Salt};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of a link key.
pub const KEY_LEN: usize = 32;
const ID_LEN: usize = 16;
const HEADER: usize = ID_LEN + 8;
const TAG: usize = 16;
/// Bytes sealing adds to a datagram.
pub const OVERHEAD: usize = HEADER + TAG;
/// Largest datagram sealed: a link datagram is at most a protocol datagram
/// (1200 bytes) or a replicated state, and stays below one Ethernet frame
/// with the seal.
pub const MAX_PLAIN: usize = 1400;
/// Largest sealed datagram.
pub const MAX_SEALED: usize = MAX_PLAIN + OVERHEAD;
/// Senders a receiver keeps replay windows for (gateways and hosts talking
/// to it); only senders holding the key get one.
const MAX_SENDERS: usize = 1024;

/// Errors reading or making a link key.
#[derive(Debug, thiserror::Error)]
pub enum LinkKeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error(
        "{0} does not hold a link key (64 hexadecimal digits); make one with `nephele-server new-link-key`"
    )]
    Malformed(String),
}

/// The secret every host and gateway of one deployment shares.
#[derive(Clone)]
pub struct LinkKey(Prk);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    fn from_bytes(key: &[u8; KEY_LEN]) -> Self {
        Self(Salt::new(HKDF_SHA256, b"nephele link v1").extract(key))
    }

    /// A new random key, in memory only.
    pub fn random() -> Self {
        Self::from_bytes(&random_key())
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<Self, LinkKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| LinkKeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let text = text.trim();
        let mut key = [0u8; KEY_LEN];
        if text.len() != KEY_LEN * 2 || !text.is_ascii() {
            return Err(LinkKeyError::Malformed(path.display().to_string()));
        }
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16)
                .map_err(|_| LinkKeyError::Malformed(path.display().to_string()))?;
        }
        Ok(Self::from_bytes(&key))
    }

    /// Writes a new random key to `path` (readable by its owner only) and
    /// returns it.
    pub fn create(path: &Path) -> Result<Self, LinkKeyError> {
        let key = random_key();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        nephele_platform::fs::write_private(path, format!("{hex}\n").as_bytes()).map_err(
            |source| LinkKeyError::Io {
                path: path.display().to_string(),
                source,
            },
        )?;
        Ok(Self::from_bytes(&key))
    }

    /// Reads the key at `path`, or makes it there if there is none.
    pub fn open_or_create(path: &Path) -> Result<Self, LinkKeyError> {
        if path.exists() {
            Self::read(path)
        } else {
            Self::create(path)
        }
    }

    /// The AEAD key of one sender.
    fn sender_key(&self, id: &[u8; ID_LEN]) -> LessSafeKey {
        let info = [&id[..]];
        let okm = self
            .0
            .expand(&info, &CHACHA20_POLY1305)
            .expect("32 bytes is within HKDF-SHA256's output");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .expect("the system's random source");
    key
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Seals what one sender sends; shared by its threads.
pub struct Sealer {
    id: [u8; ID_LEN],
    key: LessSafeKey,
    counter: AtomicU64,
}

impl Sealer {
    /// A sender with a fresh random id.
    pub fn new(link: &LinkKey) -> Self {
        let mut id = [0u8; ID_LEN];
        SystemRandom::new()
            .fill(&mut id)
            .expect("the system's random source");
        Self {
            key: link.sender_key(&id),
            id,
            counter: AtomicU64::new(0),
        }
    }

    /// Seals `plain` into `out`; the sealed datagram, or `None` if `plain`
    /// is longer than [`MAX_PLAIN`] or `out` too short.
    pub fn seal<'a>(&self, plain: &[u8], out: &'a mut [u8]) -> Option<&'a [u8]> {
        let len = HEADER + plain.len() + TAG;
        if plain.len() > MAX_PLAIN || out.len() < len {
            return None;
        }
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        out[..ID_LEN].copy_from_slice(&self.id);
        out[ID_LEN..HEADER].copy_from_slice(&counter.to_be_bytes());
        let body = &mut out[HEADER..HEADER + plain.len()];
        body.copy_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::empty(), body)
            .ok()?;
        out[HEADER + plain.len()..len].copy_from_slice(tag.as_ref());
        Some(&out[..len])
    }
}

/// The last 64 counters seen from one sender.
#[derive(Default, Clone, Copy)]
struct Window {
    top: u64,
    seen: u64,
    used: bool,
}

impl Window {
    fn fresh(&self, counter: u64) -> bool {
        if !self.used || counter > self.top {
            return true;
        }
        let back = self.top - counter;
        back < 64 && self.seen & (1 << back) == 0
    }

    fn mark(&mut self, counter: u64) {
        if !self.used {
            *self = Self {
                top: counter,
                seen: 1,
                used: true,
            };
        } else if counter > self.top {
            let shift = counter - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = counter;
        } else {
            self.seen |= 1 << (self.top - counter);
        }
    }
}

struct Sender {
    key: LessSafeKey,
    window: Window,
    last_used: u64,
}

/// Opens what arrives; one per receiving socket.
pub struct Opener {
    link: LinkKey,
    senders: HashMap<[u8; ID_LEN], Sender>,
    clock: u64,
    /// Datagrams that failed to open or were replays.
    pub refused: u64,
}

impl Opener {
    /// A receiver of datagrams sealed with `link`.
    pub fn new(link: &LinkKey) -> Self {
        Self {
            link: link.clone(),
            senders: HashMap::new(),
            clock: 0,
            refused: 0,
        }
    }

    /// Opens `dgram` in place: the range of `dgram` that holds the
    /// plaintext, or `None` (counted in [`Opener::refused`]) for a datagram
    /// not sealed with the link key, tampered with, or seen before.
    pub fn open(&mut self, dgram: &mut [u8]) -> Option<Range<usize>> {
        let r = self.try_open(dgram);
        if r.is_none() {
            self.refused += 1;
        }
        r
    }

    fn try_open(&mut self, dgram: &mut [u8]) -> Option<Range<usize>> {
        if dgram.len() < OVERHEAD {
            return None;
        }
        let id: [u8; ID_LEN] = dgram[..ID_LEN].try_into().ok()?;
        let counter = u64::from_be_bytes(dgram[ID_LEN..HEADER].try_into().ok()?);
        self.clock += 1;
        let known = self.senders.get(&id);
        if known.is_some_and(|s| !s.window.fresh(counter)) {
            return None;
        }
        // A sender not seen yet costs a key derivation (a microsecond), and
        // is remembered only once a datagram of it opens.
        let mut fresh_key = None;
        let key = match known {
            Some(s) => &s.key,
            None => &*fresh_key.insert(self.link.sender_key(&id)),
        };
        let len = key
            .open_in_place(nonce(counter), Aad::empty(), &mut dgram[HEADER..])
            .ok()?
            .len();
        match self.senders.get_mut(&id) {
            Some(s) => {
                s.window.mark(counter);
                s.last_used = self.clock;
            }
            None => {
                let key = fresh_key?;
                if self.senders.len() >= MAX_SENDERS
                    && let Some(oldest) = self
                        .senders
                        .iter()
                        .min_by_key(|(_, s)| s.last_used)
                        .map(|(id, _)| *id)
                {
                    self.senders.remove(&oldest);
                }
                let mut window = Window::default();
                window.mark(counter);
                self.senders.insert(
                    id,
                    Sender {
                        key,
                        window,
                        last_used: self.clock,
                    },
                );
            }
        }
        Some(HEADER..HEADER + len)
    }
}

/// A UDP socket of the link: what it sends is sealed.
pub struct LinkSocket {
    /// The socket; receive with it and open with an [`Opener`].
    pub socket: UdpSocket,
    sealer: Sealer,
}

impl LinkSocket {
    /// `socket`, sealing with `link`.
    pub fn new(socket: UdpSocket, link: &LinkKey) -> Self {
        Self {
            socket,
            sealer: Sealer::new(link),
        }
    }

    /// Seals and sends one datagram; a failure (a peer that is gone) is
    /// noticed by its silence, not here.
    pub fn send_to(&self, datagram: &[u8], to: SocketAddr) {
        let mut out = [0u8; MAX_SEALED];
        let Some(sealed) = self.sealer.seal(datagram, &mut out) else {
            tracing::warn!(
                len = datagram.len(),
                "datagram too long for the link; dropped"
            );
            return;
        };
        if let Err(e) = self.socket.send_to(sealed, to) {
            tracing::trace!(error = %e, %to, "link send");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(s: &Sealer, plain: &[u8]) -> Vec<u8> {
        let mut out = [0u8; MAX_SEALED];
        s.seal(plain, &mut out).unwrap().to_vec()
    }

    #[test]
    fn what_one_seals_another_with_the_key_opens_once() {
        let key = LinkKey::random();
        let s = Sealer::new(&key);
        let mut o = Opener::new(&key);
        let d = sealed(&s, b"attach session 7");
        assert_eq!(d.len(), 16 + OVERHEAD);
        let mut copy = d.clone();
        let r = o.open(&mut copy).unwrap();
        assert_eq!(&copy[r], b"attach session 7");
        // The same datagram again: a replay.
        let mut again = d.clone();
        assert!(o.open(&mut again).is_none());
        assert_eq!(o.refused, 1);
    }

    #[test]
    fn without_the_key_or_with_a_changed_byte_nothing_opens() {
        let key = LinkKey::random();
        let mut o = Opener::new(&key);
        let stranger = Sealer::new(&LinkKey::random());
        assert!(o.open(&mut sealed(&stranger, b"type rm -rf")).is_none());
        let s = Sealer::new(&key);
        let d = sealed(&s, b"input 1");
        for i in 0..d.len() {
            let mut t = d.clone();
            t[i] ^= 0x40;
            assert!(o.open(&mut t).is_none(), "byte {i} changed and it opened");
        }
        assert!(o.open(&mut [0u8; 10]).is_none());
        assert!(o.open(&mut []).is_none());
        assert!(o.senders.is_empty(), "strangers are not remembered");
        let mut fine = d.clone();
        assert!(o.open(&mut fine).is_some());
    }

    #[test]
    fn reordering_within_the_window_is_fine_and_old_ones_are_not() {
        let key = LinkKey::random();
        let s = Sealer::new(&key);
        let mut o = Opener::new(&key);
        let ds: Vec<Vec<u8>> = (0..100u8).map(|i| sealed(&s, &[i])).collect();
        // 0..100 sent; 99 arrives first, then 50..99 in reverse, then 0.
        assert!(o.open(&mut ds[99].clone()).is_some());
        for i in (50..99).rev() {
            assert!(o.open(&mut ds[i].clone()).is_some(), "{i}");
        }
        assert!(
            o.open(&mut ds[20].clone()).is_none(),
            "64 behind the newest"
        );
        assert!(o.open(&mut ds[60].clone()).is_none(), "a duplicate");
    }

    #[test]
    fn a_key_file_is_kept_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("nephele-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("link.key");
        let _ = std::fs::remove_file(&path);
        let made = LinkKey::open_or_create(&path).unwrap();
        let read = LinkKey::open_or_create(&path).unwrap();
        let mut o = Opener::new(&read);
        assert!(o.open(&mut sealed(&Sealer::new(&made), b"x")).is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        std::fs::write(&path, "not a key").unwrap();
        let e = LinkKey::read(&path).unwrap_err().to_string();
        assert!(e.contains("new-link-key"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
