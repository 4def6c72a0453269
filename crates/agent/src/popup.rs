//! Showing screen pops and notices on the desktop. Linux (and macOS) use `notify-rust`, whose
//! `show()` blocks on D-Bus, so the agent calls these on a blocking thread and never holds up
//! the call pipeline. Windows shows a toast when the MSI's Start-menu shortcut gives the agent
//! an AppUserModelID, else (Wine, a copied exe, an older system, a failed toast) a balloon on
//! the tray icon, which Windows 10/11 also show as a toast; a click on either opens the record.

use callsync_core::i18n::{self, Lang, Msg};
use callsync_core::pop::Pop;

/// A callsync notification with no action (status, explanations).
pub(crate) fn notice(summary: &str, body: &str) -> Result<(), String> {
    imp::notice(summary, body)
}

/// Shows `pop`, in place of notification `replaces` when given (its "Looking up…"), and
/// tells `shown` its id. A click or the "open" action calls `act("open")` (on Windows the
/// tray's click path opens the record instead), a choice button `act("pick:<record Id>")`.
/// Blocks until the notification is closed on Linux (run it on a blocking thread).
pub fn show(
    pop: &Pop,
    lang: Lang,
    replaces: Option<u32>,
    shown: impl FnOnce(u32),
    act: impl FnMut(&str),
) -> Result<(), String> {
    imp::show(pop, lang, replaces, shown, act)
}

#[cfg(not(windows))]
mod imp {
    use super::*;

    fn notification(summary: &str, body: &str) -> notify_rust::Notification {
        let mut n = notify_rust::Notification::new();
        n.appname("callsync").summary(summary).body(body);
        n
    }

    pub(super) fn notice(summary: &str, body: &str) -> Result<(), String> {
        notification(summary, body)
            .show()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub(super) fn show(
        pop: &Pop,
        lang: Lang,
        replaces: Option<u32>,
        shown: impl FnOnce(u32),
        mut act: impl FnMut(&str),
    ) -> Result<(), String> {
        let mut n = notification(&pop.summary, &pop.body);
        n.icon("call-start")
            .timeout(notify_rust::Timeout::Milliseconds(30_000));
        if let Some(id) = replaces {
            n.id(id);
        }
        if pop.url.is_some() {
            n.action("default", &i18n::text(lang, &Msg::OpenRecord));
            n.action("open", &i18n::text(lang, &Msg::OpenRecord));
        }
        for c in &pop.choices {
            n.action(&format!("pick:{}", c.record_id), &c.label);
        }
        #[cfg(not(target_os = "macos"))]
        {
            let handle = n.show().map_err(|e| e.to_string())?;
            shown(handle.id());
            tracing::info!(call = %pop.call_id, replaced = replaces.is_some(), "screen pop shown");
            if pop.url.is_some() || !pop.choices.is_empty() {
                handle.wait_for_action(|action| {
                    if action == "default" || action == "open" {
                        act("open");
                    } else if action.starts_with("pick:") {
                        act(action);
                    }
                });
            }
        }
        #[cfg(target_os = "macos")]
        {
            // macOS notifications have no action callback in notify-rust.
            let _ = (&mut act, shown);
            n.show().map_err(|e| e.to_string())?;
            tracing::info!(call = %pop.call_id, "screen pop shown");
        }
        Ok(())
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use crate::winui::{self, UiCmd};

    /// The AppUserModelID the MSI's Start-menu shortcut carries (packaging/windows/callsync.wxs).
    const APP_ID: &str = "callsync.agent";

    /// The MSI installed the shortcut with [`APP_ID`]: toasts can be attributed to callsync.
    /// Without it Windows drops them or labels them with another program's name. Read once:
    /// an install or upgrade restarts the agent.
    fn shortcut_installed() -> bool {
        static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *INSTALLED.get_or_init(|| {
            winreg::RegKey::predef(winreg::enums::HKEY_LOCAL_MACHINE)
                .open_subkey(r"Software\callsync")
                .and_then(|k| k.get_value::<u32, _>("StartMenuShortcut"))
                .is_ok_and(|v| v == 1)
        })
    }

    /// A WinRT toast; a click on it (or on "Open in Salesforce") opens the record. Coded to
    /// the documented API (ToastNotificationManager with the shortcut's AppUserModelID):
    /// untested here, Wine has no WinRT XML DOM.
    fn toast(pop: &Pop, lang: Lang) -> Result<(), String> {
        use tauri_winrt_notification::Toast;
        let mut t = Toast::new(APP_ID).title(&pop.summary).text1(&pop.body);
        if let Some(url) = pop.url.clone() {
            t = t
                .add_button(&i18n::text(lang, &Msg::OpenRecord), "open")
                .on_activated(move |_| {
                    if let Err(e) = webbrowser::open(&url) {
                        tracing::warn!(error = %e, "cannot open the browser");
                    }
                    Ok(())
                });
        }
        t.show().map_err(|e| e.to_string())
    }

    /// A balloon on the tray icon, shown by the UI thread; waits for its answer.
    fn balloon(title: &str, body: &str, url: Option<String>) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        winui::post(UiCmd::Balloon {
            title: title.to_owned(),
            body: body.to_owned(),
            url,
            shown: Some(tx),
        });
        rx.blocking_recv()
            .map_err(|_| "the agent's window is gone".to_owned())?
    }

    pub(super) fn notice(summary: &str, body: &str) -> Result<(), String> {
        balloon(summary, body, None)
    }

    /// A balloon replaces the one shown before by itself (one per icon); it has no buttons:
    /// the tray's "Current call" menu picks another match.
    pub(super) fn show(
        pop: &Pop,
        lang: Lang,
        _replaces: Option<u32>,
        shown: impl FnOnce(u32),
        act: impl FnMut(&str),
    ) -> Result<(), String> {
        // A balloon's click goes through the tray (`open:<url>` → OpenRecord).
        let _ = act;
        shown(0);
        if shortcut_installed() {
            match toast(pop, lang) {
                Ok(()) => {
                    tracing::info!(call = %pop.call_id, "screen pop shown (toast)");
                    return Ok(());
                }
                Err(e) => tracing::info!(error = %e, "no toast; a tray balloon instead"),
            }
        }
        balloon(&pop.summary, &pop.body, pop.url.clone())?;
        tracing::info!(call = %pop.call_id, "screen pop shown (balloon)");
        Ok(())
    }
}
