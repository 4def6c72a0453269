//! Who is calling, measured: `cargo bench --bench callers` (Linux).
//!
//! The agent (`callsync run --headless`) against the simulated org (in this process, on
//! 127.0.0.1), its screen pops received by a test notification server on a private D-Bus bus
//! (`tests/common/notifications.rs`), as in the e2e tests:
//!
//! - ring → fresh answer: a Contact is created in the org, then its number rings; the clock
//!   stops when the pop that replaces "Looking up…" with the name reaches the bus
//!   (`CALLSYNC_BENCH_MISSES`, default 40, one at a time, with `refresh_on_miss_every_secs = 1`
//!   so that each has its own cycle), with the API calls each cost;
//! - extra API calls per 100 misses at the default rate limit (one cycle per 30 s): 100 unknown
//!   numbers ring over 30 s (one every 300 ms), and the org counts the calls until the last
//!   deferred cycle has run.

mod common;
#[cfg(target_os = "linux")]
#[path = "../tests/common/notifications.rs"]
mod notifications;
/// The integration tests' helpers: the `callsync` command, the agent's settings and sign-in,
/// call-log lines.
#[cfg(target_os = "linux")]
#[path = "../tests/common/mod.rs"]
mod tcommon;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    println!("the callers bench runs on Linux (its notification server is on D-Bus)");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::Path;
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    use callsync_sim::{Sim, SimOptions};
    use serde_json::json;

    use crate::common::{env_or, percentile};
    use crate::notifications::Notifications;
    use crate::tcommon;

    fn wait(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An agent signed in to `sim`, synced, following `dir/calls.jsonl`.
    fn agent(
        rt: &tokio::runtime::Runtime,
        sim: &Sim,
        d: &Path,
        bus: &Notifications,
        every: u64,
    ) -> Child {
        let log = d.join("calls.jsonl");
        rt.block_on(tcommon::agent_setup(
            sim,
            d,
            &log,
            3600,
            "[ui]\nlanguage = \"en\"\n",
        ));
        let user = d.join("user.toml");
        let cfg = std::fs::read_to_string(&user).unwrap();
        let every = format!("[sync]\nrefresh_on_miss_every_secs = {every}\n");
        std::fs::write(&user, cfg.replace("[sync]\n", &every)).unwrap();
        let child = tcommon::command(d)
            .args(["run", "--headless"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait(60, "the first sync", || {
            tcommon::command(d)
                .args(["status", "--json"])
                .output()
                .ok()
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
                .is_some_and(|s| s["agent"]["last_sync_ms"].is_number())
        });
        child
    }

    fn stop(mut child: Child, d: &Path) {
        let _ = tcommon::command(d).args(["agent", "quit"]).output();
        let _ = child.wait();
    }

    pub fn main() {
        let Some(bus) = Notifications::start() else {
            println!("skipped: no dbus-daemon");
            return;
        };
        let misses: usize = env_or("CALLSYNC_BENCH_MISSES", 40);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt
            .block_on(Sim::start(
                SimOptions {
                    records: 2_000,
                    seed: 9,
                    ..Default::default()
                },
                0,
            ))
            .unwrap();

        // Ring → fresh answer, one cycle each.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let child = agent(&rt, &sim, d, &bus, 1);
        let log = d.join("calls.jsonl");
        let mut took = Vec::new();
        let calls0 = sim.org().api_calls;
        for i in 0..misses {
            let number = format!("03-5{:03}-{:04}", i / 10_000, i % 10_000);
            let mut f = serde_json::Map::new();
            f.insert("Name".into(), json!(format!("New Caller {i}")));
            f.insert("LastName".into(), json!(format!("Caller {i}")));
            f.insert("Phone".into(), json!(number));
            sim.org().admin_upsert("Contact", f);
            // Past the rate limit's slot: every miss has its own cycle.
            std::thread::sleep(Duration::from_millis(1_050));
            let rang = Instant::now();
            tcommon::append(&log, &tcommon::ringing(&format!("fresh-{i}"), &number));
            let name = format!("New Caller {i}");
            wait(20, "the answer", || {
                bus.shown()
                    .iter()
                    .any(|s| s.summary == name && s.replaces != 0)
            });
            let at = bus
                .shown()
                .into_iter()
                .find(|s| s.summary == name)
                .map(|s| s.at)
                .unwrap();
            took.push(at.saturating_duration_since(rang));
        }
        let per_miss = (sim.org().api_calls - calls0) as f64 / misses as f64;
        stop(child, d);
        took.sort();
        println!(
            "ring → fresh answer on the bus ({misses} misses, one cycle each): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; API calls per miss: {per_miss:.2}",
            percentile(&took, 0.5).as_secs_f64() * 1e3,
            percentile(&took, 0.99).as_secs_f64() * 1e3,
            took.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );

        // 100 unknown numbers over 30 s at the default rate limit.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let child = agent(&rt, &sim, d, &bus, 30);
        let log = d.join("calls.jsonl");
        let calls0 = sim.org().api_calls;
        let start = Instant::now();
        for i in 0..100 {
            tcommon::append(
                &log,
                &tcommon::ringing(
                    &format!("unknown-{i}"),
                    &format!("03-6{:03}-{:04}", i / 10_000, i % 10_000),
                ),
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        // The misses after the first cycle wait for the next slot (30 s later).
        std::thread::sleep(Duration::from_secs(62).saturating_sub(start.elapsed()));
        let extra = sim.org().api_calls - calls0;
        stop(child, d);
        println!(
            "100 unknown numbers over {:.0} s at the default rate limit (1 cycle per 30 s): {extra} extra API calls ({:.2} per miss)",
            30.0,
            extra as f64 / 100.0
        );
        rt.block_on(sim.stop());
    }
}
