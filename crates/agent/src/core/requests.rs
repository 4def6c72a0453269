//! Requests from the tray and the control socket, answered one at a time by the core.

use super::*;

impl Core {
    pub(super) async fn serve_requests(self: Arc<Self>, mut rx: mpsc::Receiver<Envelope>) {
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

    pub(super) async fn handle(
        self: Arc<Self>,
        req: Request,
    ) -> Result<Option<serde_json::Value>, String> {
        let json = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map(Some).map_err(|e| e.to_string())
        };
        match req {
            Request::Status => {}
            Request::Show => {
                let st = self.report.tx.borrow().clone();
                notify(
                    i18n::text(self.lang, &Msg::AlreadyRunning),
                    callsync_core::state::status_line(&st, self.lang, now_ms()),
                );
            }
            Request::SyncNow => {
                self.sync_now.notify_one();
                self.send_now.notify_one();
            }
            Request::Pause => {
                self.outbox
                    .pause(
                        callsync_store::outbox::PauseKind::User,
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
                        callsync_store::outbox::PauseKind::SignedOut,
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
                let (title, body) = callsync_core::state::explanation(e);
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
                let r = callsync_store::lookup::lookup(
                    &self.cache,
                    &self.normalizer,
                    &self.rules,
                    &number,
                )
                .map_err(|e| e.to_string())?;
                return json(serde_json::to_value(r));
            }
            Request::Pick { call_id, record_id } => {
                let picked = self.pick(&call_id, &record_id)?;
                return json(serde_json::to_value(picked));
            }
            Request::CacheStats => {
                return json(serde_json::to_value(
                    self.cache.stats().map_err(|e| e.to_string())?,
                ))
            }
            Request::TrayMenu { x, y } => {
                if std::env::var_os("CALLSYNC_TEST_HOOKS").is_none_or(|v| v != "1") {
                    return Err(
                        "test hooks are off (start the agent with CALLSYNC_TEST_HOOKS=1)".into(),
                    );
                }
                #[cfg(windows)]
                crate::winui::post(crate::winui::UiCmd::Menu { x, y });
                #[cfg(not(windows))]
                return Err(format!(
                    "no menu to open at {x},{y}: the tray menu hook is for Windows (a Linux tray is clicked)"
                ));
            }
            Request::Quit | Request::Restart => {}
        }
        Ok(None)
    }
}

/// A plain notification (no action), shown off the async threads.
pub(super) fn notify(summary: String, body: String) {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::popup::notice(&summary, &body) {
            tracing::info!(error = %e, %summary, %body, "no desktop notification");
        }
    });
}

pub(super) fn open_path(p: &std::path::Path) {
    let p = p.to_owned();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = open::that_detached(&p) {
            tracing::warn!(error = %e, path = %p.display(), "cannot open");
        }
    });
}

/// The user's settings file, created from the annotated example when there is none yet (so
/// "Open settings file" always opens something to edit).
pub(super) fn settings_file(app: &App) -> std::io::Result<std::path::PathBuf> {
    let path = app
        .settings_file
        .clone()
        .or_else(callsync_store::paths::default_user_config)
        .unwrap_or_else(|| app.data.root().join("config.toml"));
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let commented: String = callsync_config::EXAMPLE
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
