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

use crate::control::{Envelope, Request, Response};
use callsync_app::app::{App, Pacing};
use callsync_core::errors::ErrorEntry;
use callsync_core::event::CallEvent;
use callsync_core::i18n::{self, Lang, Msg};
use callsync_core::pop::{self, Pop, PopMode};
use callsync_core::record::ObjectKind;
use callsync_core::schedule::Activity;
use callsync_core::state::{AgentState, MENU_ERRORS};
use callsync_core::wire::SfError;
use callsync_salesforce::client::Client;
use callsync_store::cache::Cache;
use callsync_store::errorlog::ErrorLog;
use callsync_store::outbox::Outbox;

mod callers;
mod loops;
mod pops;
mod report;
mod requests;

use pops::{notifier, pop_for};
use report::{Reporter, Session};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How often the sender looks on its own when nothing is queued (new Tasks wake it at once).
const IDLE_SEND_CHECK: Duration = Duration::from_secs(60);

/// How long a stop waits for a send in flight before leaving it queued.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Cache(#[from] callsync_store::cache::CacheError),
    #[error(transparent)]
    Outbox(#[from] callsync_store::outbox::OutboxError),
    #[error("{0}")]
    Setup(String),
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
    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))] // no macOS tray yet
    pub(crate) fn fire(&self, req: Request) {
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

/// Everything the agent's tasks share.
struct Core {
    app: App,
    cache: Arc<Cache>,
    outbox: Arc<Outbox>,
    errors: Arc<ErrorLog>,
    report: Arc<Reporter>,
    session: Session,
    normalizer: callsync_core::phone::Normalizer,
    rules: callsync_core::lookup::LookupRules,
    send_now: Notify,
    sync_now: Notify,
    quit: Notify,
    calls_resumed: Notify,
    restart: Arc<AtomicBool>,
    activity: Activity,
    lang: Lang,
    /// Sync cycles started and finished (a miss waits for the next one).
    cycles: watch::Sender<callers::Cycles>,
    miss_gate: callers::MissGate,
    /// Pops shown per call (an answer replaces its "Looking up…").
    shown: callers::Shown,
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
        |e| matches!(e, callsync_store::cache::CacheError::Locked(_)),
    )
    .await?;
    let cache = Arc::new(cache);
    let outbox = Arc::new(
        retry_locked(
            || Outbox::open(&app.data.outbox()),
            |e| matches!(e, callsync_store::outbox::OutboxError::Locked(_)),
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
        started_at: callsync_core::record::format_sf_datetime(started),
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
        cycles: watch::channel(callers::Cycles::default()).0,
        miss_gate: callers::MissGate::default(),
        shown: callers::Shown::default(),
    });

    let (pop_tx, pop_rx) = mpsc::unbounded_channel::<Pop>();
    let (miss_tx, miss_rx) = mpsc::unbounded_channel();
    let (pipe, _follow) = core.start_pipeline(pop_tx.clone(), miss_tx)?;
    let pop_task = tokio::spawn(notifier(core.clone(), pop_rx));
    let miss_task = tokio::spawn(core.clone().refresh_misses(miss_rx, pop_tx));
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
    miss_task.abort();
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
        miss_tx: mpsc::UnboundedSender<callers::Miss>,
    ) -> Result<(std::thread::JoinHandle<()>, std::thread::JoinHandle<()>), AgentError> {
        let app = &self.app;
        let sources = app.call_logs().map_err(AgentError::Setup)?;
        let (deliveries, follow) = app
            .follow_calls(sources, "agent-cursors.json")
            .map_err(|e| AgentError::Setup(format!("call logs: {e}")))?;
        let setup = callsync_app::pipeline::PipelineSetup::of(app);
        let pop_mode = app.config.ui.screen_pop;
        let core = self.clone();
        let pipe = std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || {
                let p = setup.pipeline(&core.outbox, Some(&core.cache), &core.normalizer, &core.rules);
                for d in deliveries {
                    // Before the Task writes: the agent is waiting for the name, not the queue.
                    for e in &d.batch.events {
                        if let Some(pop) = pop_for(e, &core.outbox, pop_mode, |number| {
                            core.ring(&e.call_id, number, &miss_tx)
                        }) {
                            let _ = pop_tx.send(pop);
                        }
                        core.unpopped(e, pop_mode, &miss_tx);
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
    fn adopt_sign_in(&self, send_queue_here: bool) -> Option<callsync_app::app::SignInApplied> {
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
}
