//! The CLI against the simulated org with real processes: `callsync connect` (the test plays the
//! browser), `callsync sync` killed with SIGKILL in the middle of a full load and run again,
//! `callsync status`, `callsync lookup`, `callsync disconnect`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use callsync_sim::{Fault, FaultKind, Sim, SimOptions};
use serde_json::{json, Value};

use crate::common;
use common::{command as cmd, connect_cli, free_port};

fn status(dir: &Path) -> Value {
    let out = cmd(dir).args(["status", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn records(st: &Value, object: &str) -> (u64, bool) {
    let o = st["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"] == object)
        .unwrap();
    (
        o["records"].as_u64().unwrap(),
        o["load_in_progress"].as_bool().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sync_killed_midway_resume_status_lookup_disconnect() {
    let sim = Sim::start(
        SimOptions {
            records: 20_000,
            page_size: 500,
            seed: 3,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    std::fs::write(
        d.join("user.toml"),
        format!(
            "[salesforce]\nlogin_url = \"{}\"\nclient_id = \"callsync-sim-client\"\nredirect_port = {}\n[auth]\nstore = \"file\"\n",
            sim.url(),
            free_port()
        ),
    )
    .unwrap();

    // Not signed in yet: a clear exit code.
    let out = cmd(&d).arg("sync").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // connect --no-browser prints the address; the test is the browser.
    connect_cli(&d, &[]).await;
    let auth = std::fs::read_to_string(d.join("data/auth.json")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("data/auth.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the token file must be private");
    }
    assert!(auth.contains("refresh_token"));
    let h = cmd(&d)
        .args(["auth", "history", "--json"])
        .output()
        .unwrap();
    let h: Value = serde_json::from_slice(&h.stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!(h[0]["org_id"], "00DSIM000000001AAA");

    // Slow pages, so that the kill lands in the middle of the contacts' full load.
    sim.org().faults = vec![Fault {
        kind: FaultKind::Latency,
        method: Some("GET".into()),
        path_contains: Some("/query/".into()),
        skip: 0,
        times: None,
        latency_ms: 150,
        probability: None,
    }];
    let mut sync = cmd(&d)
        .arg("sync")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    // Wait until a few pages are in (the cache is locked by the child; watch the sim instead).
    while sim.org().api_calls < 6 && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sync.kill().unwrap(); // SIGKILL
    sync.wait().unwrap();

    let st = status(&d);
    let (partial, in_progress) = records(&st, "Contact");
    assert!(
        in_progress,
        "the interrupted load should be resumable: {st:#}"
    );
    let _ = partial;

    sim.org().faults.clear();
    let out = cmd(&d).arg("sync").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let st = status(&d);
    let contacts = sim.org().count("Contact") as u64;
    assert_eq!(records(&st, "Contact"), (contacts, false), "{st:#}");
    assert_eq!(st["signed_in"]["org_id"], "00DSIM000000001AAA");
    assert!(st["api_usage"]["used"].as_u64().unwrap() > 0);

    // The last contact's number identifies it.
    let rows = sim.org().rows("Contact");
    let c = rows
        .iter()
        .rev()
        .find(|r| r["Phone"].is_string() && r["IsPersonAccount"] != json!(true))
        .unwrap();
    let out = cmd(&d)
        .args(["lookup", "--json", c["Phone"].as_str().unwrap()])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = std::iter::once(&r["best"])
        .chain(r["others"].as_array().unwrap())
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&c["Id"].as_str().unwrap()), "{r:#}");

    // Disconnect revokes at Salesforce and forgets locally; the cache stays.
    let out = cmd(&d).arg("disconnect").output().unwrap();
    assert!(out.status.success());
    assert!(!d.join("data/auth.json").exists());
    let st = status(&d);
    assert!(st["signed_in"].is_null());
    assert_eq!(records(&st, "Contact").0, contacts);
    let out = cmd(&d).arg("sync").output().unwrap();
    assert_eq!(out.status.code(), Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_backs_off_when_the_org_limit_is_exhausted_and_stops_cleanly() {
    let sim = Sim::start(
        SimOptions {
            records: 300,
            seed: 5,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    std::fs::write(
        d.join("user.toml"),
        format!(
            "[salesforce]\nlogin_url = \"{}\"\nclient_id = \"callsync-sim-client\"\nredirect_port = {}\n[auth]\nstore = \"file\"\n[sync]\ninterval_secs = 30\n",
            sim.url(),
            free_port()
        ),
    )
    .unwrap();
    // Sign in through the library (the CLI sign-in is covered above).
    let cfg = callsync_salesforce::client::ClientConfig {
        login_url: sim.url(),
        client_id: "callsync-sim-client".into(),
        api_version: "62.0".into(),
        timeout: Duration::from_secs(10),
        net: Default::default(),
    };
    let port = free_port();
    let t = callsync_salesforce::auth::sign_in_pkce(
        &cfg,
        port,
        |u| {
            tokio::spawn(callsync_sim::play_browser(u.to_owned()));
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    use callsync_salesforce::auth::AuthStore as _;
    callsync_salesforce::auth::FileStore::new(d.join("data/auth.json"))
        .save(&callsync_salesforce::auth::stored_from(
            &cfg,
            &t,
            "agent@sim.example.com",
            "pkce",
        ))
        .unwrap();

    // The org's daily limit is used up.
    {
        let mut org = sim.org();
        org.opts.api_daily_max = 0;
    }
    let mut watch = cmd(&d)
        .args(["sync", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // It is still running (a limit is not fatal) and did not retry in a hot loop.
    assert!(
        watch.try_wait().unwrap().is_none(),
        "watch exited on a rate limit"
    );
    let refused = {
        let o = sim.org();
        o.api_calls
    };
    assert_eq!(refused, 0, "no call may succeed past the limit");
    #[cfg(unix)]
    {
        // SIGINT: a graceful stop.
        let pid = watch.id().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        let out = tokio::task::spawn_blocking(move || watch.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("REQUEST_LIMIT_EXCEEDED") && err.contains("retrying later"),
            "{err}"
        );
        assert_eq!(
            err.matches("retrying later").count(),
            1,
            "backed off, not a loop: {err}"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    }
    #[cfg(not(unix))]
    {
        let _ = watch.kill();
    }
}

/// `callsync connect --no-browser` with the test as the browser.
fn write_user(d: &Path, sim: &Sim, port: u16) {
    std::fs::write(
        d.join("user.toml"),
        format!("[salesforce]\nlogin_url = \"{}\"\nclient_id = \"callsync-sim-client\"\nredirect_port = {port}\n[auth]\nstore = \"file\"\n", sim.url()),
    )
    .unwrap();
}

async fn send(d: &Path) -> callsync_salesforce::writer::SendReport {
    let mut config = callsync_config::Config::default();
    let text = std::fs::read_to_string(d.join("user.toml")).unwrap();
    let user: callsync_config::Config = toml::from_str(&text).unwrap_or_default();
    config.salesforce = user.salesforce;
    config.auth = user.auth;
    let app =
        callsync_app::app::App::new(config, callsync_store::paths::DataDir::new(d.join("data")));
    let client = app.client().unwrap();
    let outbox = open_outbox(d);
    callsync_salesforce::writer::Sender {
        client: &client,
        outbox: &outbox,
        external_id: Some("Call_Id__c".into()),
        event_external_id: None,
        errors: None,
        awaiting_refresh: Default::default(),
    }
    .send_due()
    .await
    .unwrap()
}

/// The outbox, opened again in this process. Its lock (flock) can outlive the dropped handle
/// for a moment: a child process that a parallel test forks in that instant shares the lock's
/// file description until it execs.
fn open_outbox(d: &Path) -> callsync_store::outbox::Outbox {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match callsync_store::outbox::Outbox::open(&d.join("data/outbox")) {
            Err(callsync_store::outbox::OutboxError::Locked(_)) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            r => return r.unwrap(),
        }
    }
}

fn enqueue(d: &Path, call: &str) {
    let o = open_outbox(d);
    let f = [
        ("Subject", json!("Call")),
        ("Status", json!("Completed")),
        ("CallObject", json!(call)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    o.enqueue(call, callsync_store::outbox::Op::Create, f)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_survives_disconnect_and_never_goes_to_another_org_unasked() {
    let a = Sim::start(
        SimOptions {
            records: 50,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let b = common::other_org(50).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let port = free_port();
    write_user(&d, &a, port);
    connect_cli(&d, &[]).await;
    enqueue(&d, "first");
    assert_eq!(send(&d).await.sent, 1);

    // Disconnected with a call queued: kept, not sent.
    enqueue(&d, "queued");
    let out = cmd(&d).arg("disconnect").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 queued Task(s) are kept"),
        "{out:?}"
    );
    // Back to the same org: it is sent.
    connect_cli(&d, &[]).await;
    assert_eq!(send(&d).await.sent, 1);
    assert_eq!(a.org().rows("Task").len(), 2);

    // Another org: the queue stays put, with a clear reason.
    enqueue(&d, "for-a");
    cmd(&d).arg("disconnect").output().unwrap();
    write_user(&d, &b, port);
    connect_cli(&d, &[]).await;
    let rep = send(&d).await;
    assert_eq!(rep.sent, 0);
    assert!(rep
        .stopped
        .unwrap()
        .contains("queued for org 00DSIM000000001AAA"));
    assert!(b.org().rows("Task").is_empty(), "a Task crossed orgs");
    // Only when the user says so.
    connect_cli(&d, &["--send-queue-here"]).await;
    assert_eq!(send(&d).await.sent, 1);
    assert_eq!(b.org().rows("Task").len(), 1);
}
