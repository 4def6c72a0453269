//! The real tray: `callsync run` on a real headless desktop (`tests/common/desktop.rs`: Xvfb,
//! xfce4-panel as the StatusNotifier host, dunst as the notification server), looked at as a
//! user would: the icon right-clicked, the menu and the Errors submenu screenshotted and read by
//! OCR, and the same texts checked on D-Bus. Between the two looks the test pauses and resumes
//! sending (the second through the menu's own "Resume sending" item), so the second look proves
//! the menu follows the core. A ringing call for a known Contact must pop a notification with
//! the caller's name. Screenshots stay in `target/tray-test/`.
//!
//! Needs the tools in `desktop::SESSION_TOOLS` and `desktop::LOOK_TOOLS`. Missing tools skip the test, unless
//! CALLSYNC_REQUIRE_TRAY=1 (CI) makes that a failure.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

use callsync_sim::{Sim, SimOptions};
use serde_json::{json, Value};

use crate::common;
use crate::desktop::{self, Desktop};

fn status(dir: &Path) -> Value {
    let out = common::command(dir)
        .args(["status", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn ocr(png: &Path, crop: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "convert '{0}' -crop {crop} +repage -colorspace Gray -negate -resize 300% -threshold 45% '{0}.ocr.png' && tesseract '{0}.ocr.png' - --psm 6 2>/dev/null",
            png.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tray_menu_and_screen_pop_on_a_real_desktop() {
    let missing = desktop::missing(&[desktop::LOOK_TOOLS]);
    let started = if missing.is_empty() {
        Desktop::start(60)
    } else {
        Err(format!("missing {}", missing.join(", ")))
    };
    let desktop = match started {
        Ok(d) => d,
        Err(why) => {
            assert!(
                std::env::var("CALLSYNC_REQUIRE_TRAY").is_err(),
                "CALLSYNC_REQUIRE_TRAY is set but the desktop cannot start: {why}"
            );
            eprintln!("skipped: {why}");
            return;
        }
    };
    let sim = Sim::start(
        SimOptions {
            records: 100,
            seed: 5,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let caller = {
        let mut org = sim.org();
        let mut f = serde_json::Map::new();
        f.insert("Name".into(), json!("Hanako Traytest"));
        f.insert("Phone".into(), json!("03-9876-5432"));
        org.admin_upsert("Contact", f)
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let log = d.join("calls.jsonl");
    common::agent_setup(&sim, &d, &log, 3600, "[ui]\nlanguage = \"en\"\n").await;
    // Unknown numbers refresh at most every second here (30 s by default): the fresh caller
    // below is asked for at once even though the unknown caller above was just before it; and
    // the pop waits up to 6 s for the answer (2 s by default), which the org slows to 3 s so
    // that "Looking up…" can be screenshot whatever this machine's pace.
    let user = d.join("user.toml");
    let cfg = std::fs::read_to_string(&user).unwrap();
    std::fs::write(
        &user,
        cfg.replace(
            "[sync]\n",
            "[sync]\nrefresh_on_miss_every_secs = 1\nrefresh_on_miss_wait_ms = 6000\n",
        ),
    )
    .unwrap();
    // Two lines the agent cannot use: they are the "Errors (2)".
    common::append(&log, "this is not JSON\n{\"event\":\"ringing\"}\n");

    let out: PathBuf = [env!("CARGO_MANIFEST_DIR"), "target", "tray-test"]
        .iter()
        .collect();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let mut agent = {
        let mut c = Command::new(env!("CARGO_BIN_EXE_callsync"));
        c.arg("run");
        for (k, _) in std::env::vars() {
            if k.starts_with("CALLSYNC_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env("CALLSYNC_DATA_DIR", d.join("data"))
            .env("CALLSYNC_CONFIG", d.join("user.toml"))
            .env("CALLSYNC_MANAGED_CONFIG", d.join("managed.toml"));
        desktop.spawn(&mut c, &out.join("app.log")).unwrap()
    };
    let app_log = || std::fs::read_to_string(out.join("app.log")).unwrap_or_default();
    assert!(
        desktop.wait_item(30),
        "no tray icon registered within 30 s:\n{}",
        app_log()
    );

    // Pause sending and take two calls (one from the Contact above, one unknown), which stay
    // queued; both pop.
    let sock = d.join("data/agent.sock");
    common::wait_until(30, "the control socket", || sock.exists()).await;
    common::wait_until(30, "the first sync", || {
        status(&d)["agent"]["contacts"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let ok = |args: &[&str]| {
        let o = common::command(&d).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
    };
    ok(&["agent", "pause"]);
    common::append(&log, &common::call_lines("tray-1", "03-9876-5432"));
    common::append(&log, &common::call_lines("tray-2", "03-5555-0000"));
    common::wait_until(20, "two queued Tasks", || {
        status(&d)["agent"]["pending"] == 2
    })
    .await;
    let logs = || {
        std::fs::read_dir(d.join("data/logs"))
            .map(|dir| {
                dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    let popped = |call: &str| {
        logs()
            .lines()
            .any(|l| l.contains("screen pop shown") && l.contains(call))
    };
    common::wait_until(20, "both screen pops", || {
        popped("tray-1") && popped("tray-2")
    })
    .await;

    // Look 1: the paused state, the queue and the errors.
    let r1 = desktop
        .look(&out, "r1", Some("Errors"))
        .unwrap_or_else(|e| panic!("look 1: {e}\napp.log:\n{}", app_log()));
    for want in [
        "'Sending paused — 2 queued'",
        "'Pending Tasks: 2'",
        "'Errors (2)'",
        "'Sync now'",
        "'Resume sending'",
        "'Sign out'",
        "'Open log folder'",
        "'Open settings file'",
        "'callsync !'", // attention: the tooltip title
    ] {
        assert!(r1.dbus.contains(want), "look 1 lacks {want}:\n{}", r1.dbus);
    }
    assert!(
        r1.dbus.matches(" calllog: ").count() == 2,
        "the Errors submenu lists both bad lines:\n{}",
        r1.dbus
    );
    // On screen (OCR of the open menu): the status line and the queue.
    assert!(
        r1.ocr.contains("Sending paused") && r1.ocr.contains("Pending Tasks: 2"),
        "{}",
        r1.ocr
    );
    // The screen pops, while they are up: dunst draws them bottom right.
    let text = ocr(&out.join("r1-tray.png"), "420x200+604+568");
    assert!(
        text.contains("Hanako Traytest") && text.contains("Unknown caller"),
        "the notifications on screen read:\n{text}"
    );

    // "Resume sending", clicked in the menu as the tray host does.
    desktop.click("Resume sending").unwrap();
    common::wait_until(20, "sending resumed by the click", || {
        status(&d)["agent"]["paused"].is_null()
    })
    .await;
    common::wait_until(20, "an empty queue", || status(&d)["agent"]["pending"] == 0).await;

    // Look 2, after "resume": the same menu, updated by the core, on D-Bus and on screen.
    let r2 = desktop
        .look(&out, "r2", Some("Errors"))
        .unwrap_or_else(|e| panic!("look 2: {e}\napp.log:\n{}", app_log()));
    assert!(
        r2.dbus
            .contains("'Connected as agent@sim.example.com — synced just now'")
            || r2
                .dbus
                .contains("'Connected as agent@sim.example.com — synced 1 min ago'"),
        "{}",
        r2.dbus
    );
    assert!(r2.dbus.contains("'Pause sending'"), "{}", r2.dbus);
    for want in ["Pending Tasks: 0", "Errors (2)", "Quit"] {
        let (on_bus, on_screen) = r2.shows(want);
        assert!(
            on_bus && on_screen,
            "look 2: {want:?} on D-Bus {on_bus}, on screen {on_screen}\nOCR:\n{}",
            r2.ocr
        );
    }
    assert!(out.join("r2-menu.png").exists() && out.join("r2-submenu.png").exists());
    desktop.screenshot(&out.join("final.png")).unwrap();

    for call in ["tray-1", "tray-2"] {
        assert!(popped(call), "no screen pop for {call}:\n{}", logs());
    }

    // Who is calling: a Lead with the Contact's number, and a Contact created after the last
    // sync. The new one rings first: "Looking up…" is replaced by its name (fresh on a miss).
    let (lead, fresh) = {
        let mut org = sim.org();
        let mut f = serde_json::Map::new();
        f.insert("Name".into(), json!("Ren Leadtest"));
        f.insert("LastName".into(), json!("Leadtest"));
        f.insert("Company".into(), json!("Kaisha"));
        f.insert("Phone".into(), json!("03-9876-5432"));
        let lead = org.admin_upsert("Lead", f);
        let mut f = serde_json::Map::new();
        f.insert("Name".into(), json!("Fresh Newcomer"));
        f.insert("Phone".into(), json!("03-2222-7777"));
        (lead, org.admin_upsert("Contact", f))
    };
    // Salesforce answers cycles slowly (3 s) until "Looking up…" was seen: it stays long enough
    // to be screenshot, then is replaced in place by the name. Every cycle, not only the next:
    // a cycle that some other event started in the meantime would take a one-time fault, and
    // the refresh after it would answer before any screenshot.
    sim.org().faults.push(callsync_sim::org::Fault {
        kind: callsync_sim::org::FaultKind::Latency,
        method: None,
        path_contains: Some("composite".into()),
        skip: 0,
        times: None,
        latency_ms: 3000,
        probability: None,
    });
    let pops = "420x200+604+568";
    common::append(&log, &common::call_lines("tray-3", "03-2222-7777"));
    let looking = out.join("fresh-1-looking-up.png");
    common::wait_until(10, "\"Looking up…\" on screen", || {
        desktop.screenshot(&looking).is_ok() && ocr(&looking, pops).contains("Looking up")
    })
    .await;
    sim.org().faults.clear();
    let found = out.join("fresh-2-answered.png");
    common::wait_until(10, "the fresh caller's name on screen", || {
        desktop.screenshot(&found).is_ok() && {
            let t = ocr(&found, pops);
            t.contains("Fresh Newcomer") && !t.contains("Looking up")
        }
    })
    .await;
    common::wait_until(20, "the fresh caller's Task", || {
        sim.org()
            .rows("Task")
            .iter()
            .any(|t| t["CallObject"] == "tray-3" && t["WhoId"] == json!(fresh))
    })
    .await;
    // The Lead reaches the cache with the next cycle ("Sync now").
    ok(&["agent", "sync"]);
    common::wait_until(20, "the lead in the cache", || {
        let o = common::command(&d)
            .args(["lookup", "03-9876-5432"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).contains("Ren Leadtest")
    })
    .await;
    common::append(&log, &common::ringing("tray-4", "03-9876-5432"));
    common::wait_until(20, "the current call in the tray", || {
        status(&d)["agent"]["current_call"]["call_id"] == "tray-4"
    })
    .await;
    let r3 = desktop
        .look(&out, "r3", Some("Current"))
        .unwrap_or_else(|e| panic!("look 3: {e}\napp.log:\n{}", app_log()));
    let best = "'Hanako Traytest (Contact) — best match'";
    for want in [
        "'Current call: 03-9876-5432'",
        best,
        "'Kaisha / Ren Leadtest (Lead)'",
    ] {
        assert!(r3.dbus.contains(want), "look 3 lacks {want}:\n{}", r3.dbus);
    }
    assert!(r3.ocr.contains("Current call"), "{}", r3.ocr);
    desktop.click("Kaisha / Ren Leadtest (Lead)").unwrap();
    common::wait_until(20, "the lead picked from the tray", || {
        status(&d)["agent"]["current_call"]["chosen"] == json!(lead)
    })
    .await;
    let r4 = desktop
        .look(&out, "r4", Some("Current"))
        .unwrap_or_else(|e| panic!("look 4: {e}\napp.log:\n{}", app_log()));
    // dbusmenu's toggle-state 1: the chosen record is ticked.
    let ticked = r4
        .dbus
        .split("{'label': <'Kaisha / Ren Leadtest (Lead)'>")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap_or("");
    assert!(ticked.contains("'toggle-state': <1>"), "{}", r4.dbus);
    // Answered and ended (its ringing was above).
    let rest: String = common::call_lines("tray-4", "03-9876-5432")
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    common::append(&log, &rest);
    common::wait_until(20, "the picked call's Task", || {
        sim.org()
            .rows("Task")
            .iter()
            .any(|t| t["CallObject"] == "tray-4" && t["WhoId"] == json!(lead))
    })
    .await;
    eprintln!("screenshots in {} (Contact {caller})", out.display());
    // Both calls went to Salesforce once sending resumed.
    let tasks = sim.org().rows("Task");
    for call in ["tray-1", "tray-2", "tray-3", "tray-4"] {
        assert_eq!(tasks.iter().filter(|t| t["CallObject"] == call).count(), 1);
    }
    ok(&["agent", "quit"]);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < end && matches!(agent.try_wait(), Ok(None)) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    desktop::stop_group(&mut agent);
}
