//! The core of the agent: one process that follows the call logs, turns calls into Tasks in the
//! outbox, sends them, keeps the cache in sync, and pops the caller's name. The tray is a thin
//! shell over it and the control socket another client; servers and CI run it with neither
//! (`callsync run --headless`).
//!
//! Threads and tasks: the call-log follower and the pipeline run on their own threads (file
//! and sled work), acknowledging a batch only once its Task writes are durable; sending,
//! syncing, requests and notifications are tokio tasks. The core publishes what it is doing as
//! one [`AgentState`] on a `watch` channel and takes [`Request`]s on an `mpsc` channel: it never
//! touches a UI object. A stop (signal, Quit) lets a send in flight finish (or leaves it
//! queued), flushes the stores and returns.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::app::App;
use crate::cache::Cache;
use crate::calllog::cursor::CursorStore;
use crate::calllog::watch::{self as calllog_watch, Follower, Waker};
use crate::calllog::CallEvent;
use crate::control::{Envelope, Request, Response};
use crate::errorlog::{ErrorEntry, ErrorLog};
use crate::i18n::{self, Lang, Msg};
use crate::outbox::{Outbox, Sender};
use crate::pipeline::Pipeline;
use crate::record::ObjectKind;
use crate::salesforce::{Client, SfError};
use crate::schedule::{next_delay, Activity, ScheduleInput};
use crate::screenpop::{self, Pop, PopMode};
use crate::state::{AgentState, MENU_ERRORS};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How often the sender looks on its own when nothing is queued (new Tasks wake it at once).
const IDLE_SEND_CHECK: Duration = Duration::from_secs(60);

/// How long a stop waits for a send in flight before leaving it queued.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Puts a network problem (certificate, proxy, unreachable) in the integration error log once
/// per distinct problem, not once per retry.
fn note_network(errors: &ErrorLog, last: &mut Option<String>, area: &str, msg: &str) {
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

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error("{0}")]
    Setup(String),
}

fn sources(app: &App) -> Result<Vec<Box<dyn crate::calllog::Source>>, AgentError> {
    app.config
        .calllog
        .sources
        .iter()
        .map(|s| s.open().map_err(AgentError::Setup))
        .collect()
}

/// The core's side of its channels.
pub struct Endpoints {
    requests: mpsc::Receiver<Envelope>,
    state: watch::Sender<AgentState>,
    restart: Arc<std::sync::atomic::AtomicBool>,
}

/// The other side: what the tray and the control socket hold.
#[derive(Clone)]
pub struct Handle {
    pub requests: mpsc::Sender<Envelope>,
    pub state: watch::Receiver<AgentState>,
    restart: Arc<std::sync::atomic::AtomicBool>,
}

impl Handle {
    /// The agent stopped because a restart was asked for (the process starts itself again).
    pub fn restart_requested(&self) -> bool {
        self.restart.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sends a request without waiting for the answer (the tray: it renders the state instead).
    pub fn fire(&self, req: Request) {
        let (tx, _rx) = tokio::sync::oneshot::channel();
        if self.requests.try_send((req, tx)).is_err() {
            tracing::warn!("the agent is busy or stopping; request dropped");
        }
    }
}

pub fn endpoints() -> (Endpoints, Handle) {
    let (req_tx, req_rx) = mpsc::channel(32);
    let (st_tx, st_rx) = watch::channel(AgentState::default());
    let restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
    (
        Endpoints {
            requests: req_rx,
            state: st_tx,
            restart: restart.clone(),
        },
        Handle {
            requests: req_tx,
            state: st_rx,
            restart,
        },
    )
}

/// Runs with no tray and no control socket until `stop` completes.
pub async fn run_headless(app: App, stop: impl Future<Output = ()>) -> Result<(), AgentError> {
    let (ends, _handle) = endpoints();
    run(app, stop, ends).await
}

/// How long the agent waits at start for a store another (short-lived) process holds.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// `open()` again while it fails with a lock another process holds, up to [`STORE_WAIT`].
async fn retry_locked<T, E>(
    mut open: impl FnMut() -> Result<T, E>,
    locked: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let end = tokio::time::Instant::now() + STORE_WAIT;
    loop {
        match open() {
            Err(e) if locked(&e) && tokio::time::Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            r => return r,
        }
    }
}

/// Keeps [`AgentState`] current from the stores; every change wakes the tray once.
struct Reporter {
    tx: watch::Sender<AgentState>,
    outbox: Arc<Outbox>,
    errors: Arc<ErrorLog>,
    /// Error-log size at the last read: the file is read again only when it grew.
    errors_len: Mutex<Option<u64>>,
    started_at: String,
}

impl Reporter {
    fn update(&self, f: impl FnOnce(&mut AgentState)) {
        self.tx.send_if_modified(|s| {
            let before = s.clone();
            f(s);
            *s != before
        });
    }

    fn queue(&self) {
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

    fn errors(&self) {
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

    fn records(&self, cache: &Cache) {
        let n = |k| cache.count(k).unwrap_or(0);
        let (c, a, l) = (
            n(ObjectKind::Contact),
            n(ObjectKind::Account),
            n(ObjectKind::Lead),
        );
        self.update(|s| {
            s.contacts = c;
            s.accounts = a;
            s.leads = l;
        });
    }

    fn sign_in(&self, app: &App) {
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

    fn all(&self, app: &App, cache: &Cache) {
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
struct Session {
    app: App,
    client: Mutex<Option<Client>>,
    /// (org, user) of the sign-in last seen, to notice a new one.
    seen: Mutex<Option<(String, String)>>,
}

impl Session {
    /// A client for the account the store holds now, and whether that account is another one
    /// than last time (a sign-in happened elsewhere).
    fn client(&self) -> (Option<Client>, bool) {
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
    fn reset(&self) {
        *self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// Everything the agent's tasks share.
struct Core {
    app: App,
    cache: Arc<Cache>,
    outbox: Arc<Outbox>,
    errors: Arc<ErrorLog>,
    report: Arc<Reporter>,
    session: Session,
    normalizer: crate::phone::Normalizer,
    rules: crate::lookup::LookupRules,
    send_now: Notify,
    sync_now: Notify,
    quit: Notify,
    calls_resumed: Notify,
    restart: Arc<AtomicBool>,
    activity: Activity,
    lang: Lang,
}

/// Runs until `stop` completes or a Quit request comes.
pub async fn run(
    app: App,
    stop: impl Future<Output = ()>,
    ends: Endpoints,
) -> Result<(), AgentError> {
    // A CLI command (`status`, `lookup`) may hold the stores for a moment as the agent starts
    // (autostart, a restart): wait for it rather than fail the start.
    let (cache, _) = retry_locked(
        || app.open_cache(),
        |e| matches!(e, crate::cache::CacheError::Locked(_)),
    )
    .await?;
    let cache = Arc::new(cache);
    let outbox = Arc::new(
        retry_locked(
            || Outbox::open(&app.data.outbox()),
            |e| matches!(e, crate::outbox::OutboxError::Locked(_)),
        )
        .await?,
    );
    let errors = Arc::new(ErrorLog::new(app.data.error_log()));
    let normalizer = app
        .config
        .normalizer()
        .map_err(|e| AgentError::Setup(e.to_string()))?;
    let signed_in = app.auth_store().load().ok().flatten();
    if let Some(a) = &signed_in {
        // The cache answers for the org signed in to (a sign-in made while no agent ran), and
        // the Tasks queued from now on are that org's.
        cache.claim(&a.org_id)?;
        if outbox.org()?.is_none() {
            outbox.set_org(&a.org_id)?;
        }
    }
    let started = chrono::Utc::now();
    let report = Arc::new(Reporter {
        tx: ends.state,
        outbox: outbox.clone(),
        errors: errors.clone(),
        errors_len: Mutex::new(None),
        started_at: crate::record::format_sf_datetime(started),
    });
    report.update(|s| {
        s.pid = std::process::id();
        s.started_ms = started.timestamp_millis();
    });
    report.all(&app, &cache);
    let core = Arc::new(Core {
        session: Session {
            app: app.clone(),
            client: Mutex::new(None),
            seen: Mutex::new(signed_in.map(|a| (a.org_id, a.user_id))),
        },
        rules: app.config.lookup_rules(),
        lang: app.config.ui.lang(),
        app,
        cache,
        outbox,
        errors,
        report,
        normalizer,
        send_now: Notify::new(),
        sync_now: Notify::new(),
        quit: Notify::new(),
        calls_resumed: Notify::new(),
        restart: ends.restart.clone(),
        activity: Activity::new(now_ms()),
    });

    let (pop_tx, pop_rx) = mpsc::unbounded_channel::<Pop>();
    let (pipe, _follow) = core.start_pipeline(pop_tx)?;
    let pop_task = tokio::spawn(notifier(pop_rx, core.lang));
    // A stop waits for the send pass in flight, then the sender ends.
    let (stop_sender, stopping) = watch::channel(false);
    let sender_task = tokio::spawn(core.clone().sender_loop(stopping));
    let sync_task = tokio::spawn(core.clone().sync_loop());
    let request_task = tokio::spawn(core.clone().serve_requests(ends.requests));

    tracing::info!("agent running");
    tokio::select! {
        _ = stop => {}
        _ = core.quit.notified() => {}
    }
    tracing::info!("agent stopping");
    request_task.abort();
    sync_task.abort();
    pop_task.abort();
    // A send in flight finishes (its result is recorded) or stays queued for the next start.
    let _ = stop_sender.send(true);
    let abort = sender_task.abort_handle();
    if tokio::time::timeout(STOP_GRACE, sender_task).await.is_err() {
        abort.abort();
        tracing::info!("a send was still in flight; it stays queued and goes at the next start");
    }
    // Queued work is on disk already; make the last writes durable.
    core.outbox.flush()?;
    core.cache.flush()?;
    drop(pipe);
    Ok(())
}

impl Core {
    /// Call logs → (screen pop) → pipeline → outbox, on threads: the follower's and the
    /// pipeline's. A batch is acknowledged only once its Task writes are durable.
    fn start_pipeline(
        self: &Arc<Self>,
        pop_tx: mpsc::UnboundedSender<Pop>,
    ) -> Result<(std::thread::JoinHandle<()>, std::thread::JoinHandle<()>), AgentError> {
        let app = &self.app;
        let follower = Follower::new(
            sources(app)?,
            CursorStore::new(app.data.root().join("calllog").join("agent-cursors.json")),
        )
        .map_err(|e| AgentError::Setup(format!("call-log positions: {e}")))?;
        let waker = Waker::new(follower.dirs(), Duration::from_millis(20))
            .map_err(|e| AgentError::Setup(format!("cannot watch the call logs: {e}")))?;
        let (deliveries, follow) = calllog_watch::spawn(
            follower,
            waker,
            Duration::from_secs(app.config.calllog.poll_secs),
        )
        .map_err(|e| AgentError::Setup(e.to_string()))?;
        let me = app.auth_store().load().ok().flatten().map(|a| a.user_id);
        let settings = app
            .config
            .activity
            .enabled
            .then(|| app.config.activity.settings());
        let meeting = app
            .config
            .meeting
            .enabled
            .then(|| app.config.meeting.settings());
        let assignees = app.config.assignee.assignees(me.as_deref());
        let pop_mode = app.config.ui.screen_pop;
        let region = app.config.phone.default_region.clone();
        let core = self.clone();
        let pipe = std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || {
                let p = Pipeline {
                    outbox: &core.outbox,
                    cache: Some(&core.cache),
                    normalizer: &core.normalizer,
                    rules: &core.rules,
                    settings: settings.as_ref(),
                    meeting: meeting.as_ref(),
                    assignees: &assignees,
                };
                let state = core.report.tx.subscribe();
                for d in deliveries {
                    // Before the Task writes: the agent is waiting for the name, not the queue.
                    for e in &d.batch.events {
                        if let Some(pop) = pop_for(e, &core.outbox, pop_mode, |number| {
                            let r = crate::lookup::lookup(&core.cache, &core.normalizer, &core.rules, number).ok()?;
                            let instance = state.borrow().instance_url.clone();
                            Some(screenpop::content(&e.call_id, &r, core.lang, &region, instance.as_deref()))
                        }) {
                            let _ = pop_tx.send(pop);
                        }
                    }
                    let _ = core.errors.calllog_batch(&d.batch.problems);
                    if let Err(e) = p.handle(&d.batch.events) {
                        // Not acknowledged: the batch comes again after a restart.
                        tracing::error!(error = %e, "cannot queue Tasks; the call-log position is kept");
                        continue;
                    }
                    if !d.batch.events.is_empty() && core.activity.note_call(now_ms()) {
                        core.calls_resumed.notify_one();
                    }
                    let (events, problems) =
                        (!d.batch.events.is_empty(), !d.batch.problems.is_empty());
                    d.ack();
                    if events {
                        core.report.queue();
                    }
                    if problems {
                        core.report.errors();
                    }
                    core.send_now.notify_one();
                }
            })
            .map_err(|e| AgentError::Setup(e.to_string()))?;
        Ok((pipe, follow))
    }

    /// The session's client; a sign-in made elsewhere since the last look is applied first.
    fn client(&self) -> Option<Client> {
        let (client, changed) = self.session.client();
        if changed {
            self.adopt_sign_in(false);
        }
        client
    }

    /// The sign-in rule (cache and queue follow the org signed in to), then the state shows
    /// the new sign-in and a sync and a send start at once.
    fn adopt_sign_in(&self, send_queue_here: bool) -> Option<crate::app::SignInApplied> {
        let stored = self.app.auth_store().load().ok().flatten()?;
        let applied =
            match self
                .app
                .apply_sign_in(&stored.org_id, &self.cache, &self.outbox, send_queue_here)
            {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "applying the new sign-in");
                    return None;
                }
            };
        *self
            .session
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((stored.org_id.clone(), stored.user_id.clone()));
        self.report.update(|s| {
            s.sign_in_needed = false;
            s.sync_failing = None;
        });
        self.report.sign_in(&self.app);
        self.report.records(&self.cache);
        self.report.queue();
        self.sync_now.notify_one();
        self.send_now.notify_one();
        Some(applied)
    }

    /// Sends what is due whenever something is queued (no polling while nothing is).
    async fn sender_loop(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.app.config.activity.send_interval_secs);
        let ext = self.app.config.activity.external_id();
        let event_ext = self.app.config.meeting.external_id();
        let mut last_net: Option<String> = None;
        while !*stopping.borrow() {
            let client = self.client();
            if let Some(c) = &client {
                let sender = Sender {
                    client: c,
                    outbox: &self.outbox,
                    external_id: ext.clone(),
                    event_external_id: event_ext.clone(),
                    errors: Some(&self.errors),
                };
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
    fn sent(&self, r: &crate::outbox::SendReport, last_net: &mut Option<String>) {
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
    }

    /// Syncs on the adaptive schedule; every failure shows in the state and, once per distinct
    /// cause, in the error log with its fix; a good cycle clears it.
    async fn sync_loop(self: Arc<Self>) {
        let mut failures = 0u32;
        let mut last_net: Option<String> = None;
        let mut last_cause: Option<String> = None;
        let mut rng = fastrand::Rng::new();
        loop {
            let mut rate_limited = false;
            let mut api_share = None;
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
                    match r {
                        Ok(_) => {
                            failures = 0;
                            last_net = None;
                            last_cause = None;
                            self.report.update(|s| {
                                s.last_sync_ms = Some(now_ms());
                                s.offline = None;
                                s.sign_in_needed = false;
                                s.sync_failing = None;
                            });
                        }
                        Err(e) => {
                            failures += 1;
                            self.sync_failed(&e, &mut last_net, &mut last_cause);
                            rate_limited = matches!(&e, crate::sync::SyncError::Salesforce(s) if s.is_rate_limited());
                        }
                    }
                    api_share = client.api_usage().map(|(u, m)| u as f64 / m.max(1) as f64);
                }
                None => failures = failures.max(1),
            }
            self.report.sign_in(&self.app);
            self.report.records(&self.cache);
            self.report.errors();
            release_free_memory();
            let synced = tokio::time::Instant::now();
            let jitter = rng.f64();
            let plan = || {
                let (calls_flowing, idle) = self.activity.state(now_ms());
                next_delay(ScheduleInput {
                    calls_flowing,
                    idle,
                    api_share,
                    failures,
                    rate_limited,
                    jitter,
                    ..ScheduleInput::from_config(&self.app.config.sync)
                })
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

    fn sync_failed(
        &self,
        e: &crate::sync::SyncError,
        last_net: &mut Option<String>,
        last_cause: &mut Option<String>,
    ) {
        tracing::warn!(error = %e, "sync failed");
        if let crate::sync::SyncError::Salesforce(s) = e {
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
        if let Some((what, fix)) = crate::sync::explain(e) {
            if last_cause.as_deref() != Some(what.as_str()) {
                let _ = self.errors.append(&ErrorEntry::now(
                    "sync",
                    "sync",
                    format!("the sync failed: {what}. Fix: {fix}"),
                ));
                *last_cause = Some(what.clone());
            }
            self.report.update(|s| {
                s.sync_failing = Some(crate::state::Problem { what, fix });
            });
        }
    }

    async fn serve_requests(self: Arc<Self>, mut rx: mpsc::Receiver<Envelope>) {
        while let Some((req, back)) = rx.recv().await {
            if req != Request::Status {
                self.activity.note_input(now_ms());
            }
            let quit = matches!(req, Request::Quit | Request::Restart);
            if req == Request::Restart {
                self.restart.store(true, Ordering::SeqCst);
            }
            let result = self.clone().handle(req).await;
            let st = self.report.tx.borrow().clone();
            let _ = back.send(match result {
                Ok(data) => Response {
                    data,
                    ..Response::ok(st)
                },
                Err(e) => Response::error(e),
            });
            if quit {
                // After the answer: the asker learns the agent is stopping.
                self.quit.notify_one();
            }
        }
    }

    async fn handle(self: Arc<Self>, req: Request) -> Result<Option<serde_json::Value>, String> {
        let json = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map(Some).map_err(|e| e.to_string())
        };
        match req {
            Request::Status => {}
            Request::Show => {
                let st = self.report.tx.borrow().clone();
                notify(
                    i18n::text(self.lang, &Msg::AlreadyRunning),
                    crate::state::status_line(&st, self.lang, now_ms()),
                );
            }
            Request::SyncNow => {
                self.sync_now.notify_one();
                self.send_now.notify_one();
            }
            Request::Pause => {
                self.outbox
                    .pause(
                        crate::outbox::PauseKind::User,
                        "paused from the tray menu (Resume sending restarts it)",
                    )
                    .map_err(|e| e.to_string())?;
                self.report.queue();
            }
            Request::Resume => {
                self.outbox.resume().map_err(|e| e.to_string())?;
                self.report.queue();
                self.send_now.notify_one();
            }
            Request::SignOut => {
                self.app.sign_out().await.map_err(|e| e.to_string())?;
                self.session.reset();
                self.outbox
                    .pause(
                        crate::outbox::PauseKind::SignedOut,
                        "signed out; the queue is kept and sent after signing in again",
                    )
                    .map_err(|e| e.to_string())?;
                self.report.sign_in(&self.app);
                self.report.queue();
            }
            Request::SignIn => {
                // The browser flow waits for the user: run it beside the request loop.
                let core = self.clone();
                tokio::spawn(async move {
                    let open = |url: &str| {
                        if let Err(e) = webbrowser::open(url) {
                            tracing::warn!(error = %e, "cannot open the browser for sign-in");
                        }
                    };
                    let done = match core.app.sign_in(open, Duration::from_secs(300)).await {
                        Ok((t, method)) => core.app.complete_sign_in(&t, method).await,
                        Err(e) => Err(e),
                    };
                    match done {
                        Ok(_) => {
                            core.session.reset();
                            // Another org's queue stays held (`callsync connect
                            // --send-queue-here` hands it over, asked).
                            core.adopt_sign_in(false);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "sign-in from the tray failed");
                            let _ = core.errors.append(&ErrorEntry::now(
                                "sign-in",
                                "tray",
                                e.to_string(),
                            ));
                            core.report.errors();
                        }
                    }
                });
            }
            Request::SignedIn { send_queue_here } => {
                self.session.reset();
                let (_, _) = self.session.client();
                let applied = self
                    .adopt_sign_in(send_queue_here)
                    .ok_or("no sign-in is stored")?;
                return json(serde_json::to_value(applied));
            }
            Request::OpenLogs => open_path(&self.app.data.logs()),
            Request::OpenSettings => {
                let path = settings_file(&self.app).map_err(|e| e.to_string())?;
                open_path(&path);
            }
            Request::Explain { index } => {
                let st = self.report.tx.borrow().clone();
                let e = st
                    .errors
                    .get(index)
                    .ok_or_else(|| format!("no error #{index}"))?;
                let (title, body) = crate::state::explanation(e);
                notify(title, body);
            }
            Request::OpenRecord { url } => {
                // Only pages of the org signed in to: the socket is no general URL opener.
                let base = self.report.tx.borrow().instance_url.clone();
                match base {
                    Some(b) if url.starts_with(&format!("{}/", b.trim_end_matches('/'))) => {
                        webbrowser::open(&url).map_err(|e| e.to_string())?;
                    }
                    _ => return Err("not a page of the org signed in to".into()),
                }
            }
            Request::Queue => {
                return json(serde_json::to_value(
                    self.outbox.items().map_err(|e| e.to_string())?,
                ))
            }
            Request::QueueRetry { id } => {
                let n = self.outbox.retry(id).map_err(|e| e.to_string())?;
                self.report.queue();
                self.send_now.notify_one();
                return Ok(Some(serde_json::json!({ "retried": n })));
            }
            Request::Lookup { number } => {
                let r = crate::lookup::lookup(&self.cache, &self.normalizer, &self.rules, &number)
                    .map_err(|e| e.to_string())?;
                return json(serde_json::to_value(r));
            }
            Request::CacheStats => {
                return json(serde_json::to_value(
                    self.cache.stats().map_err(|e| e.to_string())?,
                ))
            }
            Request::Quit | Request::Restart => {}
        }
        Ok(None)
    }
}

/// Hands memory freed by a sync back to the OS. glibc keeps freed memory in per-thread arenas
/// (the HTTP, JSON and conversion threads each have one), so without this an idle agent's RSS
/// creeps up by the peak of every sync cycle.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only returns free heap pages to the kernel; it takes no
        // pointers and is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// The screen pop for an event, or `None`. The direction comes from the event, or from the
/// call record the pipeline keeps for events that carry no call info.
fn pop_for(
    e: &CallEvent,
    outbox: &Outbox,
    mode: PopMode,
    pop: impl FnOnce(&str) -> Option<Pop>,
) -> Option<Pop> {
    if mode == PopMode::Off {
        return None;
    }
    let info = match &e.info {
        Some(i) => i.clone(),
        None => outbox.call(&e.call_id).ok().flatten()?.summary.info,
    };
    if !screenpop::wanted(mode, e, info.direction, now_ms()) {
        return None;
    }
    pop(&info.remote)
}

/// Shows screen pops as they come, each on a blocking thread (`show` waits for a click).
async fn notifier(mut pops: mpsc::UnboundedReceiver<Pop>, lang: Lang) {
    let warned = Arc::new(AtomicBool::new(false));
    while let Some(pop) = pops.recv().await {
        let warned = warned.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = screenpop::show(&pop, lang, |url| {
                if let Err(e) = webbrowser::open(url) {
                    tracing::warn!(error = %e, "cannot open the browser");
                }
            }) {
                if !warned.swap(true, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "cannot show desktop notifications (screen pops are off until one works)");
                }
            }
        });
    }
}

/// A plain notification (no action), shown off the async threads.
fn notify(summary: String, body: String) {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = screenpop::notice(&summary, &body) {
            tracing::info!(error = %e, %summary, %body, "no desktop notification");
        }
    });
}

fn open_path(p: &std::path::Path) {
    let p = p.to_owned();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = open::that_detached(&p) {
            tracing::warn!(error = %e, path = %p.display(), "cannot open");
        }
    });
}

/// The user's settings file, created from the annotated example when there is none yet (so
/// "Open settings file" always opens something to edit).
fn settings_file(app: &App) -> std::io::Result<std::path::PathBuf> {
    let path = app
        .settings_file
        .clone()
        .or_else(crate::paths::default_user_config)
        .unwrap_or_else(|| app.data.root().join("config.toml"));
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let commented: String = crate::config::EXAMPLE
            .lines()
            .map(|l| {
                if l.is_empty() || l.starts_with('#') || l.starts_with('[') {
                    format!("{l}\n")
                } else {
                    format!("# {l}\n")
                }
            })
            .collect();
        std::fs::write(&path, commented)?;
    }
    Ok(path)
}
