#!/usr/bin/env bash
# Builds Nephele.app on macOS (needs Xcode's command-line tools for iconutil
# and codesign; cannot run on Linux). From the repository's root:
#   packaging/macos/build-app.sh            # target/Nephele.app
#   CODESIGN_ID="Developer ID Application: …" packaging/macos/build-app.sh
# Settings: ~/Library/Application Support/Nephele/config.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo build --release -p nephele-client --bin nephele
app=target/Nephele.app
rm -rf "$app"
mkdir -p "$app/Contents/MacOS" "$app/Contents/Resources"
sed "s/@VERSION@/$version/g" packaging/macos/Info.plist > "$app/Contents/Info.plist"
cp target/release/nephele "$app/Contents/MacOS/nephele"
# Finder starts apps without arguments: the launcher opens the configured desktop.
cat > "$app/Contents/MacOS/nephele-launcher" <<'SH'
#!/bin/sh
exec "$(dirname "$0")/nephele" connect "$@"
SH
chmod +x "$app/Contents/MacOS/nephele-launcher"
iconset=$(mktemp -d)/nephele.iconset
mkdir -p "$iconset"
for s in 16 32 128 256 512; do
  sips -s format png -z "$s" "$s" assets/icons/nephele.svg --out "$iconset/icon_${s}x${s}.png" >/dev/null
  sips -s format png -z $((s * 2)) $((s * 2)) assets/icons/nephele.svg --out "$iconset/icon_${s}x${s}@2x.png" >/dev/null
done
iconutil -c icns "$iconset" -o "$app/Contents/Resources/nephele.icns"
codesign --force --options runtime --sign "${CODESIGN_ID:--}" "$app"
echo "built $app"
