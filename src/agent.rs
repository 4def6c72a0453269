//! The headless core of the agent: one process that follows the call logs, turns calls into
//! Tasks in the outbox, sends them, and keeps the cache in sync. The tray (a later stage) is a
//! thin shell over this; servers and CI run it as is (`callsync run --headless`).
//!
//! Threads and tasks: the call-log follower and the pipeline run on their own threads (file
//! and sled work), acknowledging a batch only once its Task writes are durable; sending and
//! syncing are tokio tasks. A stop (signal) ends the loops, flushes the stores and returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::app::App;
use crate::calllog::cursor::CursorStore;
use crate::calllog::watch::{self, Follower, Waker};
use crate::errorlog::ErrorLog;
use crate::outbox::{Outbox, Sender};
use crate::pipeline::Pipeline;
use crate::schedule::{next_delay, Activity, ScheduleInput};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Puts a network problem (certificate, proxy, unreachable) in the integration error log once
/// per distinct problem, not once per retry.
fn note_network(errors: &ErrorLog, last: &mut Option<String>, area: &str, msg: &str) {
    // The part before the technical detail identifies the problem.
    let key = msg.split(" (").next().unwrap_or(msg).to_owned();
    if last.as_deref() == Some(key.as_str()) {
        return;
    }
    *last = Some(key);
    let _ = errors.append(&crate::errorlog::ErrorEntry::now(
        "network",
        area,
        format!("{msg}; callsync keeps retrying and nothing is lost"),
    ));
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error("{0}")]
    Setup(String),
}

fn sources(app: &App) -> Result<Vec<Box<dyn crate::calllog::Source>>, AgentError> {
    app.config
        .calllog
        .sources
        .iter()
        .map(|s| s.open().map_err(AgentError::Setup))
        .collect()
}

/// Runs until `stop` completes.
pub async fn run_headless(app: App, stop: impl Future<Output = ()>) -> Result<(), AgentError> {
    let (cache, _) = app.open_cache()?;
    let cache = Arc::new(cache);
    let outbox = Arc::new(Outbox::open(&app.data.outbox())?);
    let errors = Arc::new(ErrorLog::new(app.data.error_log()));
    let normalizer = app
        .config
        .normalizer()
        .map_err(|e| AgentError::Setup(e.to_string()))?;
    let send_now = Arc::new(Notify::new());
    let activity = Arc::new(Activity::new(now_ms()));
    let calls_resumed = Arc::new(Notify::new());
    let me = app.auth_store().load().ok().flatten().map(|a| a.user_id);

    // Call logs → pipeline → outbox, on threads.
    let follower = Follower::new(
        sources(&app)?,
        CursorStore::new(app.data.root().join("calllog").join("agent-cursors.json")),
    )
    .map_err(|e| AgentError::Setup(format!("call-log positions: {e}")))?;
    let waker = Waker::new(follower.dirs(), Duration::from_millis(20))
        .map_err(|e| AgentError::Setup(format!("cannot watch the call logs: {e}")))?;
    let (deliveries, _follow) = watch::spawn(
        follower,
        waker,
        Duration::from_secs(app.config.calllog.poll_secs),
    )
    .map_err(|e| AgentError::Setup(e.to_string()))?;
    let pipe = {
        let (cache, outbox, errors, send_now, activity, calls_resumed) = (
            cache.clone(),
            outbox.clone(),
            errors.clone(),
            send_now.clone(),
            activity.clone(),
            calls_resumed.clone(),
        );
        let rules = app.config.lookup_rules();
        let settings = app.config.activity.settings();
        let assignees = app.config.activity.assignees(me.as_deref());
        let enabled = app.config.activity.enabled;
        let normalizer = normalizer.clone();
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || {
                let p = Pipeline {
                    outbox: &outbox,
                    cache: Some(&cache),
                    normalizer: &normalizer,
                    rules: &rules,
                    settings: &settings,
                    assignees: &assignees,
                };
                for d in deliveries {
                    for prob in &d.batch.problems {
                        let _ = errors.calllog(prob);
                    }
                    if enabled {
                        if let Err(e) = p.handle(&d.batch.events) {
                            // Not acknowledged: the batch comes again after a restart.
                            tracing::error!(error = %e, "cannot queue Tasks; the call-log position is kept");
                            continue;
                        }
                    }
                    if !d.batch.events.is_empty() && activity.note_call(now_ms()) {
                        calls_resumed.notify_one();
                    }
                    d.ack();
                    send_now.notify_one();
                }
            })
            .map_err(|e| AgentError::Setup(e.to_string()))?
    };

    // Sending.
    let sender_task = {
        let (outbox, errors, send_now) = (outbox.clone(), errors.clone(), send_now.clone());
        let app = app.clone();
        let interval = Duration::from_secs(app.config.activity.send_interval_secs);
        let ext = app.config.activity.external_id();
        tokio::spawn(async move {
            let mut client = None;
            let mut last_net: Option<String> = None;
            loop {
                if client.is_none() {
                    client = app.client().ok();
                }
                if let Some(c) = &client {
                    let sender = Sender {
                        client: c,
                        outbox: &outbox,
                        external_id: ext.clone(),
                        errors: Some(&errors),
                    };
                    let result = sender.send_due().await;
                    if let Ok(r) = &result {
                        match &r.last_error {
                            Some(e) => note_network(&errors, &mut last_net, "sending Tasks", e),
                            None if r.sent > 0 => last_net = None,
                            None => {}
                        }
                    }
                    match result {
                        Ok(r) if r.sent + r.parked > 0 => {
                            tracing::info!(
                                sent = r.sent,
                                parked = r.parked,
                                later = r.retried_later,
                                "Tasks sent"
                            );
                        }
                        Ok(r) if r.stopped.as_deref().is_some_and(|s| s.contains("sign-in")) => {
                            // Re-read the sign-in next time (`callsync connect` may have run).
                            client = None;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "outbox"),
                    }
                }
                tokio::select! {
                    _ = send_now.notified() => {}
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        })
    };

    // Syncing.
    let sync_task = {
        let cache = cache.clone();
        let errors = errors.clone();
        let app = app.clone();
        let (activity, calls_resumed) = (activity.clone(), calls_resumed.clone());
        tokio::spawn(async move {
            let mut failures = 0u32;
            let mut last_net: Option<String> = None;
            let mut rng = fastrand::Rng::new();
            loop {
                let mut rate_limited = false;
                let mut api_share = None;
                match app.client() {
                    Ok(client) => {
                        match app.sync(&cache, &client, false, &mut |_, _, _| {}).await {
                            Ok(_) => {
                                failures = 0;
                                last_net = None;
                            }
                            Err(e) => {
                                failures += 1;
                                if let crate::sync::SyncError::Salesforce(
                                    crate::salesforce::SfError::Network(m),
                                ) = &e
                                {
                                    note_network(&errors, &mut last_net, "sync", m);
                                }
                                rate_limited = matches!(&e, crate::sync::SyncError::Salesforce(s) if s.is_rate_limited());
                                tracing::warn!(error = %e, "sync failed");
                            }
                        }
                        api_share = client.api_usage().map(|(u, m)| u as f64 / m.max(1) as f64);
                    }
                    Err(_) => failures = failures.max(1),
                }
                let synced = tokio::time::Instant::now();
                let jitter = rng.f64();
                let plan = || {
                    let (calls_flowing, idle) = activity.state(now_ms());
                    next_delay(ScheduleInput {
                        calls_flowing,
                        idle,
                        api_share,
                        failures,
                        rate_limited,
                        jitter,
                        ..ScheduleInput::from_config(&app.config.sync)
                    })
                };
                // Calls resuming after a quiet (or idle) spell shorten the wait already begun.
                let mut until = synced + plan();
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        _ = calls_resumed.notified() => until = until.min(synced + plan()),
                    }
                }
            }
        })
    };

    tracing::info!("agent running (headless)");
    stop.await;
    tracing::info!("agent stopping");
    sender_task.abort();
    sync_task.abort();
    // Queued work is on disk already; make the last writes durable.
    outbox.flush()?;
    cache.flush()?;
    drop(pipe);
    Ok(())
}
