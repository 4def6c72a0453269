//! `callsync errors`: the integration error log.

use crate::cli::{exit, Ctx};

pub fn run(ctx: &Ctx, json: bool) -> anyhow::Result<u8> {
    let data = ctx.data;
    let log = callsync_store::errorlog::ErrorLog::new(data.error_log());
    let entries = log.read()?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        outln!("no integration errors");
    } else {
        for e in &entries {
            let place = match (&e.file, e.line) {
                (Some(f), Some(l)) => format!("{f}:{l}"),
                (Some(f), None) => f.clone(),
                _ => e.source.clone(),
            };
            outln!("{}  [{}] {place}: {}", e.at, e.area, e.reason);
        }
    }
    Ok(exit::OK)
}
