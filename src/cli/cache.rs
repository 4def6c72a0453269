//! `callsync cache stats|import|clear|rebuild`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use callsync_agent::control::Request;
use callsync_store::cache::CacheError;
use callsync_store::import;

use crate::cli::{exit, from_agent, open_cache, opened, Ctx};

pub fn stats(ctx: &Ctx, json: bool) -> anyhow::Result<u8> {
    let (app, data) = (&ctx.app, ctx.data);
    let stats: callsync_store::cache::CacheStats = match app.open_cache() {
        Err(e @ CacheError::Locked(_)) => from_agent(app, Request::CacheStats, e)?,
        Err(e) => return Err(e.into()),
        Ok(c) => opened(c).stats()?,
    };
    if json {
        let mut v = serde_json::to_value(&stats)?;
        v["path"] = serde_json::Value::String(data.cache().display().to_string());
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!("cache: {}", data.cache().display());
        for (kind, n) in &stats.records {
            outln!("  {kind:<8} {n:>10}");
        }
        outln!("  numbers  {:>10} index entries", stats.index_entries);
        outln!(
            "  disk     {:>10.1} MiB",
            stats.size_on_disk as f64 / 1048576.0
        );
        if stats.needs_full_sync {
            outln!("  a full sync is needed (the cache was repaired)");
        }
    }
    Ok(exit::OK)
}

pub fn import(ctx: &Ctx, file: PathBuf) -> anyhow::Result<u8> {
    let (cfg, app) = (&ctx.layered.config, &ctx.app);
    let normalizer = cfg.normalizer()?;
    let cache = open_cache(app)?;
    let total = std::fs::metadata(&file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} importing [{bar:30}] {bytes}/{total_bytes} ({eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let report = import::import_jsonl(&file, &cache, &normalizer, &cfg.lookup_rules(), |b| {
        bar.set_position(b)
    })?;
    bar.finish_and_clear();
    cache.flush()?;
    // Reopened once: sled replays the log written since it was opened at the next open
    // (~290 ms after a 1M-record import), and the next open is the agent's start.
    drop(cache);
    drop(open_cache(app)?);
    for r in &report.rejected {
        eprintln!("{}:{}: {}", file.display(), r.line, r.reason);
    }
    if report.rejected_total > report.rejected.len() {
        eprintln!(
            "… and {} more rejected lines",
            report.rejected_total - report.rejected.len()
        );
    }
    outln!(
        "imported {} records from {} lines of {}; {} line(s) rejected; {} phone value(s) were no number and are not matched",
        report.imported,
        report.lines,
        file.display(),
        report.rejected_total,
        report.unusable_numbers
    );
    tracing::info!(
        imported = report.imported,
        rejected = report.rejected_total,
        file = %file.display(),
        "cache import"
    );
    Ok(if report.rejected_total > 0 {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

pub fn clear(ctx: &Ctx) -> anyhow::Result<u8> {
    let (app, data) = (&ctx.app, ctx.data);
    let cache = open_cache(app)?;
    let before: u64 = cache.stats()?.records.values().sum();
    cache.clear()?;
    outln!(
        "cleared {before} cached records from {}",
        data.cache().display()
    );
    Ok(exit::OK)
}

pub fn rebuild(ctx: &Ctx) -> anyhow::Result<u8> {
    let cache = open_cache(&ctx.app)?;
    let records: u64 = cache.stats()?.records.values().sum();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_message(format!("building the phone index of {records} records"));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let t = std::time::Instant::now();
    cache.reindex()?;
    bar.finish_and_clear();
    let stats = cache.stats()?;
    outln!(
        "phone index rebuilt: {} entries from {records} records in {:.1} s",
        stats.index_entries,
        t.elapsed().as_secs_f64()
    );
    Ok(exit::OK)
}
