//! `callsync calls tail|import|pick`: a call log's events, live or from a file; the record a call
//! goes on.

use callsync_app::App;
use callsync_store::paths::DataDir;

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::{exit, runtime};

/// One line for a person.
fn describe_event(
    e: &callsync_core::event::CallEvent,
    call_type: Option<callsync_core::event::CallType>,
) -> String {
    use callsync_core::event::EventKind;
    let who = e
        .info
        .as_ref()
        .map(|i| {
            format!(
                " {:?} {}",
                i.direction,
                callsync_core::phone::Masked(&i.remote)
            )
            .to_lowercase()
        })
        .unwrap_or_default();
    let detail = match &e.kind {
        EventKind::Ended {
            outcome,
            duration_s,
        } => format!(
            " {outcome:?}{}{}",
            duration_s.map(|d| format!(", {d} s")).unwrap_or_default(),
            call_type
                .map(|t| format!(
                    " → {t:?}{}",
                    if t.is_integrated() {
                        ""
                    } else {
                        " (not integrated)"
                    }
                ))
                .unwrap_or_default()
        ),
        EventKind::Transferred { kind, to } => {
            format!(" {kind:?} to {}", callsync_core::phone::Masked(to))
        }
        EventKind::Memo {
            items,
            comment,
            edited,
        } => format!(
            " {items:?} {}{}",
            comment.clone().unwrap_or_default(),
            if *edited { " (edited)" } else { "" }
        ),
        EventKind::Speech { summary, .. } => format!(" summary: {summary}"),
        _ => String::new(),
    };
    format!(
        "{} {:<8} {:<12} {:<11}{who}{detail}",
        e.at.format("%Y-%m-%d %H:%M:%S%:z"),
        e.source,
        e.call_id,
        e.kind.name()
    )
}

pub fn tail(app: &App, overrides: &[String], json: bool, from_start: bool) -> anyhow::Result<u8> {
    use callsync_core::event::{classify, CallInfo, Direction, EventKind, TransferKind};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let sources = if overrides.is_empty() {
        app.call_logs().map_err(anyhow::Error::msg)?
    } else {
        let mut sources = Vec::new();
        for o in overrides {
            let (kind, path) = o.split_once('=').context("--source takes KIND=PATH")?;
            sources.push(
                callsync_calllog::open_source(kind, kind, PathBuf::from(path), None)
                    .map_err(anyhow::Error::msg)?,
            );
        }
        sources
    };
    if sources.is_empty() {
        eprintln!("callsync: no call logs configured: add [calllog] sources (see `callsync config example`) or pass --source KIND=PATH");
        return Ok(exit::USAGE);
    }
    const CURSORS: &str = "tail-cursors.json";
    if from_start {
        let _ = std::fs::remove_file(app.data.root().join("calllog").join(CURSORS));
    }
    let (deliveries, _follow) = app.follow_calls(sources, CURSORS)?;
    let errors = callsync_store::errorlog::ErrorLog::new(app.data.error_log());
    // Screen pops come from the cache when it is free (the agent may hold it).
    let cache = app.open_cache().ok().map(|(c, _)| c);
    let normalizer = app.config.normalizer()?;
    let rules = app.config.lookup_rules();
    let lang = app.config.ui.lang();

    let stop = Arc::new(AtomicBool::new(false));
    let rt = runtime()?;
    {
        let stop = stop.clone();
        rt.spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut calls: HashMap<String, (CallInfo, Option<TransferKind>)> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        let d = match deliveries.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(d) => d,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        for p in &d.batch.problems {
            eprintln!(
                "callsync: {}{}: {}",
                p.file,
                p.line.map(|l| format!(":{l}")).unwrap_or_default(),
                p.reason
            );
        }
        let _ = errors.calllog_batch(&d.batch.problems);
        for e in &d.batch.events {
            if let Some(i) = &e.info {
                calls
                    .entry(e.call_id.clone())
                    .or_insert_with(|| (i.clone(), None));
            }
            if let EventKind::Transferred { kind, .. } = &e.kind {
                if let Some(c) = calls.get_mut(&e.call_id) {
                    c.1 = Some(*kind);
                }
            }
            let call_type = match &e.kind {
                EventKind::Ended { outcome, .. } => calls
                    .get(&e.call_id)
                    .map(|(i, t)| classify(i.direction, *outcome, *t)),
                _ => None,
            };
            if json {
                outln!("{}", serde_json::to_string(e)?);
                continue;
            }
            outln!("{}", describe_event(e, call_type));
            // The agent's screen pop for this call, as text (every inbound ring: a tail shows
            // history too, so no freshness rule).
            let ringing_in = matches!(e.kind, EventKind::Ringing)
                && calls
                    .get(&e.call_id)
                    .is_some_and(|(i, _)| i.direction == Direction::Inbound);
            if let (true, Some((info, _))) = (ringing_in, calls.get(&e.call_id)) {
                let found = cache.as_ref().and_then(|c| {
                    callsync_store::lookup::lookup(c, &normalizer, &rules, &info.remote).ok()
                });
                match found {
                    Some(r) => {
                        let p = callsync_core::pop::content(
                            &e.call_id,
                            &r,
                            lang,
                            &app.config.phone.default_region,
                            None,
                        );
                        outln!("    screen pop: {} · {}", p.summary, p.body.replace('\n', " · "));
                    }
                    None => outln!(
                        "    screen pop: {} (the cache is in use: `callsync lookup` asks the agent)",
                        callsync_core::phone::Masked(&info.remote)
                    ),
                }
            }
        }
        d.ack();
    }
    outln!("stopped");
    Ok(exit::OK)
}

pub fn import(
    data: &DataDir,
    file: &std::path::Path,
    format: &str,
    json: bool,
) -> anyhow::Result<u8> {
    if !file.exists() {
        eprintln!("callsync: cannot read {}: no such file", file.display());
        return Ok(exit::FAILURE);
    }
    let mut src = callsync_calllog::open_source(format, format, file.to_owned(), None)
        .map_err(anyhow::Error::msg)?;
    let p = src.read_whole();
    let errors = callsync_store::errorlog::ErrorLog::new(data.error_log());
    for e in &p.events {
        if json {
            outln!("{}", serde_json::to_string(e)?);
        } else {
            outln!("{}", describe_event(e, None));
        }
    }
    {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        for pr in &p.problems {
            let _ = writeln!(
                err,
                "{}{}: {}",
                pr.file,
                pr.line.map(|l| format!(":{l}")).unwrap_or_default(),
                pr.reason
            );
        }
    }
    let _ = errors.calllog_batch(&p.problems);
    if !json {
        outln!("{} events; {} problem(s)", p.events.len(), p.problems.len());
    }
    Ok(if p.problems.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

/// `callsync calls pick CALL_ID RECORD_ID`: the running agent does it (it holds the stores and
/// ticks the tray's menu), else this process with the same rule.
pub fn pick(app: &App, call_id: &str, record_id: &str, json: bool) -> anyhow::Result<u8> {
    use callsync_agent::control::Request;
    use callsync_store::outbox::{Outbox, OutboxError};
    let here = match Outbox::open(&app.data.outbox()) {
        Ok(o) => Some(o),
        Err(OutboxError::Locked(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let picked: serde_json::Value = match here {
        Some(outbox) => {
            let cache = crate::cli::open_cache(app)?;
            let normalizer = app.config.normalizer()?;
            let rules = app.config.lookup_rules();
            let stores = callsync_app::pick::Stores {
                outbox: &outbox,
                cache: &cache,
                normalizer: &normalizer,
                rules: &rules,
            };
            let now = chrono::Utc::now().timestamp_millis();
            serde_json::to_value(stores.pick(call_id, record_id, now)?)?
        }
        None => crate::cli::from_agent(
            app,
            Request::Pick {
                call_id: call_id.into(),
                record_id: record_id.into(),
            },
            OutboxError::Locked(app.data.outbox()),
        )?,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&picked)?);
        return Ok(exit::OK);
    }
    let m: callsync_core::lookup::Match = serde_json::from_value(picked["record"].clone())?;
    outln!(
        "call {call_id}: {} {}",
        m.id.as_str(),
        callsync_core::pop::match_label(&m)
    );
    outln!(
        "{}",
        match picked["task"].as_str() {
            Some("updated") => "its Task's WhoId/WhatId update is queued",
            _ => "its Task will be written on this record",
        }
    );
    if picked["remembered"] == true {
        outln!(
            "the next calls from this number go to it too (for {} days, or until it no longer has the number)",
            app.config.lookup.remember_choice_days
        );
    }
    Ok(exit::OK)
}
