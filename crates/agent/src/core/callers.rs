//! Who is calling: the screen pop's answer at ring time, one incremental cycle when the cache
//! does not know the number (fresh on a miss), and the agent's pick among several matches.
//!
//! A miss pops "Looking up…" at once (or "Unknown caller" when no refresh can answer in
//! time: offline, signed out, turned off, or the rate limit's next slot too far), asks the
//! sync loop for one cycle (the same `/composite` of `queryAll`s since the watermark: no
//! search-index lag), and replaces the pop with the answer if it comes within the configured
//! wait. Whenever the cycle ends, a call whose Task was queued meanwhile is linked to what it
//! found. Misses share cycles: at most one per `refresh_on_miss_every_secs`.

use std::collections::HashMap;

use tokio::time::Instant;

use super::*;
use callsync_app::pick::{Picked, Stores};
use callsync_core::event::{Direction, EventKind};
use callsync_core::lookup::LookupResult;
use callsync_core::state::{CallMatch, CurrentCall};

/// A ringing number the cache did not know.
pub(super) struct Miss {
    call_id: String,
    number: String,
    /// The number's E.164 key, held in the [`MissGate`] until the refresh has run.
    key: Option<String>,
    /// Until when the pop may still be replaced with the answer.
    pop_until: Option<Instant>,
}

/// Sync cycles as the sync loop counts them: a miss waits for one that started after it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Cycles {
    pub(super) started: u64,
    pub(super) finished: u64,
    pub(super) last_ok: bool,
}

/// When the last refresh for misses ran (the rate limit), shared with the ring path, and the
/// numbers whose refresh is still to come.
#[derive(Default)]
pub(super) struct MissGate {
    last: Mutex<Option<Instant>>,
    /// Misses waiting for their refresh, per number (E.164): the record for an unknown caller
    /// is not made before it, so that a call shorter than the rate limit's wait does not get
    /// a Lead for a caller the refresh would have found.
    awaiting: Mutex<HashMap<String, usize>>,
}

impl MissGate {
    /// When the next refresh may start.
    fn next_slot(&self, every: Duration) -> Instant {
        let last = *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.map_or_else(Instant::now, |l| (l + every).max(Instant::now()))
    }

    fn ran(&self) {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    fn awaiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.awaiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A miss on `number` waits for a refresh.
    fn hold(&self, number: String) {
        *self.awaiting().entry(number).or_default() += 1;
    }

    /// A miss on `number` had its refresh.
    fn release(&self, number: &str) {
        let mut awaiting = self.awaiting();
        if let Some(n) = awaiting.get_mut(number) {
            *n -= 1;
            if *n == 0 {
                awaiting.remove(number);
            }
        }
    }

    /// The numbers whose refresh is still to come.
    pub(super) fn awaiting_numbers(&self) -> std::collections::HashSet<String> {
        self.awaiting().keys().cloned().collect()
    }
}

impl Core {
    /// Asks the refresh task for a cycle for this miss; until it has run, no record is made
    /// for the number.
    fn refresh(
        &self,
        misses: &mpsc::UnboundedSender<Miss>,
        call_id: &str,
        number: &str,
        pop_until: Option<Instant>,
    ) {
        // Held under the key the pipeline queues the caller's record by: the full number.
        let key = self
            .normalizer
            .key(number)
            .ok()
            .and_then(|k| k.e164().map(|e| e.as_str().to_owned()));
        if let Some(k) = &key {
            self.miss_gate.hold(k.clone());
        }
        let sent = misses.send(Miss {
            call_id: call_id.to_owned(),
            number: number.to_owned(),
            key,
            pop_until,
        });
        if let Err(mpsc::error::SendError(m)) = sent {
            // The refresh task has ended (the agent stops): nothing to wait for.
            if let Some(k) = &m.key {
                self.miss_gate.release(k);
            }
        }
    }

    fn stores(&self) -> Stores<'_> {
        Stores {
            outbox: &self.outbox,
            cache: &self.cache,
            normalizer: &self.normalizer,
            rules: &self.rules,
        }
    }

    fn lookup(&self, number: &str) -> Option<LookupResult> {
        callsync_store::lookup::lookup(&self.cache, &self.normalizer, &self.rules, number).ok()
    }

    /// The answer's pop, and the tray's "Current call" menu follows it.
    fn answer(&self, call_id: &str, r: &LookupResult) -> Pop {
        let instance = self.report.tx.borrow().instance_url.clone();
        let region = &self.app.config.phone.default_region;
        let current = (r.all().count() > 1).then(|| CurrentCall {
            call_id: call_id.to_owned(),
            number: r.key.display_for(region),
            matches: r
                .all()
                .map(|m| CallMatch {
                    record_id: m.id.as_str().to_owned(),
                    label: pop::match_label(m),
                })
                .collect(),
            // A call picked for already (its ringing read again) keeps its tick.
            chosen: self
                .outbox
                .call(call_id)
                .ok()
                .flatten()
                .and_then(|c| c.chosen)
                .map(|(id, _)| id.as_str().to_owned()),
        });
        self.report.update(|s| s.current_call = current);
        pop::content(call_id, r, self.lang, region, instance.as_deref())
    }

    /// The pop for a call that rings now (on the pipeline's thread: no waiting here). A miss
    /// goes to the refresh task.
    pub(super) fn ring(
        &self,
        call_id: &str,
        number: &str,
        misses: &mpsc::UnboundedSender<Miss>,
    ) -> Option<Pop> {
        let r = self.lookup(number)?;
        if r.best.is_some() {
            return Some(self.answer(call_id, &r));
        }
        let cfg = &self.app.config.sync;
        let can_refresh = self.can_refresh();
        let wait = Duration::from_millis(cfg.refresh_on_miss_wait_ms);
        let every = Duration::from_secs(cfg.refresh_on_miss_every_secs);
        let now = Instant::now();
        // Answerable in time: the rate limit lets a cycle start within the wait.
        let pop_until =
            (can_refresh && self.miss_gate.next_slot(every) < now + wait).then_some(now + wait);
        self.report.update(|s| s.current_call = None);
        if can_refresh {
            self.refresh(misses, call_id, number, pop_until);
        }
        let region = &self.app.config.phone.default_region;
        Some(match pop_until {
            Some(_) => pop::looking_up(call_id, &r, self.lang, region),
            None => pop::content(call_id, &r, self.lang, region, None),
        })
    }

    /// A call that starts now without a pop at this moment (dialled out; or ringing while
    /// pops come at answer or are off): a miss still runs a refresh, so that the Task goes on
    /// a record created since the last sync.
    pub(super) fn unpopped(
        &self,
        e: &CallEvent,
        mode: PopMode,
        misses: &mpsc::UnboundedSender<Miss>,
    ) {
        let Some(info) = &e.info else { return };
        let fresh = now_ms() - e.at.timestamp_millis() <= pop::FRESH_MS;
        let starts = match (&e.kind, info.direction) {
            (EventKind::Dialing, Direction::Outbound) => true,
            (EventKind::Ringing, Direction::Inbound) => mode != PopMode::Ringing,
            _ => false,
        };
        if !(starts && fresh) {
            return;
        }
        if self.lookup(&info.remote).is_some_and(|r| r.best.is_none()) && self.can_refresh() {
            self.refresh(misses, &e.call_id, &info.remote, None);
        }
    }

    /// A refresh can answer: on, signed in, online.
    fn can_refresh(&self) -> bool {
        let cfg = &self.app.config.sync;
        let st = self.report.tx.borrow();
        cfg.refresh_on_miss
            && cfg.contact_retrieval
            && st.user.is_some()
            && !st.sign_in_needed
            && st.offline.is_none()
    }

    /// Runs the refreshes misses ask for, at most one per `refresh_on_miss_every_secs`, and
    /// replaces their pops with the answers.
    pub(super) async fn refresh_misses(
        self: Arc<Self>,
        mut misses: mpsc::UnboundedReceiver<Miss>,
        pops: mpsc::UnboundedSender<Pop>,
    ) {
        let every = Duration::from_secs(self.app.config.sync.refresh_on_miss_every_secs);
        let mut cycles = self.cycles.subscribe();
        while let Some(first) = misses.recv().await {
            let mut batch = vec![first];
            let slot = self.miss_gate.next_slot(every);
            // Misses until the slot opens share its cycle; pops that cannot wait for it give
            // up at their own deadline.
            loop {
                let deadline = batch
                    .iter()
                    .filter_map(|m| m.pop_until)
                    .filter(|d| *d < slot)
                    .min();
                tokio::select! {
                    _ = tokio::time::sleep_until(slot) => break,
                    _ = tokio::time::sleep_until(deadline.unwrap_or(slot)), if deadline.is_some() => {
                        self.give_up(&mut batch, &pops);
                    }
                    m = misses.recv() => match m {
                        Some(m) => batch.push(m),
                        None => return,
                    },
                }
            }
            while let Ok(m) = misses.try_recv() {
                batch.push(m);
            }
            self.miss_gate.ran();
            let want = cycles.borrow_and_update().started + 1;
            tracing::info!(misses = batch.len(), "unknown number: one sync cycle now");
            self.sync_now.notify_one();
            // The answer: replaced pops while they may still be, then the Tasks linked.
            let ok = loop {
                let deadline = batch.iter().filter_map(|m| m.pop_until).min();
                let c = *cycles.borrow_and_update();
                if c.finished >= want {
                    break c.last_ok;
                }
                let far = Instant::now() + Duration::from_secs(86_400);
                tokio::select! {
                    changed = cycles.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                        self.give_up(&mut batch, &pops);
                    }
                }
            };
            for m in batch {
                self.answered(m, ok, &pops);
            }
        }
    }

    /// Misses whose pop wait is over: their "Looking up…" becomes "Unknown caller" (their
    /// Tasks are still linked when the cycle ends).
    fn give_up(&self, batch: &mut [Miss], pops: &mpsc::UnboundedSender<Pop>) {
        let now = Instant::now();
        for m in batch
            .iter_mut()
            .filter(|m| m.pop_until.is_some_and(|d| d <= now))
        {
            m.pop_until = None;
            if let Some(r) = self.lookup(&m.number) {
                let region = &self.app.config.phone.default_region;
                let mut p = pop::content(&m.call_id, &r, self.lang, region, None);
                p.replaces = true;
                tracing::info!(call = %m.call_id, "no answer in time; the pop stays unknown");
                let _ = pops.send(p);
            }
        }
    }

    /// The cycle for `m` ended: its pop shows the answer if it may still, and its Task goes on
    /// the record found.
    fn answered(&self, m: Miss, ok: bool, pops: &mpsc::UnboundedSender<Pop>) {
        let found = match self.stores().relink(&m.call_id) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(call = %m.call_id, error = %e, "linking the call after a refresh");
                None
            }
        };
        tracing::info!(call = %m.call_id, found = found.is_some(), sync_ok = ok, "refreshed lookup");
        if m.pop_until.is_some() {
            if let Some(r) = self.lookup(&m.number) {
                let mut p = self.answer(&m.call_id, &r);
                p.replaces = true;
                let _ = pops.send(p);
            }
        }
        if found.is_some() {
            self.report.queue();
        }
        if let Some(k) = &m.key {
            // A record held for this refresh may be made now (or is no longer wanted).
            self.miss_gate.release(k);
        }
        if found.is_some() || m.key.is_some() {
            self.send_now.notify_one();
        }
    }

    /// The agent chose `record_id` for the call: its Task follows, the number remembers it,
    /// the tray ticks it.
    pub(super) fn pick(&self, call_id: &str, record_id: &str) -> Result<Picked, String> {
        let p = self
            .stores()
            .pick(call_id, record_id, now_ms())
            .map_err(|e| e.to_string())?;
        let id = p.record.id.as_str().to_owned();
        self.report.update(|s| {
            if let Some(c) = s.current_call.as_mut().filter(|c| c.call_id == call_id) {
                c.chosen = Some(id);
            }
        });
        self.report.queue();
        self.send_now.notify_one();
        Ok(p)
    }
}

/// Notification ids of the pops shown, per call, so that an answer replaces its "Looking up…".
/// Each pop shows on its own thread: an answer that comes within milliseconds waits here for
/// the id of the pop it replaces.
#[derive(Default)]
pub(super) struct Shown {
    ids: Mutex<HashMap<String, u32>>,
    changed: std::sync::Condvar,
}

impl Shown {
    /// The id of the call's pop, waiting up to `wait` for it to be shown.
    pub(super) fn wait_for(&self, call_id: &str, wait: Duration) -> Option<u32> {
        let end = std::time::Instant::now() + wait;
        let mut ids = self.ids.lock().ok()?;
        loop {
            if let Some(id) = ids.get(call_id) {
                return Some(*id);
            }
            let left = end.checked_duration_since(std::time::Instant::now())?;
            ids = self.changed.wait_timeout(ids, left).ok()?.0;
        }
    }

    pub(super) fn set(&self, call_id: &str, id: u32) {
        if let Ok(mut m) = self.ids.lock() {
            // Only the last few calls can still be replaced.
            if m.len() > 64 {
                m.clear();
            }
            m.insert(call_id.to_owned(), id);
        }
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::MissGate;

    /// A number stays held while any of its misses waits for a refresh.
    #[test]
    fn a_number_is_held_until_each_of_its_misses_had_its_refresh() {
        let g = MissGate::default();
        let held = |g: &MissGate| {
            let mut v: Vec<_> = g.awaiting_numbers().into_iter().collect();
            v.sort();
            v
        };
        g.hold("+81388880001".into());
        g.hold("+81388880001".into());
        g.hold("+81388880002".into());
        assert_eq!(held(&g), ["+81388880001", "+81388880002"]);
        g.release("+81388880001");
        assert_eq!(held(&g), ["+81388880001", "+81388880002"]);
        g.release("+81388880001");
        g.release("+81388880009"); // never held: nothing happens
        assert_eq!(held(&g), ["+81388880002"]);
        g.release("+81388880002");
        g.release("+81388880002"); // released twice: no underflow
        assert!(held(&g).is_empty());
    }
}
