//! The agent's sync schedule adapts to calls: with `interval_secs = 60`, a call arriving after
//! the first sync brings the next one forward to about 30 s (half the interval, ±10 % jitter)
//! instead of about 60 s.
#![cfg(unix)]

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use callsync_sim::{Sim, SimOptions};

use crate::common;

/// When the org last received a query on Contact, and how many it has received.
fn contact_queries(sim: &Sim) -> (usize, Option<Instant>) {
    let org = sim.org();
    let q: Vec<Instant> = org
        .queries
        .iter()
        .filter(|(_, q)| q.contains(" FROM Contact"))
        .map(|(t, _)| *t)
        .collect();
    (q.len(), q.last().copied())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_brings_the_next_sync_forward() {
    let sim = Sim::start(
        SimOptions {
            records: 50,
            seed: 5,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("calls.jsonl");
    std::fs::write(&log, "").unwrap();
    common::agent_setup(&sim, d, &log, 60, "").await;
    let mut agent = common::command(d)
        .args(["run", "--headless"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The first sync: Contact queried, then quiet for a second.
    let t0 = Instant::now();
    let first_sync = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no first sync in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let (n, Some(last)) = contact_queries(&sim) {
            if n > 0 && last.elapsed() > Duration::from_secs(1) {
                break (n, last);
            }
        }
    };

    // A call.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(
        b"{\"call_id\":\"c1\",\"event\":\"ringing\",\"at\":\"2026-11-21T10:00:00+09:00\",\"direction\":\"inbound\",\"remote\":\"03-5555-0001\"}\n\
          {\"call_id\":\"c1\",\"event\":\"answered\",\"at\":\"2026-11-21T10:00:03+09:00\"}\n\
          {\"call_id\":\"c1\",\"event\":\"ended\",\"at\":\"2026-11-21T10:01:03+09:00\",\"outcome\":\"answered\"}\n",
    )
    .unwrap();
    f.flush().unwrap();

    // The next sync comes at about 30 s, not 60 s.
    let next = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (n, last) = contact_queries(&sim);
        if n > first_sync.0 {
            break last.unwrap();
        }
        assert!(
            first_sync.1.elapsed() < Duration::from_secs(50),
            "no sync within 50 s of the first although calls are flowing"
        );
    };
    let gap = next - first_sync.1;
    agent.kill().unwrap();
    agent.wait().unwrap();
    // 30 s ± 10 % jitter, measured from the end of the first sync's queries.
    assert!(
        (Duration::from_secs(25)..Duration::from_secs(40)).contains(&gap),
        "next sync after {gap:?}"
    );
    // The call itself reached Salesforce as a Task.
    assert_eq!(sim.org().rows("Task").len(), 1);
}
