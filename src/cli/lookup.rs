//! `callsync lookup NUMBER`: who a number is, from the cache (the running agent's if it holds it).

use callsync_agent::control::Request;
use callsync_core::lookup::{LookupResult, Match};
use callsync_store::cache::CacheError;
use callsync_store::lookup::LookupError;

use crate::cli::{exit, from_agent, opened, Ctx};

pub fn run(ctx: &Ctx, number: String, json: bool) -> anyhow::Result<u8> {
    let (cfg, app, data) = (&ctx.layered.config, &ctx.app, ctx.data);
    if !cfg.sync.contact_retrieval {
        eprintln!("callsync: contact retrieval is off (sync.contact_retrieval = false): callers are not identified");
        return Ok(exit::NO_MATCH);
    }
    let normalizer = cfg.normalizer()?;
    if let Err(e) = normalizer.key(&number) {
        eprintln!("callsync: {e}");
        return Ok(exit::USAGE);
    }
    // The running agent holds the cache: it answers.
    let (result, stats) = match app.open_cache() {
        Err(e @ CacheError::Locked(_)) => {
            let r: LookupResult = from_agent(
                app,
                Request::Lookup {
                    number: number.clone(),
                },
                e,
            )?;
            let busy = CacheError::Locked(data.cache());
            (r, from_agent(app, Request::CacheStats, busy)?)
        }
        Err(e) => return Err(e.into()),
        Ok(c) => {
            let cache = opened(c);
            match callsync_store::lookup::lookup(&cache, &normalizer, &cfg.lookup_rules(), &number)
            {
                Ok(r) => (r, cache.stats()?),
                Err(LookupError::Number(e)) => {
                    eprintln!("callsync: {e}");
                    return Ok(exit::USAGE);
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    tracing::info!(
        number = %callsync_core::phone::Masked(&number),
        found = result.best.is_some(),
        matches = result.others.len() + usize::from(result.best.is_some()),
        "lookup"
    );
    if json {
        outln!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        let empty = stats.records.values().all(|n| *n == 0);
        print_lookup(&result, empty);
    }
    Ok(if result.best.is_some() {
        exit::OK
    } else {
        exit::NO_MATCH
    })
}

fn describe(m: &Match) -> String {
    let when = chrono::DateTime::from_timestamp_millis(m.last_modified)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    format!(
        "{:<15} {}   [{} {}, {}, modified {}]",
        m.kind_label(),
        m.display.one_line(),
        m.kind,
        m.id,
        m.field,
        when
    )
}

pub fn print_lookup(r: &LookupResult, cache_empty: bool) {
    let ext = r
        .extension
        .as_deref()
        .map(|e| format!(" ext. {e}"))
        .unwrap_or_default();
    outln!("{} → {}{ext}", r.input, r.key.display());
    match &r.best {
        Some(m) => {
            outln!("  {}", describe(m));
            if let Some(at) = r
                .chosen_at
                .and_then(chrono::DateTime::from_timestamp_millis)
            {
                outln!(
                    "  chosen by the agent on {} (beats the lookup rule for this number)",
                    at.format("%Y-%m-%d")
                );
            }
            if !r.others.is_empty() {
                outln!("  also on {} other record(s):", r.others.len());
                for o in &r.others {
                    outln!("    {}", describe(o));
                }
            }
        }
        None if cache_empty => {
            outln!("  no match: the cache is empty (run `callsync cache import FILE` or sync)")
        }
        None => outln!("  no match: unknown caller"),
    }
}
