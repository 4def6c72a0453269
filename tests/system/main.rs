//! System tests: the Debian package built, installed and run; the tray on a real headless
//! desktop. They need system tools (`.ci/run` installs them) and skip, saying what is missing,
//! where those are absent, unless `CALLSYNC_REQUIRE_DEB` / `CALLSYNC_REQUIRE_TRAY` is set.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/desktop.rs"]
mod desktop;

mod deb;
mod tray;
