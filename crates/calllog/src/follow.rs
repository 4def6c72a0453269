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
    /// Problems said lately, so that one found on every poll is not logged on every poll.
    said: std::collections::HashMap<String, std::time::Instant>,
}

impl Follower {
    pub fn new(sources: Vec<Box<dyn Source>>, store: CursorStore) -> io::Result<Follower> {
        let mut acked = store.load()?;
        let mut fresh = false;
        for s in &sources {
            if !acked.contains_key(s.name()) {
                acked.insert(s.name().to_owned(), s.baseline());
                fresh = true;
            }
        }
        if fresh {
            store.save(&acked)?;
        }
        Ok(Follower {
            sources,
            store,
            pending: acked.clone(),
            acked,
            in_flight: BTreeMap::new(),
            said: Default::default(),
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
            let mut p = s.poll(&from);
            // A problem a source keeps finding (a file it re-reads whole) is said once an hour.
            let now = std::time::Instant::now();
            self.said
                .retain(|_, at| now.duration_since(*at) < Duration::from_secs(3600));
            p.problems.retain(|pr| {
                let key = format!("{}|{}|{:?}|{}", pr.source, pr.file, pr.line, pr.reason);
                self.said.insert(key, now).is_none()
            });
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
    /// Watched directories: which folder it was (it may be replaced), and whether its
    /// filesystem reports changes.
    watching: BTreeMap<PathBuf, Watched>,
}

struct Watched {
    id: Option<FolderId>,
    reports_changes: bool,
}

/// How long the follower may go unpolled when every log folder is watched on a filesystem that
/// reports changes: the events do the work, this is only a safety net.
pub const WATCHED_BACKSTOP: Duration = Duration::from_secs(60);

/// Which folder a path names now: a removed and recreated folder is another one (its inode
/// number may be reused; its creation time is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FolderId {
    id: callsync_fs::FileId,
    created: Option<std::time::SystemTime>,
}

impl FolderId {
    fn of(dir: &Path) -> Option<FolderId> {
        let m = std::fs::metadata(dir).ok().filter(|m| m.is_dir())?;
        Some(FolderId {
            id: callsync_fs::FileId::of(dir, &m),
            created: m.created().ok(),
        })
    }
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
            // An error (a lost event, an overflowing queue) wakes the follower too: it re-reads
            // from its cursor, so a spurious wake costs nothing and a missed one a call.
            if res.as_ref().map_or(true, |e| relevant(&e.kind)) {
                let _ = t.send(());
            }
        })?;
        let mut w = Waker {
            rx,
            tx,
            watcher,
            dirs,
            watching: BTreeMap::new(),
        };
        w.watch_new_dirs();
        Ok(w)
    }

    /// Starts watching directories that exist now (a softphone's data folder may appear late),
    /// and again those that were replaced (a reinstall): a watch follows the old folder.
    fn watch_new_dirs(&mut self) {
        for d in self.dirs.clone() {
            let id = FolderId::of(&d);
            if let Some(w) = self.watching.get(&d) {
                if w.id == id {
                    continue;
                }
                let _ = self.watcher.unwatch(&d);
                self.watching.remove(&d);
                tracing::debug!(dir = %d.display(), "log folder replaced or removed");
            }
            if id.is_some() && self.watcher.watch(&d, RecursiveMode::NonRecursive).is_ok() {
                let reports_changes = super::fskind::reports_changes(&d).unwrap_or(false);
                tracing::debug!(dir = %d.display(), reports_changes, "watching");
                self.watching.insert(
                    d.clone(),
                    Watched {
                        id,
                        reports_changes,
                    },
                );
                // It may have been created with a log already in it.
                let _ = self.tx.send(());
            }
        }
    }

    /// How long [`Waker::wait`] should sleep without an event: `backstop` (`calllog.poll_secs`)
    /// while a log folder does not exist yet or is on a filesystem that may not report changes
    /// (a network share), else the long [`WATCHED_BACKSTOP`].
    pub fn backstop(&self, backstop: Duration) -> Duration {
        let all_watched = self
            .dirs
            .iter()
            .all(|d| self.watching.get(d).is_some_and(|w| w.reports_changes));
        if all_watched && !self.dirs.is_empty() {
            backstop.max(WATCHED_BACKSTOP)
        } else {
            backstop
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

/// Pure: the wait before the `n`-th retry of a busy source (1-based): 0.1 s doubling, at most
/// 30 s.
pub(crate) fn retry_delay(n: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << n.saturating_sub(1).min(10)))
        .min(Duration::from_secs(30))
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
    let mut retries = 0u32;
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
            // A file that stays busy (or unreadable) is tried again sooner, then less often:
            // 0.1 s doubling to 30 s, never more often than that for ever.
            retries = if retry { retries + 1 } else { 0 };
            let wait = if retry {
                retry_delay(retries)
            } else {
                waker.backstop(backstop)
            };
            waker.wait(wait);
        })?;
    Ok((rx, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_thirty_seconds() {
        let ms: Vec<u128> = [1, 2, 3, 8, 9, 20, 1000]
            .iter()
            .map(|n| retry_delay(*n).as_millis())
            .collect();
        assert_eq!(ms, [100, 200, 400, 12_800, 25_600, 30_000, 30_000]);
    }
}
