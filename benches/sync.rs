//! Sync benchmark: `cargo bench --bench sync` (200,000 records; `CALLSYNC_BENCH_RECORDS` to
//! change). The simulated org runs as its own `callsync sim` process, so the RSS printed is the
//! agent's alone. Prints: full-sync rate, API calls used, records per API call, peak RSS, and the
//! API calls of an idle incremental cycle.

use std::time::{Duration, Instant};

use callsync_app::app::App;
use callsync_config::Config;
use callsync_store::paths::DataDir;

mod common;
use common::{env_or, free_port, rss_mib, sim_state, start_sim, wait_for_sim};

async fn api_calls(url: &str) -> u64 {
    sim_state(url).await["api_calls"].as_u64().unwrap()
}

fn main() {
    let records: usize = env_or("CALLSYNC_BENCH_RECORDS", 200_000);
    let (mut sim, url) = start_sim(records);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        wait_for_sim(&url).await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.salesforce.login_url = url.clone();
        config.salesforce.client_id = "callsync-sim-client".into();
        config.salesforce.redirect_port = free_port();
        config.auth.store = "file".into();
        let app = App::new(config, DataDir::new(dir.path()));
        let cfg = app.client_config();
        let token = callsync_salesforce::auth::sign_in_pkce(&cfg, app.config.salesforce.redirect_port, |u| {
            tokio::spawn(callsync_sim::play_browser(u.to_owned()));
        }, Duration::from_secs(30))
        .await
        .unwrap();
        app.complete_sign_in(&token, "pkce").await.unwrap();
        let client = app.client().unwrap();
        let (cache, _) = app.open_cache().unwrap();

        let before = api_calls(&url).await;
        let t = Instant::now();
        let report = app.sync(&cache, &client, false, &mut |_, _, _| {}).await.unwrap();
        let took = t.elapsed();
        let full_calls = api_calls(&url).await - before;
        let rss = rss_mib().1;

        let before = api_calls(&url).await;
        let idle = app.sync(&cache, &client, false, &mut |_, _, _| {}).await.unwrap();
        let idle_calls = api_calls(&url).await - before;
        assert!(idle.full.is_empty());

        println!("callsync sync benchmark: {records} generated records in the simulated org (separate process)");
        println!();
        println!("| measure | value | target |");
        println!("|---|---|---|");
        println!("| full sync, records loaded | {} | – |", report.upserted);
        println!("| full sync time | {:.1} s | – |", took.as_secs_f64());
        println!("| full sync rate, end to end (HTTP, JSON, normalization, cache, index) | {:.0} records/s | ≥ 10,000 |", report.upserted as f64 / took.as_secs_f64());
        println!("| API calls for the full sync | {full_calls} | – |");
        println!("| records per API call | {:.0} | ≥ 2,000 |", report.upserted as f64 / full_calls.max(1) as f64);
        println!("| peak RSS of the agent during the sync | {rss:.0} MiB | – |");
        println!("| API calls of an idle incremental cycle | {idle_calls} | ≤ 1 |");
    });
    let _ = sim.kill();
    let _ = sim.wait();
}
