//! `callsync queue [retry]`: the Task queue (the running agent's if it holds it).

use callsync_agent::control::Request;

use crate::cli::args::QueueCmd;
use crate::cli::{exit, from_agent, Ctx};

pub fn run(ctx: &Ctx, cmd: Option<QueueCmd>, json: bool) -> anyhow::Result<u8> {
    let (app, data) = (&ctx.app, ctx.data);
    // The running agent holds the queue: it answers.
    let outbox = match callsync_store::outbox::Outbox::open(&data.outbox()) {
        Ok(o) => Some(o),
        Err(callsync_store::outbox::OutboxError::Locked(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let busy = || callsync_store::outbox::OutboxError::Locked(data.outbox());
    match cmd {
        Some(QueueCmd::Retry { id, all }) => {
            if id.is_none() && !all {
                eprintln!("callsync: name an item (callsync queue retry ID) or pass --all");
                return Ok(exit::USAGE);
            }
            let n = match &outbox {
                Some(o) => o.retry(id)?,
                None => from_agent::<serde_json::Value>(app, Request::QueueRetry { id }, busy())?
                    ["retried"]
                    .as_u64()
                    .unwrap_or(0) as usize,
            };
            outln!("{n} parked item(s) will be sent again");
        }
        None => {
            let items: Vec<callsync_store::outbox::Item> = match &outbox {
                Some(o) => o.items()?,
                None => from_agent(app, Request::Queue, busy())?,
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&items)?);
            } else if items.is_empty() {
                outln!("nothing waiting: every call is in Salesforce");
            } else {
                for i in &items {
                    let state = match &i.state {
                        callsync_store::outbox::State::Pending => format!(
                            "pending, {} attempt(s){}",
                            i.attempts,
                            i.last_error
                                .as_deref()
                                .map(|e| format!(", last: {e}"))
                                .unwrap_or_default()
                        ),
                        callsync_store::outbox::State::Parked {
                            explanation, fix, ..
                        } => format!("PARKED: {explanation}\n      fix: {fix}"),
                    };
                    // What the item is for: a call's Task, a meeting's Event, or the record
                    // made for an unknown caller's number.
                    let what = match i.object {
                        callsync_store::outbox::SObject::Task => format!("call {}", i.call_id),
                        callsync_store::outbox::SObject::Event => format!("meeting {}", i.call_id),
                        other => format!("{} for {}", other.api_name(), i.call_id),
                    };
                    outln!(
                        "{:>6}  {:?} {what}  queued {}  {state}",
                        i.seq,
                        i.op,
                        i.queued_at
                    );
                }
                let parked = items
                    .iter()
                    .filter(|i| matches!(i.state, callsync_store::outbox::State::Parked { .. }))
                    .count();
                outln!("{} pending, {parked} parked", items.len() - parked);
            }
        }
    }
    Ok(exit::OK)
}
