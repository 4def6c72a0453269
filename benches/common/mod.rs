//! What the benchmark binaries share: a free loopback port, the simulated org's state, a
//! sign-in to it, memory from /proc, and percentiles.
#![allow(dead_code)]

use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The simulated org's `/__sim/state` (record counts, API calls).
pub async fn sim_state(url: &str) -> serde_json::Value {
    reqwest::get(format!("{url}/__sim/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// (current, peak) resident set in MiB, from /proc (Linux).
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Memory in MiB from /proc (Linux): (RssAnon, RssFile, Linux's "private": pages only this
/// process maps, file pages included). RssAnon is what Task Manager's private working set
/// counts; RssFile holds the executable and a mapped index, pages the OS shares and can drop.
pub fn memory_mib() -> (f64, f64, f64) {
    let kb = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    (
        kb(&status, "RssAnon:"),
        kb(&status, "RssFile:"),
        kb(&rollup, "Private_Clean:") + kb(&rollup, "Private_Dirty:"),
    )
}

/// The `p` quantile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// An integer setting of a benchmark from the environment.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `callsync sim` with `records` generated rows in its own process (so that this process's
/// figures are callsync's alone); returns it and its URL.
pub fn start_sim(records: usize) -> (std::process::Child, String) {
    let port = free_port();
    let sim = std::process::Command::new(env!("CARGO_BIN_EXE_callsync"))
        .args([
            "sim",
            "--port",
            &port.to_string(),
            "--records",
            &records.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the simulated org");
    (sim, format!("http://127.0.0.1:{port}"))
}

/// Waits until the simulated org at `url` answers (it generates its records first).
pub async fn wait_for_sim(url: &str) {
    let t = std::time::Instant::now();
    while reqwest::get(format!("{url}/__sim/state")).await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the simulated org did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in to the simulated org at `url` (the test plays the browser) and stores the sign-in
/// in `data`, as `callsync connect` does; returns the app for that data folder.
pub async fn sign_in(url: &str, data: callsync_store::paths::DataDir) -> callsync_app::App {
    let mut config = callsync_config::Config::default();
    config.salesforce.login_url = url.to_owned();
    config.salesforce.client_id = "callsync-sim-client".into();
    config.salesforce.redirect_port = free_port();
    config.auth.store = "file".into();
    let app = callsync_app::App::new(config, data);
    let token = callsync_salesforce::auth::sign_in_pkce(
        &app.client_config(),
        app.config.salesforce.redirect_port,
        |u| {
            tokio::spawn(callsync_sim::play_browser(u.to_owned()));
        },
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    app.complete_sign_in(&token, "pkce").await.unwrap();
    app
}
