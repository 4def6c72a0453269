//! `callsync sync [--full | --watch]`: bringing the cache up to date.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use callsync_app::App;
use callsync_core::wire::SfError;

use crate::cli::{exit, open_cache, sf_exit, signed_in_client};

pub async fn now(app: &App, full: bool) -> anyhow::Result<u8> {
    let client = match signed_in_client(app) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let cache = open_cache(app)?;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:8} [{bar:30}] {pos}/{len} records ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut progress = |kind: callsync_core::record::ObjectKind, done: u64, total: u64| {
        bar.set_message(kind.api_name());
        bar.set_length(total);
        bar.set_position(done);
    };
    let t = std::time::Instant::now();
    let result = app.sync(&cache, &client, full, &mut progress).await;
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            let what = if r.full.is_empty() {
                "incremental".to_owned()
            } else {
                format!("full load of {}", r.full.join(", "))
            };
            outln!(
                "synced in {:.1} s ({what}): {} records updated, {} removed, {} API calls",
                t.elapsed().as_secs_f64(),
                r.upserted,
                r.deleted,
                r.api_calls
            );
            if let Some((used, max)) = client.api_usage() {
                outln!(
                    "org API usage: {used} of {max} daily calls ({:.1} %)",
                    used as f64 * 100.0 / max.max(1) as f64
                );
            }
            Ok(exit::OK)
        }
        Err(callsync_salesforce::sync::SyncError::Salesforce(e)) => {
            eprintln!("callsync: sync failed: {e}");
            if let Some((_, fix)) = callsync_salesforce::sync::explain(
                &callsync_salesforce::sync::SyncError::Salesforce(e.clone()),
            ) {
                eprintln!("fix: {fix}");
            }
            if matches!(e, SfError::SignInNeeded { .. }) {
                eprintln!("run `callsync connect` to sign in again; the cache is kept and still answers lookups");
            } else if e.is_rate_limited() {
                eprintln!("the org's daily API limit is used up; callsync will try again later");
            }
            Ok(sf_exit(&e))
        }
        Err(e) => Err(e.into()),
    }
}

/// Syncs on the adaptive schedule until Ctrl-C; failures back off and never stop the loop
/// (except a sign-in that must be renewed).
pub async fn watch(app: &App) -> anyhow::Result<u8> {
    let client = match signed_in_client(app) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let cache = open_cache(app)?;
    let mut pacing = callsync_app::app::Pacing::new(&app.config.sync);
    loop {
        let r = app.sync(&cache, &client, false, &mut |_, _, _| {}).await;
        match &r {
            Ok(r) => {
                tracing::info!(
                    upserted = r.upserted,
                    deleted = r.deleted,
                    api_calls = r.api_calls,
                    "sync"
                );
                outln!(
                    "{} synced: {} updated, {} removed, {} API call(s)",
                    chrono::Local::now().format("%H:%M:%S"),
                    r.upserted,
                    r.deleted,
                    r.api_calls
                );
            }
            Err(callsync_salesforce::sync::SyncError::Salesforce(e)) if !e.is_retryable() => {
                eprintln!("callsync: {e}");
                return Ok(sf_exit(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync failed; backing off");
                eprintln!("callsync: sync failed ({e}); retrying later");
            }
        }
        pacing.synced(Some((r.as_ref().map(|_| ()), &client)));
        // No call log here: neither calls nor idleness are known.
        tokio::select! {
            _ = tokio::time::sleep(pacing.delay(false, false)) => {}
            _ = tokio::signal::ctrl_c() => {
                cache.flush()?;
                outln!("stopped");
                return Ok(exit::OK);
            }
        }
    }
}
