//! `callsync run` (the agent) and `callsync agent …` (asking it).

use anyhow::Context;

use callsync_app::App;

use crate::cli::args::AgentCmd;
use crate::cli::{exit, runtime};

/// Completes on Ctrl-C, SIGTERM (service stop, logout) or SIGHUP (terminal closed).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(windows)]
    {
        // Installers and logoff close the hidden window; a console sends Ctrl-C.
        let close = callsync_agent::winui::close_requested();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = close.notified() => {}
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `callsync run`: one agent per user. A second start asks the running one to show itself.
pub fn agent(app: App, headless: bool) -> anyhow::Result<u8> {
    use callsync_agent::control::{self, ControlError, InstanceLock, Request};
    let lock = match InstanceLock::acquire(&app.data) {
        Ok(l) => l,
        Err(ControlError::AlreadyRunning(pid)) => {
            match control::call(&app.data, &Request::Show, std::time::Duration::from_secs(3)) {
                Ok(_) => {
                    outln!("callsync is already running (pid {pid}); it was asked to show itself")
                }
                Err(e) => eprintln!(
                    "callsync: another agent holds {} (pid {pid}) but does not answer: {e}",
                    app.data.root().join("agent.lock").display()
                ),
            }
            return Ok(exit::OK);
        }
        Err(e) => return Err(e.into()),
    };
    let rt = runtime()?;
    let listener = {
        let _guard = rt.enter();
        control::bind(&control::socket_path(&app.data))?
    };
    let (ends, handle) = callsync_agent::endpoints();
    let lang = app.config.ui.lang();
    let tray = !headless
        && match callsync_agent::tray::probe() {
            Ok(true) => true,
            Ok(false) => {
                eprintln!("callsync: warning: no tray host is running (StatusNotifierWatcher); the icon appears when one starts");
                tracing::warn!("no tray host yet");
                true
            }
            Err(e) => {
                eprintln!("callsync: warning: {e}; running headless (status: `callsync status`)");
                tracing::warn!(error = %e, "no tray; running headless");
                false
            }
        };
    tracing::info!(tray, pid = std::process::id(), lock = %lock.path().display(), "starting the agent");
    let core = rt.spawn(callsync_agent::run(app, stop_signal(), ends));
    rt.spawn(listener.serve(handle.requests.clone()));
    #[cfg(windows)]
    let result = ui_thread(&rt, core, &handle, tray, lang);
    #[cfg(not(windows))]
    let result = rt.block_on(async {
        let mut core = core;
        let r = if tray {
            tokio::select! {
                r = &mut core => Some(r),
                t = callsync_agent::tray::run(handle.clone(), lang) => {
                    if let Err(e) = t {
                        tray_failed(&e);
                    }
                    None
                }
            }
        } else {
            None
        };
        let r = match r {
            Some(r) => r,
            None => core.await,
        };
        // Lets the answer to a Quit request reach the asker.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        r
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result??;
    drop(lock);
    if handle.restart_requested() {
        tracing::info!("restarting to apply new settings");
        return restart_self();
    }
    outln!("stopped");
    Ok(exit::OK)
}

#[cfg(windows)]
type CoreResult = Result<Result<(), callsync_agent::AgentError>, tokio::task::JoinError>;

fn tray_failed(e: &callsync_agent::tray::TrayError) {
    eprintln!("callsync: warning: {e}; running headless");
    tracing::warn!(error = %e, "tray failed; running headless");
}

/// Windows: the main thread is the UI thread ([`callsync_agent::winui`]): the hidden close
/// window and the tray share its message loop, which runs until the core stops.
#[cfg(windows)]
fn ui_thread(
    rt: &tokio::runtime::Runtime,
    core: tokio::task::JoinHandle<Result<(), callsync_agent::AgentError>>,
    handle: &callsync_agent::Handle,
    tray: bool,
    lang: callsync_core::i18n::Lang,
) -> CoreResult {
    use callsync_agent::winui::{self, UiCmd};
    if tray {
        let handle = handle.clone();
        rt.spawn(async move {
            if let Err(e) = callsync_agent::tray::run(handle, lang).await {
                tray_failed(&e);
            }
        });
    }
    let done = rt.spawn(async move {
        let r = core.await;
        winui::post(UiCmd::Quit);
        r
    });
    winui::run();
    rt.block_on(async {
        let r = done.await.and_then(|r| r);
        // Lets the answer to a Quit request reach the asker.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        r
    })
}

/// Starts this program again with the same arguments: on Unix in place (same pid, so a
/// systemd unit or a supervisor keeps following it), elsewhere as a new process.
fn restart_self() -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("cannot find the callsync executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        Err(anyhow::anyhow!("cannot restart: {e}"))
    }
    #[cfg(not(unix))]
    {
        cmd.spawn().context("cannot restart")?;
        Ok(exit::OK)
    }
}

/// `callsync agent …`: asks the running agent.
pub fn ask(app: &App, cmd: AgentCmd) -> anyhow::Result<u8> {
    use callsync_agent::control::{self, ControlError, Request};
    let req = match cmd {
        AgentCmd::Show => Request::Show,
        AgentCmd::Pause => Request::Pause,
        AgentCmd::Resume => Request::Resume,
        AgentCmd::Sync => Request::SyncNow,
        AgentCmd::Quit => Request::Quit,
        AgentCmd::Restart => Request::Restart,
        AgentCmd::Menu { x, y } => Request::TrayMenu { x, y },
    };
    match control::call(&app.data, &req, std::time::Duration::from_secs(10)) {
        Ok(r) if r.ok => {
            outln!("ok");
            Ok(exit::OK)
        }
        Ok(r) => {
            eprintln!(
                "callsync: the agent refused: {}",
                r.error.unwrap_or_default()
            );
            Ok(exit::FAILURE)
        }
        Err(ControlError::NotRunning) => {
            eprintln!("callsync: the agent is not running (start it with `callsync run`)");
            Ok(exit::UNAVAILABLE)
        }
        Err(e) => Err(e.into()),
    }
}
