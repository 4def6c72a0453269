//! `callsync doctor`: every check, and how to fix what fails.

use crate::cli::{exit, runtime, Ctx};

pub fn run(ctx: &Ctx, json: bool) -> anyhow::Result<u8> {
    let app = &ctx.app;
    let checks = runtime()?.block_on(callsync_app::doctor::run(app));
    let ok = checks.iter().all(|c| c.ok);
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"ok": ok, "checks": checks}))?
        );
    } else {
        for c in &checks {
            outln!(
                "{} {:<20} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(f) = &c.fix {
                outln!("     {:<20} fix: {f}", "");
            }
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILURE })
}
