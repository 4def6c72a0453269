//! Following call logs: a [`Follower`] polls every source from its acknowledged cursor, and a
//! [`Waker`] says when to poll: a (debounced) change in a source's directory, or the polling
//! backstop for filesystems that send no events (network shares). Directories are watched, not
//! files: logs get created late, replaced and rotated.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify_debouncer_full::notify::RecursiveMode;

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

/// Wakes the follower on filesystem events, debounced.
pub struct Waker {
    rx: mpsc::Receiver<()>,
    tx: mpsc::Sender<()>,
    debouncer: notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    dirs: Vec<PathBuf>,
    watching: Vec<PathBuf>,
}

impl Waker {
    pub fn new(
        dirs: Vec<PathBuf>,
        debounce: Duration,
    ) -> notify_debouncer_full::notify::Result<Waker> {
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        let debouncer = notify_debouncer_full::new_debouncer(
            debounce,
            None,
            move |res: notify_debouncer_full::DebounceEventResult| {
                if res.is_ok() {
                    let _ = t.send(());
                }
            },
        )?;
        let mut w = Waker {
            rx,
            tx,
            debouncer,
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
                && self
                    .debouncer
                    .watch(&d, RecursiveMode::NonRecursive)
                    .is_ok()
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
}

impl Delivery {
    /// Marks the batch handled: the follower saves its cursor.
    pub fn ack(self) {
        let _ = self.ack.send(self.batch);
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
