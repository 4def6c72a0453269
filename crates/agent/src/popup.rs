//! Showing screen pops and notices on the desktop. `notify-rust`'s `show()` blocks on D-Bus, so
//! the agent calls these on a blocking thread and never holds up the call pipeline.

use callsync_core::i18n::{self, Lang, Msg};
use callsync_core::pop::Pop;

/// A callsync notification with no action (status, explanations). Blocks on D-Bus.
pub(crate) fn notice(summary: &str, body: &str) -> Result<(), String> {
    notification(summary, body)
        .show()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn notification(summary: &str, body: &str) -> notify_rust::Notification {
    let mut n = notify_rust::Notification::new();
    n.appname("callsync").summary(summary).body(body);
    n
}

/// Shows `pop`; a click or the "open" action calls `open` with the record's URL. Blocks until
/// the notification is closed (run it on a blocking thread).
pub fn show(pop: &Pop, lang: Lang, open: impl FnOnce(&str)) -> Result<(), String> {
    let mut n = notification(&pop.summary, &pop.body);
    n.icon("call-start")
        .timeout(notify_rust::Timeout::Milliseconds(30_000));
    if pop.url.is_some() {
        n.action("default", &i18n::text(lang, &Msg::OpenRecord));
        n.action("open", &i18n::text(lang, &Msg::OpenRecord));
    }
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let handle = n.show().map_err(|e| e.to_string())?;
        tracing::info!(call = %pop.call_id, "screen pop shown");
        if let Some(url) = &pop.url {
            handle.wait_for_action(|action| {
                if action == "default" || action == "open" {
                    open(url);
                }
            });
        }
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    {
        // Windows toasts and macOS notifications have no action callback in notify-rust.
        let _ = open;
        n.show().map_err(|e| e.to_string())?;
        tracing::info!(call = %pop.call_id, "screen pop shown");
    }
    Ok(())
}
