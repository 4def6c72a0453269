//! `callsync auth history`: every sign-in.

use crate::cli::{exit, Ctx};

pub fn history(ctx: &Ctx, json: bool) -> anyhow::Result<u8> {
    let app = &ctx.app;
    let h = callsync_salesforce::auth::read_history(&app.history_file())?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&h)?);
    } else if h.is_empty() {
        outln!("no sign-ins yet");
    } else {
        for e in h {
            outln!(
                "{}  org {}  user {} ({})  {}  [{}]",
                e.at,
                e.org_id,
                e.user_id,
                e.username,
                e.instance_url,
                e.method
            );
        }
    }
    Ok(exit::OK)
}
