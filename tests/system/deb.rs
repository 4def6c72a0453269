//! The Debian package for real (`packaging/linux/test-deb.sh`): built with cargo-deb, installed
//! on this machine, checked (files, conffile, managed values shown locked, the agent started as
//! the systemd unit and the autostart entry start it), upgraded to a newer build while a Task is
//! queued and records are cached (both must survive), then removed and purged (user data stays).
//!
//! It needs root, dpkg and cargo-deb, and installs system-wide: CI has all three and sets
//! `CALLSYNC_REQUIRE_DEB=1`; elsewhere it says why it does not run.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Command;

fn works(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn deb_installs_upgrades_with_the_queue_and_cache_kept_and_purges() {
    let required = std::env::var("CALLSYNC_REQUIRE_DEB").is_ok_and(|v| v == "1");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = works("cargo", &["deb", "--version"]) && works("dpkg", &["--version"]);
    if !(root && tools) {
        let why = format!("needs root ({root}), cargo-deb and dpkg ({tools})");
        assert!(
            !required,
            "CALLSYNC_REQUIRE_DEB=1 but the package test {why}"
        );
        eprintln!("skipped: the package test {why}");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Its own target folder: the outer `cargo test` holds the usual one.
    let target = repo.join("target/deb-build");
    let build = |out: &str, extra: &[&str]| {
        let status = Command::new(repo.join("packaging/linux/build-deb.sh"))
            .env("CARGO_TARGET_DIR", &target)
            .arg("--output")
            .arg(target.join(out))
            .args(extra)
            .status()
            .unwrap();
        assert!(status.success(), "building {out}");
        target.join(out)
    };
    let first = build("callsync_first.deb", &[]);
    let newer = build("callsync_newer.deb", &["--deb-revision", "2"]);
    let out = Command::new(repo.join("packaging/linux/test-deb.sh"))
        // The package has no simulated org: the test's comes from this build.
        .env("CALLSYNC_SIM_BIN", env!("CARGO_BIN_EXE_callsync"))
        .arg(&first)
        .arg(&newer)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "package test failed:\n{text}");
    assert!(text.contains("deb: all checks passed"), "{text}");
}
