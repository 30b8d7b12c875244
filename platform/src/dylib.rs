//! Shared libraries opened at run time (FFmpeg's): what each platform
//! names them, and the C library's error numbers they report in.

/// The file names the shared library `name` of major version `major`
/// goes by here, in the order to try: `libNAME.so.MAJOR` on Linux and the
/// BSDs, `NAME-MAJOR.dll` on Windows, `libNAME.MAJOR.dylib` on macOS (on
/// the loader's path, then in Homebrew's prefix on Apple silicon, which
/// is not on it).
pub fn file_names(name: &str, major: u32) -> Vec<String> {
    if cfg!(windows) {
        vec![format!("{name}-{major}.dll")]
    } else if cfg!(target_os = "macos") {
        ["", "/opt/homebrew/lib/"]
            .iter()
            .map(|dir| format!("{dir}lib{name}.{major}.dylib"))
            .collect()
    } else {
        vec![format!("lib{name}.so.{major}")]
    }
}

/// `EAGAIN` of the C library libraries built for this platform use.
pub const EAGAIN: i32 = if cfg!(target_os = "macos") { 35 } else { 11 };

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_the_platform() {
        let names = super::file_names("avcodec", 61);
        if cfg!(target_os = "linux") {
            assert_eq!(names, ["libavcodec.so.61"]);
            assert_eq!(super::EAGAIN, 11);
        }
        assert!(!names.is_empty() && names.iter().all(|n| n.contains("avcodec")));
    }
}
