//! Who the packages say they come from: the one place every package format
//! (the .debs, the .rpm, the MSI, the macOS app) reads its maintainer, homepage and installer codes.

/// The maintainer field and the MSI's manufacturer.
pub const MAINTAINER_NAME: &str = "The Nephele developers";
/// The maintainers' address.
pub const MAINTAINER_EMAIL: &str = "nephele@example.invalid";
/// The project's home, shown by package managers and Windows' app list.
pub const HOMEPAGE: &str = "https://example.invalid/nephele";
/// The application's reverse-DNS id: the macOS bundle identifier (and the
/// AppStream id of `packaging/linux/`'s metainfo file, by its name).
pub const APP_ID: &str = "invalid.example.Nephele";
/// The MSI's upgrade code: the same for every version, so a newer
/// installer replaces an older one. Never change it.
pub const MSI_UPGRADE_CODE: &str = "6f1d2a8e-2c0b-4a5e-9b7a-3d1f0c6e5a42";

/// `Name <address>`, as Debian's Maintainer field wants it.
pub fn maintainer() -> String {
    format!("{MAINTAINER_NAME} <{MAINTAINER_EMAIL}>")
}
