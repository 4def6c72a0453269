//! `callsync demo` and `callsync sim`: the simulated org, and the agent's main job against it.

use std::io::IsTerminal;

use anyhow::Context;

use indicatif::{ProgressBar, ProgressStyle};

use callsync_app::logging::{self, Console};
use callsync_app::App;
use callsync_store::paths::DataDir;

use crate::cli::args::Global;
use crate::cli::lookup::print_lookup;
use crate::cli::runtime;

/// The quick-start demo: a simulated org on loopback, a real PKCE sign-in (the demo plays the
/// browser), a full sync with progress, lookups, a change in Salesforce picked up by one
/// incremental sync.
/// The walkthrough, then (`agent`: `Some((headless, seconds))`) the agent itself against the
/// same simulated org, with a call ringing every 20 s.
pub fn run(g: &Global, records: usize, agent: Option<(bool, Option<u64>)>) -> anyhow::Result<()> {
    use callsync_sim::{self, Sim, SimOptions};
    use std::time::Instant;

    let temp = tempfile::tempdir()?;
    let root = g.data_dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let data = DataDir::new(&root);
    let rt = runtime()?;
    let (sim, app, phones, _log) = rt.block_on(async {
        let sim = Sim::start(SimOptions { records, ..Default::default() }, 0).await?;
        let mut config = callsync_config::Config::default();
        config.salesforce.login_url = sim.url();
        config.salesforce.client_id = sim.org().opts.client_id.clone();
        config.salesforce.redirect_port = free_port()?;
        config.auth.store = "file".into();
        // The recommended setup: Tasks upserted on the call id (the simulated org has the field).
        config.activity.external_id_field = "Call_Id__c".into();
        let log_guard = logging::init(&data.logs(), &config.logging, Console::Quiet, false)?;
        let app = App::new(config, data.clone());
        outln!("callsync demo");
        outln!("  simulated Salesforce org: {} ({records} generated records: Contacts, Accounts, person accounts, Leads, Users)", sim.url());
        outln!("  data folder: {}\n", root.display());

        outln!("1. Sign in (OAuth web-server flow with PKCE; the demo plays your browser)");
        let cfg = app.client_config();
        let token = callsync_salesforce::auth::sign_in_pkce(
            &cfg,
            app.config.salesforce.redirect_port,
            |url| {
                tokio::spawn(callsync_sim::play_browser(url.to_owned()));
            },
            std::time::Duration::from_secs(30),
        )
        .await?;
        let stored = app.complete_sign_in(&token, "pkce").await?;
        outln!("   connected to org {} as {} ({})\n", stored.org_id, stored.username, stored.user_id);

        outln!("2. Full sync into the local cache");
        let client = app.client()?;
        let (cache, _) = app.open_cache()?;
        let bar = if std::io::stderr().is_terminal() { ProgressBar::new(0) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("   {msg:8} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let t = Instant::now();
        let r = app
            .sync(&cache, &client, false, &mut |k, done, total| {
                bar.set_message(k.api_name());
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
        bar.finish_and_clear();
        outln!("   {} records in {:.1} s with {} API calls\n", r.upserted, t.elapsed().as_secs_f64(), r.api_calls);

        outln!("3. Who is calling? (offline lookups from the cache)");
        let normalizer = app.config.normalizer()?;
        let rules = app.config.lookup_rules();
        let mut samples: Vec<String> = Vec::new();
        {
            let org = sim.org();
            for object in ["Contact", "Account", "Lead"] {
                for row in org.rows(object).iter().filter(|r| r["Phone"].is_string()).take(2) {
                    samples.push(row["Phone"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        samples.push("0120-000-000".into());
        for number in &samples {
            let t = Instant::now();
            let r = callsync_store::lookup::lookup(&cache, &normalizer, &rules, number)?;
            let took = t.elapsed();
            print_lookup(&r, false);
            outln!("   ({:.0} µs)", took.as_secs_f64() * 1e6);
        }

        outln!("\n4. Someone edits Salesforce; one incremental sync picks it up");
        let id = {
            let mut org = sim.org();
            let mut f = serde_json::Map::new();
            f.insert("Name".into(), serde_json::json!("デモ 太郎"));
            f.insert("Phone".into(), serde_json::json!("０３－９８７６－５４３２"));
            org.admin_upsert("Contact", f)
        };
        let r = app.sync(&cache, &client, false, &mut |_, _, _| {}).await?;
        outln!("   new Contact {id}: {} change(s) with {} API call(s)", r.upserted + r.deleted, r.api_calls);
        print_lookup(&callsync_store::lookup::lookup(&cache, &normalizer, &rules, "03-9876-5432")?, false);

        outln!("\n5. Calls become Tasks: a sample call log → the durable outbox → Salesforce");
        let (contact_phone, lead_phone) = {
            let org = sim.org();
            let c = org.rows("Contact").into_iter().find(|r| r["Phone"].is_string() && r["IsPersonAccount"] != serde_json::json!(true));
            let l = org.rows("Lead").into_iter().find(|r| r["Phone"].is_string() && r["IsConverted"] == serde_json::json!(false));
            (
                c.map(|r| r["Phone"].as_str().unwrap_or_default().to_owned()).unwrap_or_default(),
                l.map(|r| r["Phone"].as_str().unwrap_or_default().to_owned()).unwrap_or_default(),
            )
        };
        let now = chrono::Local::now().fixed_offset();
        let t = |s: i64| (now + chrono::Duration::seconds(s)).to_rfc3339();
        let lines = [
            serde_json::json!({"call_id": "demo-1", "event": "ringing", "at": t(0), "direction": "inbound", "remote": contact_phone, "agent": "demo"}),
            serde_json::json!({"call_id": "demo-1", "event": "answered", "at": t(4)}),
            serde_json::json!({"call_id": "demo-1", "event": "ended", "at": t(184), "outcome": "answered"}),
            serde_json::json!({"call_id": "demo-1", "event": "memo", "at": t(200), "items": ["Quote"], "comment": "wants a quote by Friday"}),
            serde_json::json!({"call_id": "demo-2", "event": "ringing", "at": t(300), "direction": "inbound", "remote": "0120-000-000"}),
            serde_json::json!({"call_id": "demo-2", "event": "ended", "at": t(320), "outcome": "no_answer"}),
            serde_json::json!({"call_id": "demo-3", "event": "dialing", "at": t(400), "direction": "outbound", "remote": lead_phone}),
            serde_json::json!({"call_id": "demo-3", "event": "answered", "at": t(406)}),
            serde_json::json!({"call_id": "demo-3", "event": "ended", "at": t(466), "outcome": "answered"}),
        ];
        let log_path = root.join("sample-calls.jsonl");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&log_path, &text)?;
        outln!("   call log: {} ({} events)", log_path.display(), lines.len());
        let events: Vec<callsync_core::event::CallEvent> = text
            .lines()
            .filter_map(|l| callsync_calllog::native::parse_line("demo", l).ok().flatten())
            .collect();
        let outbox = callsync_store::outbox::Outbox::open(&data.outbox())?;
        let setup = callsync_app::pipeline::PipelineSetup::of(&app);
        setup.pipeline(&outbox, Some(&cache), &normalizer, &rules).handle(&events)?;
        let sender = app.sender(&client, &outbox, None);
        let rep = sender.send_due().await?;
        outln!("   {} Task(s) sent\n", rep.sent);
        for task in sim.org().rows("Task") {
            let s = |k: &str| task[k].as_str().unwrap_or("-").to_owned();
            outln!("   {}  [{} {} s]  Who {}  What {}", s("Subject"), s("CallType"), task["CallDurationInSeconds"], s("WhoId"), s("WhatId"));
            if let Some(d) = task["Description"].as_str() {
                for line in d.lines() {
                    outln!("      {line}");
                }
            }
        }
        outln!();
        drop(cache);
        Ok::<_, anyhow::Error>((sim, app, (contact_phone, lead_phone), log_guard))
    })?;
    if let Some((headless, secs)) = agent {
        outln!("6. The agent: tray icon, screen pops, a Task for every call");
        let log = root.join("calls.jsonl");
        std::fs::write(&log, "")?;
        let mut app = app;
        app.config.calllog.sources = vec![callsync_calllog::SourceSpec {
            kind: "native".into(),
            path: log.display().to_string(),
            name: "demo".into(),
            csv: None,
        }];
        outln!(
            "   a call rings every 20 s (written to {}); watch the notifications and the tray menu",
            log.display()
        );
        outln!(
            "   in another terminal: callsync --data-dir {} status",
            root.display()
        );
        match secs {
            Some(s) => outln!("   the agent stops after {s} s (--agent-secs); Ctrl-C or the tray's Quit end it sooner\n"),
            None => outln!("   Ctrl-C or the tray's Quit ends the demo\n"),
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let feeder = {
            let stop = stop.clone();
            std::thread::spawn(move || demo_calls(&log, &[phones.0, phones.1], &stop))
        };
        if let Some(s) = secs {
            let (data, stop) = (app.data.clone(), stop.clone());
            std::thread::spawn(move || {
                if !demo_wait(&stop, s) {
                    return;
                }
                let req = callsync_agent::control::Request::Quit;
                let _ =
                    callsync_agent::control::call(&data, &req, std::time::Duration::from_secs(5));
            });
        }
        let r = crate::cli::run::agent(app, headless);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = feeder.join();
        r?;
        let live = sim
            .org()
            .rows("Task")
            .iter()
            .filter(|t| {
                t["CallObject"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("demo-live-"))
            })
            .count();
        outln!("   the agent wrote {live} Task(s) for the calls it saw\n");
    }
    if g.data_dir.is_some() {
        outln!("Try: callsync --data-dir {} status", root.display());
    } else {
        outln!("(the demo's temporary folder is removed now; pass --data-dir DIR to keep it)");
    }
    rt.block_on(sim.stop());
    Ok(())
}

/// Sleeps `secs` in the demo's helper threads; false as soon as the demo's agent stopped.
fn demo_wait(stop: &std::sync::atomic::AtomicBool, secs: u64) -> bool {
    for _ in 0..secs * 10 {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    true
}

/// The demo's softphone: a call every 20 s, alternately from a known Contact, an unknown
/// number and a Lead; each rings, is answered after 3 s and ends after 12 s.
fn demo_calls(log: &std::path::Path, known: &[String], stop: &std::sync::atomic::AtomicBool) {
    use std::io::Write;
    let wait = |secs: u64| demo_wait(stop, secs);
    let mut n = 0usize;
    while wait(if n == 0 { 3 } else { 8 }) {
        n += 1;
        let remote = match n % 3 {
            1 => known.first().cloned().unwrap_or_default(),
            2 => "0120-000-000".to_owned(),
            _ => known.get(1).cloned().unwrap_or_default(),
        };
        let id = format!("demo-live-{n}-{}", chrono::Utc::now().timestamp());
        let line = |event: &str, extra: &str| {
            let at = chrono::Local::now().fixed_offset().to_rfc3339();
            format!("{{\"call_id\":\"{id}\",\"event\":\"{event}\",\"at\":\"{at}\"{extra}}}\n")
        };
        let write = |s: String| {
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
                let _ = f.write_all(s.as_bytes());
            }
        };
        write(line(
            "ringing",
            &format!(",\"direction\":\"inbound\",\"remote\":\"{remote}\""),
        ));
        if !wait(3) {
            return;
        }
        write(line("answered", ""));
        if !wait(9) {
            return;
        }
        write(line("ended", ",\"outcome\":\"answered\""));
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn sim(
    opts: callsync_sim::SimOptions,
    port: u16,
    tls: Option<(Vec<u8>, Vec<u8>)>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let records = opts.records;
        let sim = match &tls {
            Some((cert, key)) => callsync_sim::Sim::start_tls(opts, port, cert, key).await,
            None => callsync_sim::Sim::start(opts, port).await,
        }
        .with_context(|| format!("cannot serve on 127.0.0.1:{port}"))?;
        let url = sim.url();
        outln!("simulated Salesforce org on {url} ({records} records); Ctrl-C stops it");
        outln!("  token:   curl -s -X POST {url}/__sim/token");
        outln!("  query:   curl -s -H \"Authorization: Bearer $TOKEN\" '{url}/services/data/v62.0/query?q=SELECT+Id,Name,Phone+FROM+Contact+LIMIT+5'");
        outln!("  state:   curl -s {url}/__sim/state");
        outln!("  faults:  curl -s -X POST {url}/__sim/faults -H 'Content-Type: application/json' -d '[{{\"kind\":\"service_unavailable\",\"times\":3}}]'");
        tokio::signal::ctrl_c().await?;
        sim.stop().await;
        Ok(())
    })
}
