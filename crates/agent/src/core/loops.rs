//! The core's two loops: sending the outbox whenever something is queued, and syncing the
//! cache on the adaptive schedule. Both publish what they see (offline, failing, sent).

use super::*;

impl Core {
    /// Sends what is due whenever something is queued (no polling while nothing is).
    pub(super) async fn sender_loop(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.app.config.activity.send_interval_secs);
        let mut last_net: Option<String> = None;
        while !*stopping.borrow() {
            let client = self.client();
            if let Some(c) = &client {
                let mut sender = self.app.sender(c, &self.outbox, Some(&self.errors));
                sender.awaiting_refresh = self.miss_gate.awaiting_numbers();
                match sender.send_due().await {
                    Ok(r) => self.sent(&r, &mut last_net),
                    Err(e) => tracing::error!(error = %e, "outbox"),
                }
            }
            // Nothing queued: sleep until the pipeline queues something (no polling); the long
            // backstop only re-reads a sign-in made by `callsync connect`.
            let nap = if client.is_some() && self.report.tx.borrow().pending > 0 {
                interval
            } else {
                IDLE_SEND_CHECK
            };
            tokio::select! {
                _ = self.send_now.notified() => {}
                _ = stopping.changed() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// What a send pass did, into the state and the error log.
    pub(super) fn sent(
        &self,
        r: &callsync_salesforce::writer::SendReport,
        last_net: &mut Option<String>,
    ) {
        match &r.last_error {
            Some(e) => note_network(&self.errors, last_net, "sending Tasks", e),
            None if r.sent > 0 => *last_net = None,
            None => {}
        }
        let signed_out = r.stopped.as_deref().is_some_and(|s| s.contains("sign-in"));
        if signed_out {
            self.session.reset();
        }
        self.report.update(|s| {
            if r.last_error.is_some() || r.sent > 0 {
                s.offline = r.last_error.clone();
            }
            if r.sent > 0 {
                s.sign_in_needed = false;
            }
            if signed_out {
                s.sign_in_needed = true;
            }
        });
        if r.sent + r.parked > 0 {
            tracing::info!(
                sent = r.sent,
                parked = r.parked,
                later = r.retried_later,
                "Tasks sent"
            );
            // Only then did the counts change (a scan of the queue).
            self.report.queue();
        }
        if r.parked > 0 || r.last_error.is_some() {
            self.report.errors();
        }
        if r.created_records > 0 {
            // Records made for unknown callers: into the cache with the next cycle, now.
            self.sync_now.notify_one();
        }
    }

    /// Syncs on the adaptive schedule; every failure shows in the state and, once per distinct
    /// cause, in the error log with its fix; a good cycle clears it.
    pub(super) async fn sync_loop(self: Arc<Self>) {
        let mut pacing = Pacing::new(&self.app.config.sync);
        let mut last_net: Option<String> = None;
        let mut last_cause: Option<String> = None;
        loop {
            self.cycles.send_modify(|c| c.started += 1);
            let mut ok = false;
            match self.client() {
                Some(client) => {
                    let report = &self.report;
                    let r = self
                        .app
                        .sync(&self.cache, &client, false, &mut |_, done, total| {
                            let pct = (done * 100).checked_div(total).unwrap_or(0).min(99);
                            report.update(|s| s.syncing = Some(pct as u8));
                        })
                        .await;
                    self.report.update(|s| s.syncing = None);
                    ok = r.is_ok();
                    match &r {
                        Ok(_) => {
                            last_net = None;
                            last_cause = None;
                            self.report.update(|s| {
                                s.last_sync_ms = Some(now_ms());
                                s.offline = None;
                                s.sign_in_needed = false;
                                s.sync_failing = None;
                            });
                        }
                        Err(e) => self.sync_failed(e, &mut last_net, &mut last_cause),
                    }
                    pacing.synced(Some((r.as_ref().map(|_| ()), &client)));
                }
                None => pacing.synced(None),
            }
            self.cycles.send_modify(|c| {
                c.finished = c.started;
                c.last_ok = ok;
            });
            self.report.sign_in(&self.app);
            self.report.records(&self.cache);
            self.report.errors();
            callsync_store::release_free_memory();
            let synced = tokio::time::Instant::now();
            let plan = || {
                let (calls_flowing, idle) = self.activity.state(now_ms());
                pacing.delay(calls_flowing, idle)
            };
            // Calls resuming after a quiet (or idle) spell shorten the wait already begun;
            // "Sync now" ends it.
            let mut until = synced + plan();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = self.sync_now.notified() => break,
                    _ = self.calls_resumed.notified() => until = until.min(synced + plan()),
                }
            }
        }
    }

    pub(super) fn sync_failed(
        &self,
        e: &callsync_salesforce::sync::SyncError,
        last_net: &mut Option<String>,
        last_cause: &mut Option<String>,
    ) {
        tracing::warn!(error = %e, "sync failed");
        if let callsync_salesforce::sync::SyncError::Salesforce(s) = e {
            match s {
                SfError::Network(_) | SfError::ProxyUnreachable { .. } => {
                    let m = match s {
                        SfError::Network(m) => m.clone(),
                        other => other.to_string(),
                    };
                    note_network(&self.errors, last_net, "sync", &m);
                    self.report.update(|s| s.offline = Some(m));
                }
                SfError::SignInNeeded { .. } => {
                    self.report.update(|s| s.sign_in_needed = true);
                    self.session.reset();
                }
                _ => {}
            }
        }
        if let Some((what, fix)) = callsync_salesforce::sync::explain(e) {
            if last_cause.as_deref() != Some(what.as_str()) {
                let _ = self.errors.append(&ErrorEntry::now(
                    "sync",
                    "sync",
                    format!("the sync failed: {what}. Fix: {fix}"),
                ));
                *last_cause = Some(what.clone());
            }
            self.report.update(|s| {
                s.sync_failing = Some(callsync_core::state::Problem { what, fix });
            });
        }
    }
}

/// Puts a network problem (certificate, proxy, unreachable) in the integration error log once
/// per distinct problem, not once per retry.
pub(super) fn note_network(errors: &ErrorLog, last: &mut Option<String>, area: &str, msg: &str) {
    // The part before the technical detail identifies the problem.
    let key = msg.split(" (").next().unwrap_or(msg).to_owned();
    if last.as_deref() == Some(key.as_str()) {
        return;
    }
    *last = Some(key);
    let _ = errors.append(&ErrorEntry::now(
        "network",
        area,
        format!("{msg}; callsync keeps retrying and nothing is lost"),
    ));
}
