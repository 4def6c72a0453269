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

/// Shows screen pops as they come, each on a blocking thread (`show` waits for a click). An
/// answer replaces its call's "Looking up…"; a pop's buttons pick another match.
pub(super) async fn notifier(core: Arc<Core>, mut pops: mpsc::UnboundedReceiver<Pop>) {
    let warned = Arc::new(AtomicBool::new(false));
    while let Some(pop) = pops.recv().await {
        let warned = warned.clone();
        let core = core.clone();
        tokio::task::spawn_blocking(move || {
            let replaces = pop
                .replaces
                .then(|| core.shown.wait_for(&pop.call_id, Duration::from_secs(2)))
                .flatten();
            let shown = |id| core.shown.set(&pop.call_id, id);
            let act = |action: &str| {
                if let Some(record) = action.strip_prefix("pick:") {
                    if let Err(e) = core.pick(&pop.call_id, record) {
                        tracing::warn!(error = %e, "the pop's choice");
                    }
                } else if let Some(url) = &pop.url {
                    if let Err(e) = webbrowser::open(url) {
                        tracing::warn!(error = %e, "cannot open the browser");
                    }
                }
            };
            if let Err(e) = crate::popup::show(&pop, core.lang, replaces, shown, act) {
                if !warned.swap(true, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "cannot show desktop notifications (screen pops are off until one works)");
                }
            }
        });
    }
}
