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

/// CPU time another running process of this user has used so far (a
/// child this one started), where the platform tells.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    imp::cpu_time_of(pid)
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

    #[cfg(target_os = "linux")]
    pub fn cpu_time_of(pid: u32) -> Option<Duration> {
        // Fields 14 and 15 of /proc/PID/stat, in clock ticks; the command
        // name (field 2) is in parentheses and may hold spaces.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
        Some(Duration::from_nanos(
            (utime + stime).saturating_mul(1_000_000_000) / hz,
        ))
    }

    #[cfg(not(target_os = "linux"))]
    pub fn cpu_time_of(_pid: u32) -> Option<Duration> {
        None
    }
}

#[cfg(windows)]
mod imp {
    use std::time::Duration;
    use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, HANDLE};
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    pub fn cpu_time() -> Option<Duration> {
        // SAFETY: the pseudo-handle needs no closing.
        times(unsafe { GetCurrentProcess() })
    }

    pub fn cpu_time_of(pid: u32) -> Option<Duration> {
        // SAFETY: a plain query; the handle is checked and closed below.
        let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if h.is_null() {
            return None;
        }
        let t = times(h);
        // SAFETY: `h` is the valid handle opened above, closed once.
        unsafe { CloseHandle(h) };
        t
    }

    fn times(process: HANDLE) -> Option<Duration> {
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: `process` is a valid handle; the four pointers are valid
        // FILETIMEs for the call.
        let ok =
            unsafe { GetProcessTimes(process, &mut created, &mut exited, &mut kernel, &mut user) };
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

    pub fn cpu_time_of(_pid: u32) -> Option<std::time::Duration> {
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

    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_process_cpu_time_is_read() {
        // A shell spinning for a while: its CPU time shows up while it runs.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .expect("sh");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut seen = std::time::Duration::ZERO;
        while std::time::Instant::now() < deadline {
            seen = super::cpu_time_of(pid).expect("a running child's CPU time");
            if seen >= std::time::Duration::from_millis(50) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen >= std::time::Duration::from_millis(50), "{seen:?}");
        assert!(super::cpu_time_of(u32::MAX).is_none(), "no such process");
    }
}
