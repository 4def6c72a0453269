//! Following call logs: a [`Follower`] polls every source from its acknowledged cursor, and a
//! [`Waker`] says when to poll: a (debounced) change in a source's directory, or the polling
//! backstop for filesystems that send no events (network shares). Directories are watched, not
//! files: logs get created late, replaced and rotated.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::cursor::{Cursor, CursorStore};
use super::{CallEvent, Source, SourceProblem};

/// What one source produced since the last acknowledged batch.
#[derive(Debug)]
pub struct Batch {
    pub source: String,
    pub events: Vec<CallEvent>,
    pub problems: Vec<SourceProblem>,
    /// The source's position right after this batch: what acknowledging it saves.
    end: Cursor,
}

pub struct Follower {
    sources: Vec<Box<dyn Source>>,
    store: CursorStore,
    /// Saved: what consumers have acknowledged.
    acked: BTreeMap<String, Cursor>,
    /// In memory: after the batches handed out but not yet acknowledged.
    pending: BTreeMap<String, Cursor>,
    /// Batches handed out and not yet acknowledged, per source.
    in_flight: BTreeMap<String, usize>,
}

impl Follower {
    pub fn new(sources: Vec<Box<dyn Source>>, store: CursorStore) -> io::Result<Follower> {
        let acked = store.load()?;
        Ok(Follower {
            sources,
            store,
            pending: acked.clone(),
            acked,
            in_flight: BTreeMap::new(),
        })
    }

    /// Directories to watch.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut d: Vec<PathBuf> = self
            .sources
            .iter()
            .filter_map(|s| s.path().parent().map(Path::to_owned))
            .collect();
        d.sort();
        d.dedup();
        d
    }

    /// Polls every source; returns the non-empty batches and whether a source asked to be
    /// polled again soon (file busy).
    pub fn poll(&mut self) -> (Vec<Batch>, bool) {
        let mut out = Vec::new();
        let mut retry = false;
        for s in &mut self.sources {
            let name = s.name().to_owned();
            let from = self.pending.get(&name).cloned().unwrap_or_default();
            let p = s.poll(&from);
            retry |= p.retry_soon;
            let moved = p.next != from;
            self.pending.insert(name.clone(), p.next.clone());
            if !p.events.is_empty() || !p.problems.is_empty() {
                *self.in_flight.entry(name.clone()).or_default() += 1;
                out.push(Batch {
                    source: name,
                    events: p.events,
                    problems: p.problems,
                    end: p.next,
                });
            } else if moved && self.in_flight.get(&name).copied().unwrap_or(0) == 0 {
                // Only the position moved (blank lines, a rotation) and nothing handed out is
                // waiting: nothing can be lost by saving it.
                self.acked.insert(name.clone(), p.next);
                let _ = self.store.save(&self.acked);
            }
        }
        (out, retry)
    }

    /// The consumer has durably handled `batch`: its source's cursor is saved. Until then a
    /// restart hands the same events out again.
    pub fn ack(&mut self, batch: &Batch) -> io::Result<()> {
        // Exactly this batch's end: later batches already read stay unacknowledged.
        self.acked.insert(batch.source.clone(), batch.end.clone());
        if let Some(n) = self.in_flight.get_mut(&batch.source) {
            *n = n.saturating_sub(1);
        }
        self.store.save(&self.acked)
    }
}

/// Wakes the follower on filesystem events. A plain `notify` watcher: the event arrives on
/// notify's own thread and wakes the follower at once; bursts are coalesced in [`Waker::wait`].
/// (notify-debouncer-full was used before: its thread ticks every quarter of the debounce
/// period, 200 wake-ups a second at 20 ms, which cost 0.28 s of CPU per 30 s idle.)
pub struct Waker {
    rx: mpsc::Receiver<()>,
    tx: mpsc::Sender<()>,
    watcher: notify::RecommendedWatcher,
    dirs: Vec<PathBuf>,
    watching: Vec<PathBuf>,
}

/// Changes that can mean new call-log lines. Opens and reads are not: the follower's own reads
/// would wake it again, forever.
fn relevant(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

impl Waker {
    /// `_debounce` is kept for callers; bursts are coalesced in [`Waker::wait`] instead.
    pub fn new(dirs: Vec<PathBuf>, _debounce: Duration) -> notify::Result<Waker> {
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|e| relevant(&e.kind)) {
                let _ = t.send(());
            }
        })?;
        let mut w = Waker {
            rx,
            tx,
            watcher,
            dirs,
            watching: Vec::new(),
        };
        w.watch_new_dirs();
        Ok(w)
    }

    /// Starts watching directories that exist now (a softphone's data folder may appear late).
    fn watch_new_dirs(&mut self) {
        for d in self.dirs.clone() {
            if !self.watching.contains(&d)
                && d.is_dir()
                && self.watcher.watch(&d, RecursiveMode::NonRecursive).is_ok()
            {
                tracing::debug!(dir = %d.display(), "watching");
                self.watching.push(d.clone());
                // It may have been created with a log already in it.
                let _ = self.tx.send(());
            }
        }
    }

    /// Waits for a change or `timeout` (the backstop); true if something changed.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        self.watch_new_dirs();
        let woke = self.rx.recv_timeout(timeout).is_ok();
        // Coalesce a burst.
        while self.rx.try_recv().is_ok() {}
        woke
    }

    /// A handle that wakes the follower from elsewhere (stop requests, tests).
    pub fn handle(&self) -> mpsc::Sender<()> {
        self.tx.clone()
    }
}

/// A batch handed to a consumer over a channel; `ack` once it is durably handled.
pub struct Delivery {
    pub batch: Batch,
    ack: mpsc::Sender<Batch>,
    wake: mpsc::Sender<()>,
}

impl Delivery {
    /// Marks the batch handled: the follower wakes and saves its cursor.
    pub fn ack(self) {
        let _ = self.ack.send(self.batch);
        let _ = self.wake.send(());
    }
}

/// Runs a follower on its own thread: batches go out on the returned channel as they appear,
/// acknowledgements come back, and the cursor only moves when they do. Dropping the receiver
/// stops the thread.
pub fn spawn(
    mut follower: Follower,
    mut waker: Waker,
    backstop: Duration,
) -> io::Result<(mpsc::Receiver<Delivery>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Delivery>();
    let (ack_tx, ack_rx) = mpsc::channel::<Batch>();
    let wake = waker.handle();
    let handle = std::thread::Builder::new()
        .name("calllog".into())
        .spawn(move || loop {
            while let Ok(b) = ack_rx.try_recv() {
                if let Err(e) = follower.ack(&b) {
                    tracing::warn!(error = %e, "cannot save the call-log position");
                }
            }
            let (batches, retry) = follower.poll();
            for batch in batches {
                if tx
                    .send(Delivery {
                        batch,
                        ack: ack_tx.clone(),
                        wake: wake.clone(),
                    })
                    .is_err()
                {
                    return;
                }
            }
            waker.wait(if retry {
                Duration::from_millis(100)
            } else {
                backstop
            });
        })?;
    Ok((rx, handle))
}
