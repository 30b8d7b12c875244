//! Local X display numbers: which are held by a running server.

/// The Unix socket of local display `:n` (the X server's convention).
pub(super) fn local_socket(n: &str) -> String {
    format!("/tmp/.X11-unix/X{n}")
}

/// Whether local display `:n` is in use, as X servers themselves judge
/// it: its lock file names a live process, or (without one) a server
/// answers on its socket. A socket or lock left by a server that was
/// killed does not hold the number: the next server replaces them.
pub fn local_display_taken(n: u32) -> bool {
    match std::fs::read_to_string(format!("/tmp/.X{n}-lock")) {
        Ok(text) => match text.trim().parse::<libc::pid_t>() {
            Ok(pid) if pid > 0 => process_alive(pid),
            _ => true,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::os::unix::net::UnixStream::connect(local_socket(&n.to_string())).is_ok()
        }
        // A lock this process may not read is someone's.
        Err(_) => true,
    }
}

/// Whether process `pid` exists (one of another user's included).
fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_is_taken_only_while_a_server_holds_it() {
        // A number no X server here uses.
        let n = 9000 + std::process::id() % 1000;
        let (socket, lock) = (local_socket(&n.to_string()), format!("/tmp/.X{n}-lock"));
        std::fs::create_dir_all("/tmp/.X11-unix").unwrap();
        let _ = std::fs::remove_file(&socket);
        assert!(!local_display_taken(n));
        // A server answering on the socket holds it; the socket it leaves
        // when killed does not.
        let server = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert!(local_display_taken(n));
        drop(server);
        assert!(std::path::Path::new(&socket).exists());
        assert!(!local_display_taken(n), "a stale socket");
        // A lock naming a live process holds it; one naming a process that
        // ended does not.
        std::fs::write(&lock, format!("{:>10}\n", std::process::id())).unwrap();
        assert!(local_display_taken(n));
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        ended.wait().unwrap();
        std::fs::write(&lock, format!("{:>10}\n", ended.id())).unwrap();
        assert!(!local_display_taken(n), "a stale lock");
        let _ = std::fs::remove_file(&lock);
        let _ = std::fs::remove_file(&socket);
    }
}
