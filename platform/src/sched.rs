//! Thread scheduling: the threads that carry input and its acknowledgement
//! ask to be run soon after they wake, so a busy decoder or encoder on the
//! same cores does not hold a key press back for a whole time slice.
//!
//! This changes when a thread runs, not how much CPU it gets: its fair
//! share stays that of any other thread, so nothing else starves.

/// The time slice asked for on Linux: the shortest the kernel accepts.
/// Linux's EEVDF scheduler (6.12 and later) lets a waking thread with a
/// shorter slice than the running one preempt it at once; older kernels
/// ignore the request.
#[cfg(target_os = "linux")]
pub const LATENCY_SLICE: std::time::Duration = std::time::Duration::from_micros(100);

/// Marks the calling thread as latency-critical: on Linux a short EEVDF
/// slice, on macOS the user-interactive QoS class, on Windows an
/// above-normal priority. A thread whose scheduling the user already
/// changed (a real-time or idle policy) is left alone. Returns whether the
/// request was accepted; a refusal (logged) only means the thread keeps
/// ordinary scheduling.
pub fn latency_critical() -> bool {
    apply(true)
}

/// Gives the calling thread ordinary scheduling again, for bulk work (an
/// encoder or decoder) started from a latency-critical thread, which would
/// otherwise inherit its setting. Returns whether that was accepted.
pub fn ordinary() -> bool {
    apply(false)
}

/// Puts the calling thread last in line for good: on Linux the weakest
/// nice value (19), on macOS the utility QoS class, on Windows the lowest
/// priority. For work done for requesters not yet trusted (a password
/// check from an unknown device), so a flood of it takes only the CPU
/// nothing else wants. Not undone (an unprivileged thread could not raise
/// itself again): give it threads of its own. Returns whether that was
/// accepted.
pub fn background() -> bool {
    match imp::background() {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "background scheduling refused");
            false
        }
    }
}

fn apply(critical: bool) -> bool {
    match imp::set(critical) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, critical, "thread scheduling change refused");
            false
        }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;

    /// `struct sched_attr` as of Linux 3.14 (`SCHED_ATTR_SIZE_VER0`).
    /// Hand-written because neither libc nor glibc wraps `sched_setattr`.
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }

    pub fn set(critical: bool) -> io::Result<()> {
        // SAFETY: plain syscalls on the calling thread (pid 0) with
        // arguments that live for the call.
        unsafe {
            if libc::sched_getscheduler(0) != libc::SCHED_OTHER {
                return Ok(());
            }
            // getpriority may return -1 legitimately: errno tells.
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
            if nice == -1 && *libc::__errno_location() != 0 {
                return Err(io::Error::last_os_error());
            }
            let attr = SchedAttr {
                size: std::mem::size_of::<SchedAttr>() as u32,
                policy: libc::SCHED_OTHER as u32,
                flags: 0,
                nice,
                priority: 0,
                // Zero is the kernel's default slice.
                runtime: if critical {
                    super::LATENCY_SLICE.as_nanos() as u64
                } else {
                    0
                },
                deadline: 0,
                period: 0,
            };
            if libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    pub fn background() -> io::Result<()> {
        // On Linux the nice value is the calling thread's (who = 0).
        // SAFETY: a plain syscall on the calling thread.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(target_vendor = "apple")]
mod imp {
    use std::io;

    pub fn set(critical: bool) -> io::Result<()> {
        use libc::qos_class_t::{QOS_CLASS_DEFAULT, QOS_CLASS_USER_INTERACTIVE};
        let class = if critical {
            QOS_CLASS_USER_INTERACTIVE
        } else {
            QOS_CLASS_DEFAULT
        };
        qos(class)
    }

    pub fn background() -> io::Result<()> {
        qos(libc::qos_class_t::QOS_CLASS_UTILITY)
    }

    fn qos(class: libc::qos_class_t) -> io::Result<()> {
        // SAFETY: applies to the calling thread only.
        let rc = unsafe { libc::pthread_set_qos_class_self_np(class, 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::io;
    use windows_sys::Win32::System::Threading::{
        GetCurrentThread, SetThreadPriority, THREAD_PRIORITY_ABOVE_NORMAL, THREAD_PRIORITY_LOWEST,
        THREAD_PRIORITY_NORMAL,
    };

    pub fn set(critical: bool) -> io::Result<()> {
        priority(if critical {
            THREAD_PRIORITY_ABOVE_NORMAL
        } else {
            THREAD_PRIORITY_NORMAL
        })
    }

    pub fn background() -> io::Result<()> {
        priority(THREAD_PRIORITY_LOWEST)
    }

    fn priority(priority: i32) -> io::Result<()> {
        // SAFETY: the pseudo-handle of the calling thread needs no closing.
        let ok = unsafe { SetThreadPriority(GetCurrentThread(), priority) };
        if ok != 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(any(target_os = "linux", target_vendor = "apple", windows)))]
mod imp {
    pub fn set(_critical: bool) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    pub fn background() -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_background_thread_is_niced_to_the_last_and_others_are_not() {
        // SAFETY: getpriority on the calling thread.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let (after, child) = std::thread::spawn(move || {
            assert!(super::background());
            (nice(), std::thread::spawn(nice).join().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!((after, child), (19, 19), "it and the threads it starts");
        assert_eq!(nice(), before, "the thread that started it is left alone");
    }

    /// The slice the kernel reports for a thread, from its sched file.
    fn slice_ns(tid: i32) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).ok()?;
        text.lines()
            .find(|l| l.trim_start().starts_with("se.slice"))?
            .split(':')
            .nth(1)?
            .trim()
            .parse::<f64>()
            .ok()
            .map(|ms| ms as u64)
    }

    fn own_slice_ns() -> Option<u64> {
        // SAFETY: gettid has no preconditions.
        slice_ns(unsafe { libc::gettid() })
    }

    #[test]
    fn a_latency_critical_thread_gets_the_short_slice_and_its_bulk_children_do_not() {
        let (critical, child, restored) = std::thread::spawn(|| {
            let before = own_slice_ns();
            assert!(super::latency_critical());
            let critical = own_slice_ns();
            let child = std::thread::spawn(|| {
                let inherited = own_slice_ns();
                assert!(super::ordinary());
                (inherited, own_slice_ns())
            })
            .join()
            .unwrap();
            (critical, child, before)
        })
        .join()
        .unwrap();
        // Kernels before 6.12 show no slice; where they do, it is ours, a
        // child inherits it, and `ordinary` gives back the default.
        if let Some(ns) = critical {
            assert_eq!(ns, super::LATENCY_SLICE.as_nanos() as u64);
            assert_eq!(child.0, critical, "a child inherits the slice");
            assert_eq!(child.1, restored);
            assert_ne!(child.1, critical);
        }
    }
}
