//! `callsync status`: the running agent's state, or the stores' when none runs.

use callsync_app::App;

use crate::cli::{exit, open_cache};

pub fn run(app: &App, json: bool) -> anyhow::Result<u8> {
    use callsync_agent::control::{self, Request};
    // The running agent holds the stores: ask it first.
    if let Ok(r) = control::call(
        &app.data,
        &Request::Status,
        std::time::Duration::from_secs(3),
    ) {
        if let Some(st) = r.state {
            return agent_status(app, &st, json);
        }
    }
    let cache = open_cache(app)?;
    let st = app.status(&cache)?;
    if json {
        let mut v = serde_json::to_value(&st)?;
        v["running"] = serde_json::Value::Bool(false);
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(exit::OK);
    }
    outln!("agent: not running");
    match &st.signed_in {
        Some(s) => outln!(
            "signed in: {} ({}) in org {} at {} since {} [{}]",
            s.username,
            s.user_id,
            s.org_id,
            s.instance_url,
            s.since,
            s.method
        ),
        None => outln!("not signed in: run `callsync connect`"),
    }
    if !st.contact_retrieval {
        outln!("contact retrieval is off");
    }
    for o in &st.records {
        outln!(
            "  {:<8} {:>9} records   last sync {}{}",
            o.object,
            o.records,
            o.last_sync.as_deref().unwrap_or("never"),
            if o.load_in_progress {
                "  (full load interrupted; resumes at next sync)"
            } else {
                ""
            }
        );
    }
    outln!("  numbers  {:>9} index entries", st.index_entries);
    match (st.pending_tasks, st.parked_tasks) {
        (Some(p), Some(k)) => {
            outln!("  pending  {p:>9} Tasks to send, {k} parked (callsync queue)")
        }
        _ => outln!("  pending  {:>9} (the running agent holds the queue)", "?"),
    }
    if let Some(u) = st.api_usage {
        outln!(
            "  org API usage at last sync: {} of {} daily calls",
            u.used,
            u.max
        );
    }
    Ok(exit::OK)
}

fn agent_status(
    app: &App,
    st: &callsync_core::state::AgentState,
    json: bool,
) -> anyhow::Result<u8> {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"running": true, "agent": st}))?
        );
        return Ok(exit::OK);
    }
    let lang = app.config.ui.lang();
    let v = callsync_core::state::view(st, lang, chrono::Utc::now().timestamp_millis());
    outln!("agent: running (pid {}), {}", st.pid, v.health.name());
    outln!("  {}", v.status);
    if let (Some(u), Some(o)) = (&st.user, &st.org_id) {
        outln!(
            "  signed in as {u} in org {o} at {}",
            st.instance_url.as_deref().unwrap_or("")
        );
    }
    outln!("  {}", v.records);
    outln!("  {}", v.pending);
    if let Some(why) = &st.paused {
        outln!("  sending paused: {why}");
    }
    if let Some(why) = &st.offline {
        outln!("  offline: {why}");
    }
    outln!(
        "  {} ({} since the agent started; `callsync errors` lists them)",
        v.errors_label,
        st.new_errors
    );
    for line in &v.errors {
        outln!("    {line}");
    }
    Ok(exit::OK)
}
