//! Files only their owner may read, and files replaced whole.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` (created or truncated) so that only this
/// user may read it: mode 0600 where the platform has Unix modes; on
/// Windows a file in the user's own directories is already theirs.
/// A file that already existed is made private too before it is written.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path)?;
    restrict(&file)?;
    file.write_all(bytes)
}

/// Replaces the file at `path` with `bytes` (its folder made if missing)
/// through a temporary file beside it, so a crash never leaves half of it.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Makes the existing file at `path` readable by its owner only; says
/// whether others could read it before.
pub fn make_private(path: &Path) -> std::io::Result<bool> {
    restrict(&std::fs::File::open(path)?)
}

#[cfg(unix)]
fn restrict(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    Ok(true)
}

#[cfg(not(unix))]
fn restrict(_: &std::fs::File) -> std::io::Result<bool> {
    // Files in the user's own profile are already theirs alone.
    Ok(false)
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn a_private_file_is_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("nephele-private-{}", std::process::id()));
        super::write_private(&p, b"secret").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        // A file others could read is closed to them before it is written.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::write_private(&p, b"again").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(super::make_private(&p).unwrap());
        assert!(!super::make_private(&p).unwrap());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_file(p);
    }
}
