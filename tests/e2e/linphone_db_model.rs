//! The follower on Linphone 5.2+'s `linphone.db` against a model: calls started (a
//! `conference_call` row with its start event), answered and ended in any order and with every
//! status, reads while a writer holds the file, with and without acknowledgement, kills and
//! restarts of the real follower with its real cursor store. Each ended call comes once, with
//! its direction, outcome, talk time and start time; nothing comes before its end; every call
//! ended at an acknowledged read has come.

use std::collections::{BTreeMap, BTreeSet};

use callsync_calllog::linphone::LinphoneSource;
use callsync_calllog::testkit::{connect_call, end_call, main_db, start_call};
use callsync_calllog::{Direction, Outcome};
use callsync_core::event::EventKind;
use rusqlite::Connection;

use crate::follower_model::ModelReader;

#[derive(Clone, Debug)]
enum Op {
    Start {
        incoming: bool,
    },
    /// The n-th call in progress is answered.
    Connect(usize),
    /// The n-th call in progress ends with this `LinphoneCallStatus` (0 success, 2 missed,
    /// 3 declined, 4 aborted, 5 accepted elsewhere, 6 declined elsewhere).
    End(usize, i64),
    /// The next read happens while linphone holds the file (a write in progress).
    Busy,
    Poll {
        ack: bool,
    },
    Kill,
    Restart,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => any::<bool>().prop_map(|incoming| Op::Start { incoming }),
        2 => (0..4usize).prop_map(Op::Connect),
        4 => (0..4usize, prop::sample::select(vec![0i64, 2, 3, 4, 5, 6])).prop_map(|(n, s)| Op::End(n, s)),
        1 => Just(Op::Busy),
        4 => any::<bool>().prop_map(|ack| Op::Poll { ack }),
        1 => Just(Op::Kill),
        1 => Just(Op::Restart),
    ]
}

/// A call as the model knows it.
#[derive(Clone, Debug)]
struct Call {
    row: i64,
    incoming: bool,
    start: i64,
    connected: bool,
    /// Status and talk time, once ended.
    end: Option<(i64, i64)>,
}

impl Call {
    fn outcome(&self) -> Outcome {
        match self.end.map(|e| e.0) {
            Some(0) if self.connected => Outcome::Answered,
            Some(5) => Outcome::Answered,
            Some(3 | 6) => Outcome::Rejected,
            _ => Outcome::NoAnswer,
        }
    }
}

/// linphone's side: the database and the calls in it.
struct Linphone {
    db: Connection,
    calls: BTreeMap<String, Call>,
    made: i64,
    t0: i64,
}

fn at(s: i64) -> String {
    chrono::DateTime::from_timestamp(s, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

impl Linphone {
    fn open(&self, n: usize) -> Option<String> {
        let open: Vec<&String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.end.is_none())
            .map(|(id, _)| id)
            .collect();
        (!open.is_empty()).then(|| open[n % open.len()].clone())
    }

    fn ended(&self) -> BTreeSet<String> {
        self.calls
            .iter()
            .filter(|(_, c)| c.end.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Start { incoming } => {
                let id = format!("sip-call-{:04}@pbx", self.made);
                let start = self.t0 + self.made * 7;
                self.made += 1;
                let row = start_call(&self.db, &id, *incoming, &at(start)).unwrap();
                self.calls.insert(
                    id,
                    Call {
                        row,
                        incoming: *incoming,
                        start,
                        connected: false,
                        end: None,
                    },
                );
            }
            Op::Connect(n) => {
                if let Some(id) = self.open(*n) {
                    let c = self.calls.get_mut(&id).unwrap();
                    if !c.connected {
                        connect_call(&self.db, c.row, &at(c.start + 2)).unwrap();
                        c.connected = true;
                    }
                }
            }
            Op::End(n, status) => {
                if let Some(id) = self.open(*n) {
                    let c = self.calls.get_mut(&id).unwrap();
                    // liblinphone: a call that never connected ends with 0 talk seconds, and
                    // one answered ends "success" (unless declined or aborted by then).
                    let status = if c.connected && *status == 2 {
                        0
                    } else {
                        *status
                    };
                    let talk = if c.connected { 30 + c.row % 50 } else { 0 };
                    end_call(&self.db, c.row, status, None, talk).unwrap();
                    c.end = Some((status, talk));
                }
            }
            _ => {}
        }
    }
}

/// One read of the real follower; a call is known by its SIP Call-ID, and each that comes is
/// checked against the model: direction, number, outcome, talk time, start time (UTC).
fn poll(r: &mut ModelReader, ack: bool, phone: &Linphone, shown: &BTreeSet<String>) {
    r.poll(ack, shown, &phone.ended(), |b, e| {
        let EventKind::Ended {
            outcome,
            duration_s,
            ..
        } = &e.kind
        else {
            return None;
        };
        let id = e.call_id.clone();
        let c = &phone.calls[&id];
        let info = e.info.as_ref().expect("an ended call says who");
        let want_dir = if c.incoming {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        assert_eq!(info.direction, want_dir, "{id}");
        assert_eq!(
            info.remote,
            if c.incoming {
                "0311110001"
            } else {
                "0311110002"
            },
            "{id}"
        );
        assert_eq!(*outcome, c.outcome(), "{id}: {c:?}");
        assert_eq!(*duration_s, c.end.map(|e| e.1 as u64), "{id}");
        let first = b
            .events
            .iter()
            .find(|x| x.call_id == id)
            .expect("the call's first event");
        assert_eq!(first.at.timestamp(), c.start, "{id}: start time (UTC)");
        Some(id)
    });
}

fn linphone_db_model(ops: Vec<Op>) {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("linphone.db");
    let mut phone = Linphone {
        db: main_db(&path).unwrap(),
        calls: BTreeMap::new(),
        made: 0,
        // Calls of the last hour: none is old enough to be passed over as abandoned.
        t0: chrono::Utc::now().timestamp() - 3600,
    };
    let source = path.clone();
    let mut r = ModelReader::new(d.path().join("cursors.json"), move || {
        Box::new(LinphoneSource::new("linphone", &source))
    });
    let mut shown = BTreeSet::new();
    let mut busy = false;
    for op in &ops {
        match op {
            Op::Busy => busy = true,
            Op::Poll { ack } => {
                if busy {
                    // linphone mid-write: the read finds the file held and must try again later.
                    let w = Connection::open(&path).unwrap();
                    w.execute_batch("BEGIN EXCLUSIVE; UPDATE sip_address SET display_name = display_name WHERE id = 1;")
                        .unwrap();
                    poll(&mut r, false, &phone, &shown);
                    w.execute_batch("COMMIT").unwrap();
                    busy = false;
                }
                poll(&mut r, *ack, &phone, &shown);
            }
            Op::Kill => r.kill(),
            Op::Restart => r.start(),
            op => phone.apply(op),
        }
        shown.extend(phone.ended());
    }
    r.start();
    for _ in 0..3 {
        poll(&mut r, true, &phone, &shown);
    }
}

/// Model-based, seeded by proptest; `PROPTEST_CASES` for more.
#[test]
fn a_followed_linphone_db_comes_once_whatever_happens() {
    use proptest::test_runner::{Config, TestRunner};
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..60), |ops| {
            linphone_db_model(ops);
            Ok(())
        })
        .unwrap();
}
