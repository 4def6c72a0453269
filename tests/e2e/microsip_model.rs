//! The follower on MicroSIP's history against a model: calls ringing, answered and ended in
//! place, rows deleted and the section emptied, the ring wrapping over its oldest keys, the
//! file caught half-rewritten, reads with and without acknowledgement, kills and restarts of
//! the real follower with its real cursor store. A finished call comes once, only finished
//! calls come, and every finished call the file shows at an acknowledged read has come.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use callsync_calllog::microsip::MicrosipSource;
use callsync_core::event::EventKind;

use crate::follower_model::ModelReader;

/// A small ring, so that it wraps often (MicroSIP's has 1,000 keys).
const RING: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    /// A call starts ringing: a new row at the next key, overwriting the oldest.
    Ring,
    /// The n-th row in progress is answered (type 2 → 1, in place).
    Answer(usize),
    /// The n-th row in progress ends (its end reason written).
    End(usize),
    /// The n-th row becomes `null` (deleted by the user).
    Delete(usize),
    /// "Delete all": the section emptied.
    Clear,
    /// The next read sees only the first part of a rewrite.
    Torn,
    Poll {
        ack: bool,
    },
    Kill,
    Restart,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => Just(Op::Ring),
        2 => (0..4usize).prop_map(Op::Answer),
        4 => (0..4usize).prop_map(Op::End),
        1 => (0..RING).prop_map(Op::Delete),
        1 => Just(Op::Clear),
        1 => Just(Op::Torn),
        4 => any::<bool>().prop_map(|ack| Op::Poll { ack }),
        1 => Just(Op::Kill),
        1 => Just(Op::Restart),
    ]
}

#[derive(Clone, Debug)]
struct Call {
    number: String,
    time: i64,
    kind: u8,
    ended: bool,
}

/// The file as MicroSIP keeps it, and what it has shown.
struct Ini {
    path: PathBuf,
    keys: BTreeMap<usize, Call>,
    next_key: usize,
    made: usize,
}

impl Ini {
    fn text(&self) -> String {
        let mut s = String::from("[Settings]\r\ncallsLastKey=0\r\n[Calls]\r\n");
        for k in 0..RING {
            match self.keys.get(&k) {
                Some(c) => s.push_str(&format!(
                    "{k}={};;{};{};{};{}\r\n",
                    c.number,
                    c.kind,
                    c.time,
                    if c.ended && c.kind != 2 { 7 } else { 0 },
                    if c.ended { "Call Ended" } else { "" }
                )),
                None if k < self.made => s.push_str(&format!("{k}=null\r\n")),
                None => {}
            }
        }
        s.push_str("[Dialed]\r\n0=0312345678\r\n");
        s
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0xFF, 0xFE];
        for u in self.text().encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        b
    }

    /// The profile API's whole-file rewrite.
    fn write(&self) {
        std::fs::write(&self.path, self.bytes()).unwrap();
    }

    fn in_progress(&self, n: usize) -> Option<usize> {
        let open: Vec<usize> = self
            .keys
            .iter()
            .filter(|(_, c)| !c.ended)
            .map(|(k, _)| *k)
            .collect();
        (!open.is_empty()).then(|| open[n % open.len()])
    }

    /// The finished calls the file shows now, by number.
    fn finished(&self) -> BTreeSet<String> {
        self.keys
            .values()
            .filter(|c| c.ended)
            .map(|c| c.number.clone())
            .collect()
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Ring => {
                let k = self.next_key;
                self.keys.insert(
                    k,
                    Call {
                        number: format!("0311{:06}", self.made),
                        time: 1_764_633_600 + self.made as i64 * 60,
                        kind: 2,
                        ended: false,
                    },
                );
                self.made += 1;
                self.next_key = (k + 1) % RING;
            }
            Op::Answer(n) => {
                if let Some(k) = self.in_progress(*n) {
                    self.keys.entry(k).and_modify(|c| c.kind = 1);
                }
            }
            Op::End(n) => {
                if let Some(k) = self.in_progress(*n) {
                    self.keys.entry(k).and_modify(|c| c.ended = true);
                }
            }
            Op::Delete(k) => {
                self.keys.remove(k);
            }
            Op::Clear => self.keys.clear(),
            _ => return,
        }
        self.write();
    }
}

/// One read of the real follower; a MicroSIP call is known by its number.
fn poll(r: &mut ModelReader, ack: bool, ini: &Ini, shown: &BTreeSet<String>) {
    r.poll(ack, shown, &ini.finished(), |_, e| {
        matches!(e.kind, EventKind::Ended { .. }).then(|| {
            e.info
                .as_ref()
                .map(|i| i.remote.clone())
                .unwrap_or_default()
        })
    });
}

fn microsip_model(ops: Vec<Op>) {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("microsip.ini");
    let mut ini = Ini {
        path: path.clone(),
        keys: BTreeMap::new(),
        next_key: 0,
        made: 0,
    };
    let mut r = ModelReader::new(d.path().join("cursors.json"), move || {
        Box::new(MicrosipSource::new("microsip", &path))
    });
    // Every call the file has shown finished (a later poll may not see it any more).
    let mut shown = BTreeSet::new();
    let mut torn = false;
    for op in &ops {
        match op {
            Op::Torn => {
                // A read in the middle of a rewrite: the first part of the file only.
                let b = ini.bytes();
                std::fs::write(&ini.path, &b[..b.len() * 2 / 3]).unwrap();
                torn = true;
            }
            Op::Poll { ack } => {
                if torn {
                    // Whatever a torn read shows must not count; the rewrite then completes.
                    poll(&mut r, false, &ini, &shown);
                    ini.write();
                    torn = false;
                }
                poll(&mut r, *ack, &ini, &shown);
            }
            Op::Kill => r.kill(),
            Op::Restart => r.start(),
            op => {
                ini.apply(op);
                torn = false;
            }
        }
        shown.extend(ini.finished());
    }
    ini.write();
    r.start();
    for _ in 0..3 {
        poll(&mut r, true, &ini, &shown);
    }
}

/// Model-based, seeded by proptest; `PROPTEST_CASES` for more.
#[test]
fn a_followed_microsip_history_comes_once_whatever_happens() {
    use proptest::test_runner::{Config, TestRunner};
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(96);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..60), |ops| {
            microsip_model(ops);
            Ok(())
        })
        .unwrap();
}
