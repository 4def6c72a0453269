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
/// (a token refresh when it expires, not per cycle) and one pool of TLS connections.
struct Session {
    app: App,
    client: Mutex<Option<Client>>,
}

impl Session {
    /// A client for the account the store holds now (`callsync connect` may have changed it).
    fn client(&self) -> Option<Client> {
        let mut slot = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = self.app.client_reusing(slot.as_ref()).ok();
        slot.clone()
    }

    /// The next [`Session::client`] starts afresh (the sign-in was refused).
    fn reset(&self) {
        *self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
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
    let lang = app.config.ui.lang();
    let send_now = Arc::new(Notify::new());
    let sync_now = Arc::new(Notify::new());
    let quit = Arc::new(Notify::new());
    let activity = Arc::new(Activity::new(now_ms()));
    let calls_resumed = Arc::new(Notify::new());
    let me = app.auth_store().load().ok().flatten().map(|a| a.user_id);
    let session = Arc::new(Session {
        app: app.clone(),
        client: Mutex::new(None),
    });

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

    // Call logs → (screen pop) → pipeline → outbox, on threads.
    let follower = Follower::new(
        sources(&app)?,
        CursorStore::new(app.data.root().join("calllog").join("agent-cursors.json")),
    )
    .map_err(|e| AgentError::Setup(format!("call-log positions: {e}")))?;
    let waker = Waker::new(follower.dirs(), Duration::from_millis(20))
        .map_err(|e| AgentError::Setup(format!("cannot watch the call logs: {e}")))?;
    let (deliveries, _follow) = calllog_watch::spawn(
        follower,
        waker,
        Duration::from_secs(app.config.calllog.poll_secs),
    )
    .map_err(|e| AgentError::Setup(e.to_string()))?;
    let (pop_tx, pop_rx) = mpsc::unbounded_channel::<Pop>();
    let pipe = {
        let (cache, outbox, errors, send_now, activity, calls_resumed, report) = (
            cache.clone(),
            outbox.clone(),
            errors.clone(),
            send_now.clone(),
            activity.clone(),
            calls_resumed.clone(),
            report.clone(),
        );
        let rules = app.config.lookup_rules();
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
        let normalizer = normalizer.clone();
        let pop_mode = app.config.ui.screen_pop;
        let region = app.config.phone.default_region.clone();
        let state = report.tx.subscribe();
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || {
                let p = Pipeline {
                    outbox: &outbox,
                    cache: Some(&cache),
                    normalizer: &normalizer,
                    rules: &rules,
                    settings: settings.as_ref(),
                    meeting: meeting.as_ref(),
                    assignees: &assignees,
                };
                for d in deliveries {
                    // Before the Task writes: the agent is waiting for the name, not the queue.
                    for e in &d.batch.events {
                        if let Some(pop) = pop_for(e, &outbox, pop_mode, |number| {
                            let r = crate::lookup::lookup(&cache, &normalizer, &rules, number).ok()?;
                            let instance = state.borrow().instance_url.clone();
                            Some(screenpop::content(&e.call_id, &r, lang, &region, instance.as_deref()))
                        }) {
                            let _ = pop_tx.send(pop);
                        }
                    }
                    for prob in &d.batch.problems {
                        let _ = errors.calllog(prob);
                    }
                    if let Err(e) = p.handle(&d.batch.events) {
                        // Not acknowledged: the batch comes again after a restart.
                        tracing::error!(error = %e, "cannot queue Tasks; the call-log position is kept");
                        continue;
                    }
                    if !d.batch.events.is_empty() && activity.note_call(now_ms()) {
                        calls_resumed.notify_one();
                    }
                    let (events, problems) =
                        (!d.batch.events.is_empty(), !d.batch.problems.is_empty());
                    d.ack();
                    if events {
                        report.queue();
                    }
                    if problems {
                        report.errors();
                    }
                    send_now.notify_one();
                }
            })
            .map_err(|e| AgentError::Setup(e.to_string()))?
    };

    // Screen pops.
    let pop_task = tokio::spawn(notifier(pop_rx, lang));

    // Sending. A stop waits for the pass in flight, then the loop ends.
    let (stop_sender, mut stopping) = watch::channel(false);
    let sender_task = {
        let (outbox, errors, send_now, report, session) = (
            outbox.clone(),
            errors.clone(),
            send_now.clone(),
            report.clone(),
            session.clone(),
        );
        let interval = Duration::from_secs(app.config.activity.send_interval_secs);
        let ext = app.config.activity.external_id();
        let event_ext = app.config.meeting.external_id();
        tokio::spawn(async move {
            let mut last_net: Option<String> = None;
            while !*stopping.borrow() {
                let client = session.client();
                if let Some(c) = &client {
                    let sender = Sender {
                        client: c,
                        outbox: &outbox,
                        external_id: ext.clone(),
                        event_external_id: event_ext.clone(),
                        errors: Some(&errors),
                    };
                    match sender.send_due().await {
                        Ok(r) => {
                            match &r.last_error {
                                Some(e) => note_network(&errors, &mut last_net, "sending Tasks", e),
                                None if r.sent > 0 => last_net = None,
                                None => {}
                            }
                            let signed_out =
                                r.stopped.as_deref().is_some_and(|s| s.contains("sign-in"));
                            if signed_out {
                                session.reset();
                            }
                            report.update(|s| {
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
                                report.queue();
                            }
                            if r.parked > 0 || r.last_error.is_some() {
                                report.errors();
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "outbox"),
                    }
                }
                // Nothing queued: sleep until the pipeline queues something (no polling);
                // the long backstop only re-reads a sign-in made by `callsync connect`.
                let nap = if client.is_some() && report.tx.borrow().pending > 0 {
                    interval
                } else {
                    IDLE_SEND_CHECK
                };
                tokio::select! {
                    _ = send_now.notified() => {}
                    _ = stopping.changed() => {}
                    _ = tokio::time::sleep(nap) => {}
                }
            }
        })
    };

    // Syncing.
    let sync_task = {
        let (cache, errors, report, session) = (
            cache.clone(),
            errors.clone(),
            report.clone(),
            session.clone(),
        );
        let app = app.clone();
        let (activity, calls_resumed, sync_now) =
            (activity.clone(), calls_resumed.clone(), sync_now.clone());
        tokio::spawn(async move {
            let mut failures = 0u32;
            let mut last_net: Option<String> = None;
            let mut rng = fastrand::Rng::new();
            loop {
                let mut rate_limited = false;
                let mut api_share = None;
                match session.client() {
                    Some(client) => {
                        let r = app
                            .sync(&cache, &client, false, &mut |_, done, total| {
                                let pct = (done * 100).checked_div(total).unwrap_or(0).min(99);
                                report.update(|s| s.syncing = Some(pct as u8));
                            })
                            .await;
                        report.update(|s| s.syncing = None);
                        match r {
                            Ok(_) => {
                                failures = 0;
                                last_net = None;
                                report.update(|s| {
                                    s.last_sync_ms = Some(now_ms());
                                    s.offline = None;
                                    s.sign_in_needed = false;
                                });
                            }
                            Err(e) => {
                                failures += 1;
                                if let crate::sync::SyncError::Salesforce(s) = &e {
                                    match s {
                                        SfError::Network(m) => {
                                            note_network(&errors, &mut last_net, "sync", m);
                                            let m = m.clone();
                                            report.update(|s| s.offline = Some(m));
                                        }
                                        SfError::SignInNeeded { .. } => {
                                            report.update(|s| s.sign_in_needed = true);
                                            session.reset();
                                        }
                                        _ => {}
                                    }
                                }
                                rate_limited = matches!(&e, crate::sync::SyncError::Salesforce(s) if s.is_rate_limited());
                                tracing::warn!(error = %e, "sync failed");
                            }
                        }
                        api_share = client.api_usage().map(|(u, m)| u as f64 / m.max(1) as f64);
                    }
                    None => failures = failures.max(1),
                }
                report.sign_in(&app);
                report.records(&cache);
                report.errors();
                release_free_memory();
                let synced = tokio::time::Instant::now();
                let jitter = rng.f64();
                let plan = || {
                    let (calls_flowing, idle) = activity.state(now_ms());
                    next_delay(ScheduleInput {
                        calls_flowing,
                        idle,
                        api_share,
                        failures,
                        rate_limited,
                        jitter,
                        ..ScheduleInput::from_config(&app.config.sync)
                    })
                };
                // Calls resuming after a quiet (or idle) spell shorten the wait already begun;
                // "Sync now" ends it.
                let mut until = synced + plan();
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        _ = sync_now.notified() => break,
                        _ = calls_resumed.notified() => until = until.min(synced + plan()),
                    }
                }
            }
        })
    };

    // Requests from the tray and the control socket.
    let ctx = Ctx {
        app: app.clone(),
        outbox: outbox.clone(),
        report: report.clone(),
        send_now: send_now.clone(),
        sync_now: sync_now.clone(),
        quit: quit.clone(),
        restart: ends.restart.clone(),
        activity: activity.clone(),
        lang,
    };
    let request_task = tokio::spawn(serve_requests(ends.requests, ctx));

    tracing::info!("agent running");
    tokio::select! {
        _ = stop => {}
        _ = quit.notified() => {}
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
    outbox.flush()?;
    cache.flush()?;
    drop(pipe);
    Ok(())
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

struct Ctx {
    app: App,
    outbox: Arc<Outbox>,
    report: Arc<Reporter>,
    send_now: Arc<Notify>,
    sync_now: Arc<Notify>,
    quit: Arc<Notify>,
    restart: Arc<std::sync::atomic::AtomicBool>,
    activity: Arc<Activity>,
    lang: Lang,
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

async fn serve_requests(mut rx: mpsc::Receiver<Envelope>, ctx: Ctx) {
    while let Some((req, back)) = rx.recv().await {
        if req != Request::Status {
            ctx.activity.note_input(now_ms());
        }
        let quit = matches!(req, Request::Quit | Request::Restart);
        if req == Request::Restart {
            ctx.restart.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let result = handle(&ctx, req).await;
        let st = ctx.report.tx.borrow().clone();
        let _ = back.send(match result {
            Ok(()) => Response::ok(st),
            Err(e) => Response::error(e),
        });
        if quit {
            // After the answer: the asker learns the agent is stopping.
            ctx.quit.notify_one();
        }
    }
}

async fn handle(ctx: &Ctx, req: Request) -> Result<(), String> {
    match req {
        Request::Status => {}
        Request::Show => {
            let st = ctx.report.tx.borrow().clone();
            notify(
                i18n::text(ctx.lang, &Msg::AlreadyRunning),
                crate::state::status_line(&st, ctx.lang, now_ms()),
            );
        }
        Request::SyncNow => {
            ctx.sync_now.notify_one();
            ctx.send_now.notify_one();
        }
        Request::Pause => {
            ctx.outbox
                .set_paused(Some(
                    "paused from the tray menu (Resume sending restarts it)",
                ))
                .map_err(|e| e.to_string())?;
            ctx.report.queue();
        }
        Request::Resume => {
            ctx.outbox.set_paused(None).map_err(|e| e.to_string())?;
            ctx.report.queue();
            ctx.send_now.notify_one();
        }
        Request::SignOut => {
            ctx.app.sign_out().await.map_err(|e| e.to_string())?;
            ctx.outbox
                .set_paused(Some(
                    "signed out from the tray; the queue is kept and sent after signing in again",
                ))
                .map_err(|e| e.to_string())?;
            ctx.report.sign_in(&ctx.app);
            ctx.report.queue();
        }
        Request::SignIn => {
            // The browser flow waits for the user: run it beside the request loop.
            let app = ctx.app.clone();
            let (outbox, report, sync_now, send_now) = (
                ctx.outbox.clone(),
                ctx.report.clone(),
                ctx.sync_now.clone(),
                ctx.send_now.clone(),
            );
            tokio::spawn(async move {
                let open = |url: &str| {
                    if let Err(e) = webbrowser::open(url) {
                        tracing::warn!(error = %e, "cannot open the browser for sign-in");
                    }
                };
                let done = match app.sign_in(open, Duration::from_secs(300)).await {
                    Ok((t, method)) => app.complete_sign_in(&t, method).await,
                    Err(e) => Err(e),
                };
                match done {
                    Ok(stored) => {
                        // Another org's queue stays held (`callsync connect --send-queue-here`
                        // hands it over, asked).
                        if let Err(e) = outbox.adopt_sign_in(&stored.org_id, false) {
                            tracing::warn!(error = %e, "the Task queue after sign-in");
                        }
                        report.update(|s| s.sign_in_needed = false);
                        report.sign_in(&app);
                        report.queue();
                        sync_now.notify_one();
                        send_now.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sign-in from the tray failed");
                        let _ = report.errors.append(&ErrorEntry::now(
                            "sign-in",
                            "tray",
                            e.to_string(),
                        ));
                        report.errors();
                    }
                }
            });
        }
        Request::OpenLogs => open_path(&ctx.app.data.logs()),
        Request::OpenSettings => {
            let path = settings_file(&ctx.app).map_err(|e| e.to_string())?;
            open_path(&path);
        }
        Request::Explain { index } => {
            let st = ctx.report.tx.borrow().clone();
            let e = st
                .errors
                .get(index)
                .ok_or_else(|| format!("no error #{index}"))?;
            let (title, body) = crate::state::explanation(e);
            notify(title, body);
        }
        Request::OpenRecord { url } => {
            // Only pages of the org signed in to: the socket is no general URL opener.
            let base = ctx.report.tx.borrow().instance_url.clone();
            match base {
                Some(b) if url.starts_with(&format!("{}/", b.trim_end_matches('/'))) => {
                    webbrowser::open(&url).map_err(|e| e.to_string())?;
                }
                _ => return Err("not a page of the org signed in to".into()),
            }
        }
        Request::Quit | Request::Restart => {}
    }
    Ok(())
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
