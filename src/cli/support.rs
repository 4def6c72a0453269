//! `callsync support-bundle` and `callsync config show`.

use std::path::PathBuf;

use callsync_app::App;
use callsync_config::Layered;
use callsync_store::paths::DataDir;

use crate::cli::exit;

/// `config show --json`: every key, its value, source and lock.
fn config_json(layered: &Layered, data: &DataDir) -> serde_json::Value {
    let items: Vec<serde_json::Value> = layered
        .entries()
        .iter()
        .map(|(k, v)| {
            serde_json::json!({
                "key": k,
                "value": v,
                "source": layered.origins.get(k),
                "locked": layered.is_locked(k),
            })
        })
        .collect();
    serde_json::json!({
        "managed_file": layered.managed_file,
        "user_file": layered.user_file,
        "data_dir": data.root(),
        "warnings": layered.warnings,
        "keys": items,
    })
}

/// `callsync support-bundle`.
pub fn bundle(app: &App, layered: &Layered, output: Option<PathBuf>) -> anyhow::Result<u8> {
    use callsync_agent::control::{self, Request};
    let out = output.unwrap_or_else(|| {
        PathBuf::from(format!(
            "callsync-support-{}.zip",
            chrono::Local::now().format("%Y%m%d-%H%M%S")
        ))
    });
    let mut reports = vec![(
        "config.json",
        serde_json::to_string_pretty(&config_json(layered, &app.data))?,
    )];
    // The running agent holds the stores: its state, else the stores read directly.
    match control::call(
        &app.data,
        &Request::Status,
        std::time::Duration::from_secs(3),
    ) {
        Ok(r) => reports.push((
            "status.json",
            serde_json::to_string_pretty(&serde_json::json!({"running": true, "agent": r.state}))?,
        )),
        Err(_) => {
            let outbox = callsync_store::outbox::Outbox::open(&app.data.outbox()).ok();
            if let Ok((cache, _)) = app.open_cache() {
                let st = app.status_with(&cache, outbox.as_ref())?;
                reports.push(("status.json", serde_json::to_string_pretty(&st)?));
            }
            if let Some(outbox) = &outbox {
                reports.push((
                    "queue.json",
                    serde_json::to_string_pretty(&outbox.items()?)?,
                ));
            }
        }
    }
    let b = callsync_app::support::write(&out, &app.data, &reports)?;
    outln!(
        "{} ({} files; tokens removed, phone numbers masked): {}",
        b.path.display(),
        b.files.len(),
        b.files.join(", ")
    );
    Ok(exit::OK)
}

pub fn show_config(layered: &Layered, data: &DataDir, json: bool) -> anyhow::Result<()> {
    let entries = layered.entries();
    if json {
        let out = config_json(layered, data);
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let show_path = |p: &Option<PathBuf>, fallback: Option<PathBuf>| match (p, fallback) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(f)) => format!("{} (not present)", f.display()),
        (None, None) => "(none)".into(),
    };
    outln!(
        "# managed file: {}",
        show_path(
            &layered.managed_file,
            callsync_config::default_managed_file()
        )
    );
    outln!(
        "# user file:    {}",
        show_path(
            &layered.user_file,
            callsync_store::paths::default_user_config()
        )
    );
    outln!("# data dir:     {}", data.root().display());
    for w in &layered.warnings {
        outln!("# warning: {w}");
    }
    let width = entries
        .iter()
        .map(|(k, v)| k.len() + v.to_string().len())
        .max()
        .unwrap_or(0);
    for (k, v) in &entries {
        let source = layered
            .origins
            .get(k)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let lock = if layered.is_locked(k) {
            " [locked]"
        } else {
            ""
        };
        let pad = width.saturating_sub(k.len() + v.to_string().len());
        outln!("{k} = {v}{:pad$}  # {source}{lock}", "");
    }
    Ok(())
}
