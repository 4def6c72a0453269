//! Screen pops: which events pop (the rule is `callsync_core::pop`'s) and showing them.

use super::*;

/// The screen pop for an event, or `None`. The direction comes from the event, or from the
/// call record the pipeline keeps for events that carry no call info.
pub(super) fn pop_for(
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
    if !pop::wanted(mode, e, info.direction, now_ms()) {
        return None;
    }
    pop(&info.remote)
}

/// Shows screen pops as they come, each on a blocking thread (`show` waits for a click).
pub(super) async fn notifier(mut pops: mpsc::UnboundedReceiver<Pop>, lang: Lang) {
    let warned = Arc::new(AtomicBool::new(false));
    while let Some(pop) = pops.recv().await {
        let warned = warned.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::popup::show(&pop, lang, |url| {
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
