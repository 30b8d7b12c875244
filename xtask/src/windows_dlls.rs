//! The Windows client imports only DLLs that Windows itself provides: a
//! clean Windows machine has no MinGW runtime (`libstdc++-6.dll`,
//! `libgcc_s_seh-1.dll`, `libwinpthread-1.dll`), so an exe importing one
//! would not start.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// DLLs every supported Windows (10 and later) ships, lower case. A new
/// import that Windows provides belongs here; anything else must be linked
/// in or installed with the package.
const SYSTEM: &[&str] = &[
    "advapi32.dll",
    "avrt.dll",
    "bcrypt.dll",
    "bcryptprimitives.dll",
    "combase.dll",
    "comctl32.dll",
    "crypt32.dll",
    "dwmapi.dll",
    "gdi32.dll",
    "hid.dll",
    "imm32.dll",
    "kernel32.dll",
    "msvcrt.dll",
    "ncrypt.dll",
    "ntdll.dll",
    "ole32.dll",
    "oleaut32.dll",
    "propsys.dll",
    "rpcrt4.dll",
    "secur32.dll",
    "setupapi.dll",
    "shell32.dll",
    "shlwapi.dll",
    "user32.dll",
    "userenv.dll",
    "uxtheme.dll",
    "winmm.dll",
    "ws2_32.dll",
    "xinput1_4.dll",
];

/// Whether Windows itself provides `dll` (API sets included).
fn provided(dll: &str) -> bool {
    let dll = dll.to_ascii_lowercase();
    dll.starts_with("api-ms-win-") || dll.starts_with("ext-ms-win-") || SYSTEM.contains(&&*dll)
}

/// The DLL names in `objdump -p` output.
fn imports(dump: &str) -> Vec<&str> {
    dump.lines()
        .filter_map(|l| l.trim().strip_prefix("DLL Name:"))
        .map(str::trim)
        .collect()
}

/// Fails, naming them, when `exe` imports DLLs Windows does not provide.
pub fn check(exe: &Path) -> Result<()> {
    let out = Command::new("x86_64-w64-mingw32-objdump")
        .arg("-p")
        .arg(exe)
        .output()
        .context("running x86_64-w64-mingw32-objdump (MinGW's binutils, installed by setup)")?;
    if !out.status.success() {
        bail!(
            "objdump -p {}: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dump = String::from_utf8_lossy(&out.stdout);
    let all = imports(&dump);
    if all.is_empty() {
        bail!("objdump -p {} listed no imported DLL", exe.display());
    }
    let mut foreign: Vec<&str> = all.into_iter().filter(|d| !provided(d)).collect();
    foreign.sort_unstable();
    foreign.dedup();
    if !foreign.is_empty() {
        bail!(
            "{} imports DLLs a Windows machine does not have: {}; link them statically (.cargo/config.toml) or add a DLL that ships with Windows to xtask/src/windows_dlls.rs",
            exe.display(),
            foreign.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mingw_runtimes_are_foreign_and_system_dlls_and_api_sets_are_not() {
        let dump = "\tDLL Name: KERNEL32.dll\n\tvma:  Hint/Ord Member-Name\n\tDLL Name: libstdc++-6.dll\n\tDLL Name: api-ms-win-core-synch-l1-2-0.dll\n";
        let all = imports(dump);
        assert_eq!(
            all,
            [
                "KERNEL32.dll",
                "libstdc++-6.dll",
                "api-ms-win-core-synch-l1-2-0.dll"
            ]
        );
        let foreign: Vec<_> = all.into_iter().filter(|d| !provided(d)).collect();
        assert_eq!(foreign, ["libstdc++-6.dll"]);
        for d in ["libgcc_s_seh-1.dll", "libwinpthread-1.dll", "opus.dll"] {
            assert!(!provided(d), "{d}");
        }
    }
}
