//! The agent as one process with no display and no D-Bus: it falls back to headless, answers on
//! its private control socket, keeps one instance per user, pauses and resumes sending on
//! request, and stops gracefully on SIGTERM (on Windows: WM_CLOSE), after which the commands
//! read the stores again. On Windows the control channel is a named pipe.

#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use callsync_sim::{Sim, SimOptions};
use serde_json::Value;

use crate::common;

pub(crate) fn status(dir: &Path) -> Value {
    let out = common::command(dir)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn tasks(sim: &Sim, call: &str) -> usize {
    sim.org()
        .rows("Task")
        .iter()
        .filter(|t| t["CallObject"] == call)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_without_display_or_dbus_one_instance_socket_pause_resume_and_graceful_stop() {
    let sim = Sim::start(
        SimOptions {
            records: 100,
            seed: 3,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("calls.jsonl");
    common::agent_setup(&sim, d, &log, 3600, "[ui]\nlanguage = \"en\"\n").await;
    let runtime_dir = d.join("run");
    std::fs::create_dir(&runtime_dir).unwrap();

    // No display, no session bus: `run` (without --headless) must fall back by itself.
    let child = common::command(d)
        .arg("run")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until(20, "the control channel", || status(d)["running"] == true).await;
    #[cfg(unix)]
    let sock = d.join("data/agent.sock");
    #[cfg(unix)]
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600,
        "the socket is private to the user"
    );

    // Status comes from the running agent (it holds the stores).
    common::wait_until(20, "the first sync", || {
        status(d)["agent"]["contacts"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let st = status(d);
    assert_eq!(st["running"], true);
    assert_eq!(st["agent"]["user"], "agent@sim.example.com");
    assert_eq!(st["agent"]["pid"], child.id());
    let text = common::command(d).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("agent: running") && text.contains("Connected as agent@sim.example.com"),
        "{text}"
    );

    // A call becomes a Task.
    common::append(&log, &common::call_lines("agent-1", "03-1111-0001"));
    common::wait_until(20, "the first Task", || tasks(&sim, "agent-1") == 1).await;

    // Sync cycles keep one session: `agent sync` (the tray's "Sync now") three times, and not
    // one new token (a new client per cycle re-read every root certificate and refreshed).
    let tokens = sim.org().token_requests;
    for i in 0..3 {
        let before = status(d)["agent"]["last_sync_ms"].as_i64().unwrap_or(0);
        // The clock moves in milliseconds: let the next cycle's time differ.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let out = common::command(d).args(["agent", "sync"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        common::wait_until(20, &format!("sync cycle {i}"), || {
            status(d)["agent"]["last_sync_ms"].as_i64().unwrap_or(0) > before
        })
        .await;
    }
    assert_eq!(
        sim.org().token_requests,
        tokens,
        "an idle cycle asked for a new session"
    );

    // A second start shows the running one and leaves it alone.
    let second = common::command(d)
        .arg("run")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .output()
        .unwrap();
    assert!(second.status.success(), "{second:?}");
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("already running"),
        "{second:?}"
    );
    assert_eq!(status(d)["agent"]["pid"], child.id());

    // Pause: calls queue up and are not sent; resume: they go.
    let ok = |args: &[&str]| {
        let out = common::command(d).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    ok(&["agent", "pause"]);
    common::append(&log, &common::call_lines("agent-2", "03-1111-0002"));
    common::wait_until(20, "the queued Task", || {
        let a = &status(d)["agent"];
        a["pending"] == 1 && a["paused"].is_string()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tasks(&sim, "agent-2"), 0, "paused sending sent a Task");
    ok(&["agent", "resume"]);
    common::wait_until(20, "the resumed Task", || tasks(&sim, "agent-2") == 1).await;
    common::wait_until(10, "an empty queue", || status(d)["agent"]["pending"] == 0).await;

    // A settings change reaches the running agent: it restarts itself in place (same pid) and
    // the next call's Task has the new status.
    let started = status(d)["agent"]["started_ms"].as_i64().unwrap();
    let out = common::command(d)
        .args(["settings", "set", "activity.status", "In Progress"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restarts to apply"),
        "{out:?}"
    );
    common::wait_until(20, "the restarted agent", || {
        // While it restarts, the stores are briefly busy and the socket absent.
        let out = common::command(d)
            .args(["status", "--json"])
            .output()
            .unwrap();
        let st: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        st["running"] == true && st["agent"]["started_ms"].as_i64().unwrap_or(0) > started
    })
    .await;
    // Unix restarts in place (exec: a supervisor keeps following the pid); Windows cannot, and
    // starts a new process that inherits the console.
    let pid = status(d)["agent"]["pid"].as_u64().unwrap() as u32;
    if cfg!(unix) {
        assert_eq!(pid, child.id());
    }
    common::append(&log, &common::call_lines("agent-3", "03-1111-0003"));
    common::wait_until(20, "the Task after the restart", || {
        tasks(&sim, "agent-3") == 1
    })
    .await;
    let t = sim
        .org()
        .rows("Task")
        .into_iter()
        .find(|t| t["CallObject"] == "agent-3")
        .unwrap();
    assert_eq!(t["Status"], "In Progress");

    // SIGTERM or WM_CLOSE (logout, service stop, an installer): a clean exit that removes the
    // socket. The output is the pipe both processes wrote to; it closes when the last exits.
    common::terminate_pid(pid);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr.contains("running headless"),
        "no fallback warning: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopped"),
        "{out:?}"
    );
    #[cfg(unix)]
    assert!(!sock.exists(), "socket left behind");

    // Not running: the commands read the stores themselves.
    let st = status(d);
    assert_eq!(st["running"], false);
    assert_eq!(st["pending_tasks"], 0);
    assert_eq!(tasks(&sim, "agent-1"), 1);
    assert_eq!(tasks(&sim, "agent-2"), 1);
    assert_eq!(tasks(&sim, "agent-3"), 1);
    let out = common::command(d).args(["agent", "quit"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
}

/// The login autostart entry and the systemd user unit start commands that exist.
#[test]
fn autostart_entry_and_user_unit_start_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    for (file, key, want) in [
        ("packaging/linux/callsync-autostart.desktop", "Exec=", "run"),
        (
            "packaging/linux/callsync.service",
            "ExecStart=",
            "run --headless",
        ),
    ] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{file}: no {key}"));
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("/usr/bin/callsync"), "{file}");
        let args: Vec<&str> = words.collect();
        assert_eq!(args.join(" "), want, "{file}");
        let out = common::command(dir.path())
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {out:?}");
    }
}
