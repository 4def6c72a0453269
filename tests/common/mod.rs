//! What the integration tests share: a free loopback port, a client configuration for the
//! simulated org, a real PKCE sign-in (the test plays the browser), and the `callsync` binary
//! with a clean environment pointed at a test folder.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callsync_salesforce::auth::{self, AuthStore, FileStore};
use callsync_salesforce::client::ClientConfig;
use callsync_sim::{Sim, SimOptions};

/// A second simulated org (another company's), for switching orgs.
pub async fn other_org(records: usize) -> Sim {
    Sim::start(
        SimOptions {
            records,
            org_id: "00DOTHER00000001AAA".into(),
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap()
}

/// The public key of `tests/fixtures/jwt-test-key.pem`: the certificate the simulated org's
/// connected app checks JWT bearer assertions with.
pub fn jwt_public_key() -> Option<String> {
    Some(include_str!("../fixtures/jwt-test-key.pub.pem").to_owned())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn client_config(url: &str) -> ClientConfig {
    ClientConfig {
        login_url: url.to_owned(),
        client_id: "callsync-sim-client".into(),
        api_version: "62.0".into(),
        timeout: Duration::from_secs(10),
        net: Default::default(),
    }
}

/// Signs in to `sim` with the PKCE flow and stores the sign-in in `auth_file`.
pub async fn sign_in(sim: &Sim, auth_file: &Path) -> (ClientConfig, Arc<dyn AuthStore>) {
    let cfg = client_config(&sim.url());
    let t = auth::sign_in_pkce(
        &cfg,
        free_port(),
        |u| {
            tokio::spawn(callsync_sim::play_browser(u.to_owned()));
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let store: Arc<dyn AuthStore> = Arc::new(FileStore::new(auth_file));
    store
        .save(&auth::stored_from(
            &cfg,
            &t,
            "agent@sim.example.com",
            "pkce",
        ))
        .unwrap();
    (cfg, store)
}

/// `callsync` with no inherited CALLSYNC_*/RUST_LOG, its data, user and managed files in `dir`.
pub fn command(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_callsync"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CALLSYNC_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.env("CALLSYNC_DATA_DIR", dir.join("data"))
        .env("CALLSYNC_CONFIG", dir.join("user.toml"))
        .env("CALLSYNC_MANAGED_CONFIG", dir.join("managed.toml"));
    c
}

/// A user configuration for an agent against `sim` following the native call log `log` and
/// syncing every `sync_secs`, and a stored sign-in in `dir/data`.
pub async fn agent_setup(sim: &Sim, dir: &Path, log: &Path, sync_secs: u64, extra: &str) {
    agent_setup_with(sim, dir, "native", log, sync_secs, extra).await
}

/// [`agent_setup`] following a call log of another `kind` (`log` empty: no path, the kind's
/// default).
pub async fn agent_setup_with(
    sim: &Sim,
    dir: &Path,
    kind: &str,
    log: &Path,
    sync_secs: u64,
    extra: &str,
) {
    std::fs::write(
        dir.join("user.toml"),
        format!(
            "[salesforce]\nlogin_url = \"{}\"\nclient_id = \"callsync-sim-client\"\nredirect_port = {}\ntimeout_secs = 5\n\
             [auth]\nstore = \"file\"\n[sync]\ninterval_secs = {sync_secs}\n\
             [calllog]\nsources = [{{ kind = \"{kind}\"{} }}]\npoll_secs = 1\n\
             [activity]\nsend_interval_secs = 1\n{extra}",
            sim.url(),
            free_port(),
            // No path: the softphone's default.
            if log.as_os_str().is_empty() {
                String::new()
            } else {
                format!(", path = {}", toml_str(log))
            }
        ),
    )
    .unwrap();
    sign_in(sim, &dir.join("data/auth.json")).await;
}

/// The native call-log line of an inbound call ringing now.
pub fn ringing(call_id: &str, remote: &str) -> String {
    let at = chrono::Utc::now().fixed_offset().to_rfc3339();
    format!("{{\"call_id\":\"{call_id}\",\"event\":\"ringing\",\"at\":\"{at}\",\"direction\":\"inbound\",\"remote\":\"{remote}\"}}\n")
}

/// Native call-log lines for one complete inbound call that rings now.
pub fn call_lines(call_id: &str, remote: &str) -> String {
    let now = chrono::Utc::now().fixed_offset();
    let t = |s: i64| (now + chrono::Duration::seconds(s)).to_rfc3339();
    format!(
        "{{\"call_id\":\"{call_id}\",\"event\":\"ringing\",\"at\":\"{}\",\"direction\":\"inbound\",\"remote\":\"{remote}\"}}\n\
         {{\"call_id\":\"{call_id}\",\"event\":\"answered\",\"at\":\"{}\"}}\n\
         {{\"call_id\":\"{call_id}\",\"event\":\"ended\",\"at\":\"{}\",\"outcome\":\"answered\",\"duration_s\":2}}\n",
        t(0),
        t(1),
        t(2)
    )
}

pub fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

/// `callsync connect --no-browser` (plus `extra`), the test playing the browser.
pub async fn connect_cli(d: &Path, extra: &[&str]) {
    let mut child = command(d)
        .arg("connect")
        .arg("--no-browser")
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.trim().starts_with("http").then(|| l.trim().to_owned()))
            .unwrap();
        std::thread::spawn(move || for _ in lines {});
        url
    })
    .await
    .unwrap();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    callsync_sim::play_browser(url).await.unwrap();
    let st = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(st.success());
}

/// Polls `f` every 50 ms until it is true; panics with `what` after `secs`.
pub async fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A path as a TOML string: quoted and escaped (a Windows path's `\u…` is no escape).
pub fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// Asks a process to stop the way its OS does at logout or service stop: SIGTERM on Unix; on
/// Windows `taskkill` without `/F`, which posts WM_CLOSE to its windows (the agent's hidden
/// close window answers it with a graceful stop).
pub fn terminate(child: &std::process::Child) {
    terminate_pid(child.id());
}

/// [`terminate`] by process id (a process this test did not start: one restarted in place).
pub fn terminate_pid(pid: u32) {
    assert!(try_terminate_pid(pid), "cannot ask {pid} to stop");
}

/// [`terminate_pid`] that only says whether the request was delivered (for clean-ups).
pub fn try_terminate_pid(pid: u32) -> bool {
    let pid = pid.to_string();
    let status = if cfg!(windows) {
        std::process::Command::new("taskkill")
            .args(["/PID", &pid])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
    } else {
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
    };
    status.is_ok_and(|s| s.success())
}
