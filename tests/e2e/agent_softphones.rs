//! The agent end to end on the histories of softphones other than the native log, each written
//! here from its documented format while the agent follows it: MicroSIP's `microsip.ini` (at a
//! configured path, and on Windows at its default `%APPDATA%\MicroSIP`) and Linphone 5.2+'s
//! `linphone.db`. Every finished call becomes one Task with its type and talk time; nothing
//! in progress is written; rewrites and updates in place never make a second Task. These run
//! under Wine too.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use callsync_sim::{Sim, SimOptions};

use crate::agent::status;
use crate::common;

async fn sim() -> Sim {
    Sim::start(
        SimOptions {
            records: 50,
            seed: 5,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap()
}

/// The Tasks whose CallObject starts with `prefix`.
fn tasks_of(sim: &Sim, prefix: &str) -> Vec<serde_json::Value> {
    sim.org()
        .rows("Task")
        .into_iter()
        .filter(|t| t["CallObject"].as_str().unwrap_or("").starts_with(prefix))
        .collect()
}

fn start_agent(d: &Path) -> std::process::Child {
    common::command(d)
        .args(["run", "--headless"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop_agent(agent: std::process::Child) {
    common::terminate(&agent);
    let mut agent = agent;
    assert!(agent.wait().unwrap().success());
}

/// MicroSIP's history at `ini` followed by the agent (configured with that path, or with none
/// when `configured` is false): the calls already there are history, a call that ends becomes
/// one Task, and its row rewritten again (the ring moving on) never makes a second.
async fn microsip_history_becomes_tasks_once(ini: &Path, configured: bool) {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(ini.parent().unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let write = |rows: &[String]| {
        let mut text = String::from("[Settings]\r\ncallsLastKey=3\r\n[Calls]\r\n");
        for (k, r) in rows.iter().enumerate() {
            text.push_str(&format!("{k}={r}\r\n"));
        }
        let mut b = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        // The profile API rewrites the file whole.
        std::fs::write(ini, b).unwrap();
    };
    let old = format!("0311110001;;1;{};30;Call Ended", now - 3600);
    write(std::slice::from_ref(&old));
    let path = if configured { ini } else { Path::new("") };
    common::agent_setup_with(&sim, d, "microsip", path, 3600, "").await;
    let agent = start_agent(d);
    common::wait_until(20, "the agent", || status(d)["running"] == true).await;
    // Ringing (no end reason yet), then ended in place with its talk time.
    let ringing = format!("0311110002;山田;2;{now};0;");
    write(&[old.clone(), ringing]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        sim.org().rows("Task").is_empty(),
        "a call in progress was written"
    );
    let ended = format!("0311110002;山田;1;{now};42;通話終了");
    write(&[old.clone(), ended.clone()]);
    common::wait_until(20, "the Task", || !tasks_of(&sim, "microsip-").is_empty()).await;
    // The ring moves on: the same rows under other keys, one more call after them.
    let later = format!("0311110003;;0;{};0;Canceled", now + 60);
    write(&[later.clone(), old, ended]);
    common::wait_until(20, "the second Task", || {
        tasks_of(&sim, "microsip-").len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tasks = tasks_of(&sim, "microsip-");
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let answered = tasks
        .iter()
        .find(|t| t["CallDurationInSeconds"] == 42)
        .unwrap_or_else(|| panic!("no 42 s call: {tasks:?}"));
    assert_eq!(answered["CallType"], "Inbound");
    stop_agent(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_microsip_history_becomes_tasks_once() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("MicroSIP").join("microsip.ini");
    microsip_history_becomes_tasks_once(&ini, true).await;
}

/// An installed MicroSIP, found with no path configured: `%APPDATA%\MicroSIP\microsip.ini`.
/// Under Wine that is the test prefix's profile; on a real Windows PC with a MicroSIP profile
/// the test leaves it alone and says so.
#[cfg(windows)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_microsip_is_found_in_appdata() {
    let folder = directories::BaseDirs::new()
        .unwrap()
        .config_dir()
        .join("MicroSIP");
    if folder.exists() {
        eprintln!("skipped: {} belongs to a real MicroSIP", folder.display());
        return;
    }
    /// The folder made for the test goes when the test ends, passed or failed.
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let _remove = Remove(&folder);
    microsip_history_becomes_tasks_once(&folder.join("microsip.ini"), false).await;
}

/// Linphone 5.2+'s `linphone.db`, written while the agent follows it as liblinphone writes it
/// (a row at call start, updated at connect and end, an end event): answered, missed and
/// declined calls become one Task each, with their type and talk time, the SIP Call-ID as
/// CallObject; a call ringing or in progress is not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linphone_db_history_becomes_tasks_once() {
    use callsync_calllog::testkit::{connect_call, end_call, main_db, start_call};
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("linphone").join("linphone.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let c = main_db(&db).unwrap();
    common::agent_setup_with(&sim, d, "linphone", &db, 3600, "").await;
    let agent = start_agent(d);
    common::wait_until(20, "the agent", || status(d)["running"] == true).await;
    let at = |s: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(s))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let a = start_call(&c, "lp-answered@pbx", true, &at(-60)).unwrap();
    connect_call(&c, a, &at(-55)).unwrap();
    let m = start_call(&c, "lp-missed@pbx", true, &at(-30)).unwrap();
    end_call(&c, m, 2, None, 0).unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let early = tasks_of(&sim, "lp-");
    assert!(
        early.iter().all(|t| t["CallObject"] != "lp-answered@pbx"),
        "a call in progress was written: {early:?}"
    );
    end_call(&c, a, 0, None, 42).unwrap();
    let r = start_call(&c, "lp-declined@pbx", false, &at(-10)).unwrap();
    end_call(&c, r, 3, None, 0).unwrap();
    common::wait_until(20, "three Tasks", || tasks_of(&sim, "lp-").len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tasks = tasks_of(&sim, "lp-");
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    let by = |id: &str| {
        tasks
            .iter()
            .find(|t| t["CallObject"] == id)
            .unwrap_or_else(|| panic!("no Task for {id}: {tasks:?}"))
            .clone()
    };
    let answered = by("lp-answered@pbx");
    assert_eq!(answered["CallType"], "Inbound");
    assert_eq!(answered["CallDurationInSeconds"], 42);
    assert_eq!(by("lp-missed@pbx")["CallType"], "Inbound");
    assert_eq!(by("lp-missed@pbx")["CallDurationInSeconds"], 0);
    assert_eq!(by("lp-declined@pbx")["CallType"], "Outbound");
    stop_agent(agent);
}
