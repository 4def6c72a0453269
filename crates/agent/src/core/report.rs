//! What the core publishes: its state for the tray and `status` ([`Reporter`]), and the
//! sign-in session the loops share.

use super::*;

/// Keeps [`AgentState`] current from the stores; every change wakes the tray once.
pub(super) struct Reporter {
    pub(super) tx: watch::Sender<AgentState>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) errors: Arc<ErrorLog>,
    /// Error-log size at the last read: the file is read again only when it grew.
    pub(super) errors_len: Mutex<Option<u64>>,
    pub(super) started_at: String,
}

impl Reporter {
    pub(super) fn update(&self, f: impl FnOnce(&mut AgentState)) {
        self.tx.send_if_modified(|s| {
            let before = s.clone();
            f(s);
            *s != before
        });
    }

    pub(super) fn queue(&self) {
        let counts = self.outbox.counts().ok();
        let paused = self.outbox.paused().ok().flatten();
        self.update(|s| {
            if let Some((p, k)) = counts {
                s.pending = p as u64;
                s.parked = k as u64;
            }
            s.paused = paused;
        });
    }

    pub(super) fn errors(&self) {
        let len = std::fs::metadata(self.errors.path()).map(|m| m.len()).ok();
        {
            let Ok(mut last) = self.errors_len.lock() else {
                return;
            };
            if *last == len && len.is_some() {
                return;
            }
            *last = len;
        }
        let all = self.errors.read().unwrap_or_default();
        let new = all.iter().filter(|e| e.at >= self.started_at).count() as u64;
        let latest: Vec<ErrorEntry> = all.iter().rev().take(MENU_ERRORS).cloned().collect();
        self.update(|s| {
            s.errors_total = all.len() as u64;
            s.new_errors = new;
            s.errors = latest;
        });
    }

    pub(super) fn records(&self, cache: &Cache) {
        let n = |k| cache.count(k).unwrap_or(0);
        let (c, a, l) = (
            n(ObjectKind::Contact),
            n(ObjectKind::Account),
            n(ObjectKind::Lead),
        );
        // A restarted agent says when the stores last synced ("synced 3 min ago"), not "not
        // synced yet", until its own first cycle ends.
        let stored = ObjectKind::ALL
            .iter()
            .filter_map(|k| {
                callsync_salesforce::sync::load_state(cache, *k)
                    .ok()?
                    .last_sync
            })
            .filter_map(|t| callsync_core::record::parse_sf_datetime(&t))
            .map(|t| t.timestamp_millis())
            .max();
        self.update(|s| {
            s.contacts = c;
            s.accounts = a;
            s.leads = l;
            if s.last_sync_ms.is_none() {
                s.last_sync_ms = stored;
            }
        });
    }

    pub(super) fn sign_in(&self, app: &App) {
        let a = app.auth_store().load().ok().flatten();
        self.update(|s| {
            s.user = a.as_ref().map(|a| {
                if a.username.is_empty() {
                    a.user_id.clone()
                } else {
                    a.username.clone()
                }
            });
            s.org_id = a.as_ref().map(|a| a.org_id.clone());
            s.instance_url = a.as_ref().map(|a| a.instance_url.clone());
            if a.is_none() {
                s.sign_in_needed = false;
            }
        });
    }

    pub(super) fn all(&self, app: &App, cache: &Cache) {
        self.sign_in(app);
        self.records(cache);
        self.queue();
        self.errors();
    }
}

/// The agent's one connection to the org, shared by the sender and the sync loop: one session
/// (a token refresh when it expires, not per cycle) and one pool of TLS connections. It also
/// notices a sign-in stored by another process (`callsync connect`): the account it serves
/// changes, and the core applies the sign-in rule.
pub(super) struct Session {
    pub(super) app: App,
    pub(super) client: Mutex<Option<Client>>,
    /// (org, user) of the sign-in last seen, to notice a new one.
    pub(super) seen: Mutex<Option<(String, String)>>,
}

impl Session {
    /// A client for the account the store holds now, and whether that account is another one
    /// than last time (a sign-in happened elsewhere).
    pub(super) fn client(&self) -> (Option<Client>, bool) {
        let mut slot = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = self.app.client_reusing(slot.as_ref()).ok();
        let now = slot
            .as_ref()
            .map(|c| (c.auth().org_id.clone(), c.auth().user_id.clone()));
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = now.is_some() && *seen != now;
        *seen = now;
        (slot.clone(), changed)
    }

    /// The next [`Session::client`] starts afresh (the sign-in was refused, or replaced).
    pub(super) fn reset(&self) {
        *self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}
