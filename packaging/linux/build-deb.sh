#!/bin/sh
# Builds the Debian package: the release binary (without the simulated org and the demo:
# `--no-default-features`), its manual pages, then `cargo deb`.
#   packaging/linux/build-deb.sh [cargo-deb options, e.g. --output DIR --deb-revision 2]
# Needs cargo-deb (`cargo install cargo-deb --locked`) and dpkg. The package lands in
# ${CARGO_TARGET_DIR:-target}/debian/ unless --output says otherwise.
set -eu
cd "$(dirname "$0")/../.."
cargo build --release --locked -p callsync --no-default-features
"${CARGO_TARGET_DIR:-target}/release/callsync" man target/man
cargo deb --no-build --locked "$@"
