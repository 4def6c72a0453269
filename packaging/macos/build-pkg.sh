#!/bin/sh
# Builds callsync.pkg on macOS: an app bundle in /Applications, the LaunchAgent in
# /Library/LaunchAgents, the managed file in /Library/Application Support/callsync.
#   packaging/macos/build-pkg.sh [VERSION]        (needs Xcode command-line tools)
# Sign and notarise for fleets (Keychain prompts follow the code signature):
#   productsign --sign "Developer ID Installer: …" callsync.pkg callsync-signed.pkg
#   xcrun notarytool submit callsync-signed.pkg --keychain-profile … --wait
set -eu
cd "$(dirname "$0")/../.."
VERSION=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
# Without the simulated org and the demo (they do not ship).
cargo build --release --locked -p callsync --no-default-features
ROOT=target/pkgroot
rm -rf "$ROOT" && mkdir -p "$ROOT/Applications/callsync.app/Contents/MacOS" \
    "$ROOT/Applications/callsync.app/Contents/Resources" "$ROOT/Library/LaunchAgents" \
    "$ROOT/Library/Application Support/callsync"
cp target/release/callsync "$ROOT/Applications/callsync.app/Contents/MacOS/"
cp assets/icons/ok-256.png "$ROOT/Applications/callsync.app/Contents/Resources/callsync.png"
cat >"$ROOT/Applications/callsync.app/Contents/Info.plist" <<PLIST
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>CFBundleIdentifier</key><string>com.callsync.agent</string>
  <key>CFBundleName</key><string>callsync</string>
  <key>CFBundleExecutable</key><string>callsync</string>
  <key>CFBundleShortVersionString</key><string>$VERSION</string>
  <key>CFBundleVersion</key><string>$VERSION</string>
  <key>LSUIElement</key><true/>
</dict></plist>
PLIST
cp packaging/macos/com.callsync.agent.plist "$ROOT/Library/LaunchAgents/"
cp packaging/linux/config.toml "$ROOT/Library/Application Support/callsync/config.toml.example"
pkgbuild --root "$ROOT" --identifier com.callsync.agent --version "$VERSION" \
    --scripts packaging/macos/scripts --install-location / target/callsync-component.pkg
productbuild --package target/callsync-component.pkg "target/callsync-$VERSION.pkg"
echo "target/callsync-$VERSION.pkg"
