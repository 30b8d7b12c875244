//! The vocabulary of the store's engines: tables by name, what an update
//! writes, and how long a write must last.

/// A table, by name.
pub(super) type Table = &'static str;

/// What an engine's `update` leaves under its key.
pub(super) enum Write {
    /// The value as it was.
    Keep,
    /// This value.
    Put(Vec<u8>),
    /// No value.
    Remove,
}

/// How much a write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// Until deleted, through crashes.
    Durable,
    /// Soft state renewed every few seconds (heartbeats): redb keeps it
    /// without waiting for the disk, as it would be renewed after a crash.
    Soft,
}
