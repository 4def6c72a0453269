//! The follower's side of the model-based call-log tests: the real [`Follower`] with its real
//! cursor store, read with and without acknowledgement, killed and restarted; it checks that a
//! finished call comes once (again only if it was handed out unacknowledged before a kill),
//! never before the file shows it finished, and that every finished call has come at an
//! acknowledged read.

use std::collections::BTreeSet;
use std::path::PathBuf;

use callsync_calllog::cursor::CursorStore;
use callsync_calllog::follow::{Batch, Follower};
use callsync_calllog::{CallEvent, Source};

pub(crate) struct ModelReader {
    follower: Option<Follower>,
    open: Box<dyn Fn() -> Box<dyn Source>>,
    store: PathBuf,
    acked: BTreeSet<String>,
    pending: Vec<(Batch, Vec<String>)>,
    redeliverable: BTreeSet<String>,
}

impl ModelReader {
    /// A reader of the source `open` makes, with its cursors in `store`; started.
    pub(crate) fn new(store: PathBuf, open: impl Fn() -> Box<dyn Source> + 'static) -> Self {
        let mut r = ModelReader {
            follower: None,
            open: Box::new(open),
            store,
            acked: BTreeSet::new(),
            pending: Vec::new(),
            redeliverable: BTreeSet::new(),
        };
        r.start();
        r
    }

    pub(crate) fn start(&mut self) {
        if self.follower.is_none() {
            let store = CursorStore::new(&self.store);
            self.follower = Some(Follower::new(vec![(self.open)()], store).unwrap());
        }
    }

    /// One read. `ended` names the call an event finishes (`None`: not an end) and checks the
    /// event against the model; `shown` is every call the file has shown finished, `finished`
    /// the ones it shows now. With `ack`, everything handed out is acknowledged.
    pub(crate) fn poll(
        &mut self,
        ack: bool,
        shown: &BTreeSet<String>,
        finished: &BTreeSet<String>,
        ended: impl Fn(&Batch, &CallEvent) -> Option<String>,
    ) {
        let Some(f) = self.follower.as_mut() else {
            return;
        };
        let (batches, _) = f.poll();
        for b in batches {
            let mut calls = Vec::new();
            for e in &b.events {
                let Some(id) = ended(&b, e) else { continue };
                assert!(shown.contains(&id), "{id} came before it was finished");
                assert!(
                    !self.acked.contains(&id) || self.redeliverable.remove(&id),
                    "{id} came again after it was acknowledged"
                );
                calls.push(id);
            }
            self.pending.push((b, calls));
        }
        if ack {
            for (b, calls) in self.pending.drain(..) {
                f.ack(&b).unwrap();
                self.acked.extend(calls);
            }
            let missing: Vec<_> = finished.difference(&self.acked).cloned().collect();
            assert!(
                missing.is_empty(),
                "finished in the file, never came: {missing:?}"
            );
        }
    }

    /// The process dies: what was handed out unacknowledged may come again.
    pub(crate) fn kill(&mut self) {
        self.follower = None;
        for (_, calls) in self.pending.drain(..) {
            self.redeliverable.extend(calls);
        }
    }
}
