//! Outbox benchmark: `cargo bench --bench outbox`. The simulated org runs as its own process.
//! Prints the drain rate of a 10,000-Task backlog (sObject Collections, upsert on the call id),
//! the enqueue cost (each enqueue is fsynced), and the latency from a call's `ended` line in the
//! call log to its Task accepted by the org through a running `callsync run --headless`
//! (p50/p99 over 100 calls).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsync_salesforce::auth::{self, AuthStore, FileStore};
use callsync_salesforce::client::{Client, ClientConfig};
use callsync_salesforce::writer::Sender;
use callsync_store::outbox::{Op, Outbox};

mod common;
use common::{free_port, percentile, sim_state, start_sim, wait_for_sim};

async fn task_count(url: &str) -> u64 {
    sim_state(url).await["records"]["Task"]
        .as_u64()
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let (mut sim, url) = start_sim(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        wait_for_sim(&url).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = ClientConfig {
            login_url: url.clone(),
            client_id: "callsync-sim-client".into(),
            api_version: "62.0".into(),
            timeout: Duration::from_secs(30),
            net: Default::default(),
        };
        let token = auth::sign_in_pkce(&cfg, free_port(), |u| {
            tokio::spawn(callsync_sim::play_browser(u.to_owned()));
        }, Duration::from_secs(10))
        .await
        .unwrap();
        let store: Arc<dyn AuthStore> = Arc::new(FileStore::new(dir.path().join("data/auth.json")));
        store.save(&auth::stored_from(&cfg, &token, "agent", "pkce")).unwrap();

        // 1. Backlog drain.
        const N: usize = 10_000;
        let outbox = Outbox::open(&dir.path().join("bench-outbox")).unwrap();
        let t = Instant::now();
        for i in 0..N {
            let call = format!("backlog-{i}");
            let fields = [
                ("Subject", serde_json::json!(format!("Incoming call: {i}"))),
                ("Status", serde_json::json!("Completed")),
                ("TaskSubtype", serde_json::json!("Call")),
                ("CallType", serde_json::json!("Inbound")),
                ("CallObject", serde_json::json!(call)),
                ("CallDurationInSeconds", serde_json::json!(i % 600)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            outbox.enqueue(&call, Op::Create, fields).unwrap();
        }
        let enqueue = t.elapsed();
        let client = Client::from_store(cfg.clone(), store.clone()).unwrap();
        let sender = Sender { client: &client, outbox: &outbox, external_id: Some("Call_Id__c".into()), event_external_id: None, errors: None, awaiting_refresh: Default::default() };
        let before = task_count(&url).await;
        let t = Instant::now();
        while outbox.counts().unwrap().0 > 0 {
            sender.send_due().await.unwrap();
        }
        let drain = t.elapsed();
        assert_eq!(task_count(&url).await - before, N as u64);
        drop(outbox);

        // 2. Call ended → Task accepted, through the running agent.
        let log = dir.path().join("calls.jsonl");
        std::fs::write(&log, "").unwrap();
        std::fs::write(
            dir.path().join("user.toml"),
            format!(
                "[salesforce]\nlogin_url = \"{url}\"\nclient_id = \"callsync-sim-client\"\nredirect_port = {}\n[auth]\nstore = \"file\"\n[sync]\ninterval_secs = 3600\n[calllog]\nsources = [{{ kind = \"native\", path = \"{}\" }}]\n[activity]\nexternal_id_field = \"Call_Id__c\"\n",
                free_port(),
                log.display()
            ),
        )
        .unwrap();
        let mut agent = Command::new(env!("CARGO_BIN_EXE_callsync"))
            .env("CALLSYNC_DATA_DIR", dir.path().join("data"))
            .env("CALLSYNC_CONFIG", dir.path().join("user.toml"))
            .env("CALLSYNC_MANAGED_CONFIG", dir.path().join("managed.toml"))
            .args(["run", "--headless"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let mut lat = Vec::new();
        for i in 0..100 {
            let start = format!("{{\"call_id\":\"live-{i}\",\"event\":\"ringing\",\"at\":\"2026-11-21T10:00:00+09:00\",\"direction\":\"inbound\",\"remote\":\"03-1234-{i:04}\"}}\n");
            f.write_all(start.as_bytes()).unwrap();
            let before = task_count(&url).await;
            let end = format!("{{\"call_id\":\"live-{i}\",\"event\":\"ended\",\"at\":\"2026-11-21T10:01:00+09:00\",\"outcome\":\"answered\",\"duration_s\":60}}\n");
            let t = Instant::now();
            f.write_all(end.as_bytes()).unwrap();
            f.flush().unwrap();
            while task_count(&url).await == before {
                assert!(t.elapsed() < Duration::from_secs(30), "Task {i} never arrived");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            lat.push(t.elapsed());
        }
        let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
        let _ = agent.wait();
        lat.sort();
        println!("callsync outbox benchmark (simulated org in its own process, loopback)");
        println!();
        println!("| measure | value | target |");
        println!("|---|---|---|");
        println!("| backlog of {N} Tasks drained (Collections of 200, upsert on Call_Id__c) | {:.0} Tasks/s ({:.1} s) | ≥ 1,000 Tasks/s |", N as f64 / drain.as_secs_f64(), drain.as_secs_f64());
        println!("| enqueue (fsynced before the call log is acknowledged) | {:.2} ms per Task | – |", enqueue.as_secs_f64() * 1e3 / N as f64);
        println!("| call ended (line written) → Task accepted by the org, p50 / p99 over 100 calls | {:.1} / {:.1} ms | p99 ≤ 250 ms |", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)));
    });
    let _ = sim.kill();
    let _ = sim.wait();
}
