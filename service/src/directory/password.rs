//! Checking a password against its Argon2 hash in memory the thread keeps.
//!
//! `argon2`'s own `verify_password` allocates the hash's whole memory
//! (19 MiB at our parameters) for each check and frees it after. Measured
//! on the directory: about 1,200 page faults per sign-in. Worse, a check
//! on a lowest-priority thread (a device the account does not know) that
//! maps or unmaps its memory holds the process's memory map while it does;
//! preempted there by real users' work, it makes their checks wait on that
//! lock for as long as the scheduler leaves it waiting. So each thread
//! keeps its blocks and reuses them: after its first check a thread
//! neither maps nor faults.

use std::cell::RefCell;

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};

thread_local! {
    /// This thread's Argon2 memory, grown to the largest hash it checked.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Whether `password` is the one `hash` (a PHC string's parts) was made
/// from; false for a hash it cannot read. Compares in constant time.
pub fn verify(password: &[u8], hash: &PasswordHash<'_>) -> bool {
    let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let hashed = BLOCKS.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
    });
    hashed.is_ok() && Output::new(out).is_ok_and(|got| got == expected)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::rand_core::OsRng;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};

    use super::*;

    #[test]
    fn it_judges_as_argon2_does_with_memory_reused_across_parameters() {
        let small = Params::new(64, 1, 1, Some(32)).unwrap();
        let hashes: Vec<String> = [Argon2::default(), Argon2::from(small)]
            .iter()
            .map(|a| {
                a.hash_password(b"right horse", &SaltString::generate(&mut OsRng))
                    .unwrap()
                    .to_string()
            })
            .collect();
        // Large, then small, then large again: the same thread's memory.
        for phc in hashes.iter().chain(hashes.iter()) {
            let hash = PasswordHash::new(phc).unwrap();
            for (password, right) in [(&b"right horse"[..], true), (b"wrong horse", false)] {
                assert_eq!(verify(password, &hash), right, "{phc}");
                let theirs = Argon2::default().verify_password(password, &hash).is_ok();
                assert_eq!(theirs, right);
            }
        }
        // A hash it cannot read is never a match.
        let mut hash = PasswordHash::new(&hashes[0]).unwrap();
        hash.salt = None;
        assert!(!verify(b"right horse", &hash));
    }
}
