#!/usr/bin/env bash
# Builds Nephele.app on macOS (needs Xcode's command-line tools for codesign,
# and rsvg-convert for the icon set: `brew install librsvg`). From the
# repository's root:
#   packaging/macos/build-app.sh            # target/package/Nephele.app
#   CODESIGN_ID="Developer ID Application: …" packaging/macos/build-app.sh
# The layout (Info.plist, the launcher, the icon set) is made by
# `cargo xtask package --macos-app`, the same code `cargo xtask test` checks
# on Linux; this script adds the client it builds and signs the bundle.
# Settings: ~/Library/Application Support/Nephele/config.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p nephele-client --bin nephele
cargo xtask package --macos-app --client target/release/nephele --check
app=target/package/Nephele.app
codesign --force --options runtime --sign "${CODESIGN_ID:--}" "$app"
echo "built $app"
