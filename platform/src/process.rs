//! Facts about the running process, and ids nobody else will pick.

use std::time::Duration;

/// A random 64-bit id, never 0: std's OS-seeded hasher over the time.
/// Hand-rolled because an RNG crate for one number per session or
/// connection is not worth its weight.
pub fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish().max(1)
}

/// CPU time the whole process has used so far (user and system, all
/// threads), where the platform tells.
pub fn cpu_time() -> Option<Duration> {
    imp::cpu_time()
}

#[cfg(unix)]
mod imp {
    use std::time::Duration;

    pub fn cpu_time() -> Option<Duration> {
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given a valid pointer to.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: initialised by the successful call (and zeroed before).
        let ru = unsafe { ru.assume_init() };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        Some(tv(ru.ru_utime) + tv(ru.ru_stime))
    }
}

#[cfg(windows)]
mod imp {
    use std::time::Duration;
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};

    pub fn cpu_time() -> Option<Duration> {
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: the pseudo-handle needs no closing; the four pointers are
        // valid FILETIMEs for the call.
        let ok = unsafe {
            GetProcessTimes(
                GetCurrentProcess(),
                &mut created,
                &mut exited,
                &mut kernel,
                &mut user,
            )
        };
        if ok == 0 {
            return None;
        }
        // 100-nanosecond units.
        let ticks = |f: FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
        Some(Duration::from_nanos((ticks(kernel) + ticks(user)) * 100))
    }
}

#[cfg(not(any(unix, windows)))]
mod imp {
    pub fn cpu_time() -> Option<std::time::Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_grows_with_work() {
        let before = super::cpu_time().expect("this platform tells");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = super::cpu_time().unwrap();
        assert!(after > before, "{before:?} → {after:?}");
    }
}
