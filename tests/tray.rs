//! The real tray: `callsync run` under Xvfb with a real StatusNotifier host (xfce4-panel) and a
//! real notification server (dunst), driven by `shared/tools/run_headless.sh`, which right-clicks
//! the icon, screenshots the menu and the Errors submenu, and checks the texts on D-Bus and by
//! OCR. Between two rounds the test changes the agent's state through its control socket, so
//! the second round proves the menu follows the core. A ringing call for a known Contact must
//! pop a notification with the caller's name. Screenshots stay in `target/tray-test/`.
//!
//! Needs: xvfb xfce4-panel dunst xdotool imagemagick x11-utils dbus-daemon libglib2.0-bin bc
//! tesseract-ocr. Missing tools skip the test, unless CALLSYNC_REQUIRE_TRAY=1 (CI) makes that a
//! failure.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

use callsync::sim::{Sim, SimOptions};
use serde_json::{json, Value};

mod common;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/tools/run_headless.sh"
);

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn missing_tools() -> Vec<&'static str> {
    let mut m: Vec<&str> = [
        "Xvfb",
        "xfce4-panel",
        "dunst",
        "dbus-daemon",
        "gdbus",
        "xdotool",
        "import",
        "xwininfo",
        "bc",
        "tesseract",
    ]
    .into_iter()
    .filter(|t| !have(t))
    .collect();
    if !Path::new(SCRIPT).exists() {
        m.push("run_headless.sh");
    }
    m
}

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

/// Clicks the menu item labelled `label` through dbusmenu's `Event`, on the agent's session bus
/// (read from its environment), using the layout dump `dump` of run_headless.sh.
fn click(dump: &Path, label: &str, status: &Value) {
    let text = std::fs::read_to_string(dump).unwrap();
    let item = text
        .lines()
        .find_map(|l| l.strip_prefix("== item "))
        .and_then(|l| l.split_whitespace().next())
        .expect("no item in the dump")
        .to_owned();
    let needle = format!("{{'label': <'{label}'>");
    let at = text
        .find(&needle)
        .unwrap_or_else(|| panic!("no {label} in the menu"));
    let id: String = text[..at]
        .trim_end_matches(", ")
        .rsplit('(')
        .next()
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let pid = status["agent"]["pid"].as_u64().expect("agent pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let bus = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("DBUS_SESSION_BUS_ADDRESS="))
        .expect("the agent's session bus")
        .to_owned();
    let out = Command::new("gdbus")
        .args(["call", "--address", &bus, "--dest", &item])
        .args([
            "--object-path",
            "/MenuBar",
            "--method",
            "com.canonical.dbusmenu.Event",
        ])
        .args([&id, "clicked", "<int32 0>", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "click {label} (id {id}): {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tray_menu_and_screen_pop_on_a_real_desktop() {
    let missing = missing_tools();
    if !missing.is_empty() {
        assert!(
            std::env::var("CALLSYNC_REQUIRE_TRAY").is_err(),
            "CALLSYNC_REQUIRE_TRAY is set but these are missing: {missing:?}"
        );
        eprintln!("skipped: missing {missing:?}");
        return;
    }
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
    // Two lines the agent cannot use: they are the "Errors (2)".
    common::append(&log, "this is not JSON\n{\"event\":\"ringing\"}\n");

    let out: PathBuf = [env!("CARGO_MANIFEST_DIR"), "target", "tray-test"]
        .iter()
        .collect();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let script = {
        let mut c = Command::new("bash");
        c.arg(SCRIPT)
            .args(["-o", &out.display().to_string()])
            .args(["--at", "10,24", "--hover-text", "Errors", "--notify"])
            .args(["--expect", "Pending Tasks: 0"])
            .args(["--expect", "Errors (2)"])
            .args(["--expect", "Quit"])
            .args(["--timeout", "30", "--"])
            .arg(env!("CARGO_BIN_EXE_callsync"))
            .arg("run");
        for (k, _) in std::env::vars() {
            if k.starts_with("CALLSYNC_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env("CALLSYNC_DATA_DIR", d.join("data"))
            .env("CALLSYNC_CONFIG", d.join("user.toml"))
            .env("CALLSYNC_MANAGED_CONFIG", d.join("managed.toml"));
        std::thread::spawn(move || c.output().unwrap())
    };

    // While the script waits for round 1: pause sending and take two calls (one from the
    // Contact above, one unknown), which stay queued.
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
    // Round 1 done (its OCR file is written last): click "Resume sending" in the menu, over
    // the desktop's own bus as the tray host would, so round 2 shows an empty queue.
    common::wait_until(40, "round 1", || out.join("r1-ocr.txt").exists()).await;
    click(&out.join("r1-dbus.txt"), "Resume sending", &status(&d));
    common::wait_until(20, "sending resumed by the click", || {
        status(&d)["agent"]["paused"].is_null()
    })
    .await;

    let run = script.join().unwrap();
    let log_text = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    assert!(
        run.status.success(),
        "run_headless.sh failed ({:?}):\n{}\napp.log:\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr),
        log_text("app.log")
    );

    // Round 1, exactly as on D-Bus (dbusmenu layout and SNI properties).
    let r1 = log_text("r1-dbus.txt");
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
        assert!(r1.contains(want), "round 1 lacks {want}:\n{r1}");
    }
    assert!(
        r1.matches(" calllog: ").count() == 2,
        "the Errors submenu lists both bad lines:\n{r1}"
    );
    // On screen (OCR of the open menu): the status line and the queue.
    let ocr1 = log_text("r1-ocr.txt");
    assert!(
        ocr1.contains("Sending paused") && ocr1.contains("Pending Tasks: 2"),
        "{ocr1}"
    );
    // Round 2, after "resume": the same menu, updated by the core.
    let r2 = log_text("r2-dbus.txt");
    assert!(
        r2.contains("'Connected as agent@sim.example.com — synced just now'")
            || r2.contains("'Connected as agent@sim.example.com — synced 1 min ago'"),
        "{r2}"
    );
    assert!(r2.contains("'Pause sending'"), "{r2}");
    assert!(out.join("r2-menu.png").exists() && out.join("r2-submenu.png").exists());

    // Screen pop: shown through dunst (the agent logs it), with the caller's name on screen.
    let logs = std::fs::read_dir(d.join("data/logs"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect::<String>();
    for call in ["tray-1", "tray-2"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("screen pop shown") && l.contains(call)),
            "no screen pop for {call}:\n{logs}"
        );
    }
    assert!(out.join("final.png").exists());
    // Round 1's root screenshot, while the pops are up (they close after 30 s); dunst draws
    // white on blue at the bottom right (the script's dunstrc).
    let text = ocr(&out.join("r1-tray.png"), "420x200+604+568");
    assert!(
        text.contains("Hanako Traytest") && text.contains("Unknown caller"),
        "the notifications on screen read:\n{text}"
    );
    eprintln!("screenshots in {} (Contact {caller})", out.display());
    // Both calls went to Salesforce once sending resumed.
    let tasks = sim.org().rows("Task");
    for call in ["tray-1", "tray-2"] {
        assert_eq!(tasks.iter().filter(|t| t["CallObject"] == call).count(), 1);
    }
}
