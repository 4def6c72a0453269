//! twinkle's call history (`~/.twinkle/twinkle.ch`): pipe-separated, oldest first, capped at 50
//! rows, rewritten whole (truncate + write) at every call end. Each poll re-reads the file and
//! emits rows it has not seen (by digest); a read during a rewrite can see a partial file, so
//! only complete rows count.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, TimeZone, Utc};

use super::cursor::Cursor;
use super::{digest, history_events, sip_user, CallInfo, Direction, Origin, Outcome, Poll, Source};

const FIELDS: usize = 20;

pub struct TwinkleSource {
    name: String,
    path: PathBuf,
}

impl TwinkleSource {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        TwinkleSource {
            name: name.into(),
            path: path.into(),
        }
    }
}

/// Epoch seconds of a plausible call time (2000–2100), else `None`.
fn epoch(s: &str) -> Option<DateTime<FixedOffset>> {
    let n: i64 = s.trim().parse().ok()?;
    if !super::CALL_TIMES.contains(&n) && n != 0 {
        return None;
    }
    Utc.timestamp_opt(n, 0).single().map(|d| d.fixed_offset())
}

/// SIP final response → outcome for a call that was not answered.
fn unanswered(code: &str) -> Outcome {
    match code.trim() {
        "486" | "600" => Outcome::Busy,
        "603" | "403" => Outcome::Rejected,
        _ => Outcome::NoAnswer,
    }
}

impl Source for TwinkleSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn poll(&mut self, cursor: &Cursor) -> Poll {
        let mut out = Poll {
            next: cursor.clone(),
            ..Poll::default()
        };
        let bytes = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
            Err(e) => {
                out.retry_soon = true;
                out.problems
                    .push(self.problem(None, format!("cannot read: {e}")));
                return out;
            }
        };
        self.read_bytes(&bytes, out)
    }
}

impl TwinkleSource {
    /// The calls in a history's bytes not seen yet (by `out.next`'s memory). No I/O.
    pub fn read_bytes(&self, bytes: &[u8], mut out: Poll) -> Poll {
        // Only newline-terminated lines: the last one may still be being written.
        let complete = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(i) => &bytes[..=i],
            None => &[][..],
        };
        for (i, raw) in complete.split(|b| *b == b'\n').enumerate() {
            // A bad line is said once: the file is read whole at every poll.
            let bad = |out: &mut Poll, why: String| {
                let key = format!("bad:{}", digest(&String::from_utf8_lossy(raw)));
                if !out.next.has_seen(&key) {
                    out.next.remember(key);
                    out.problems.push(self.problem(Some(i as u64 + 1), why));
                }
            };
            let Ok(line) = std::str::from_utf8(raw) else {
                bad(&mut out, "not UTF-8 text; the line is skipped".into());
                continue;
            };
            let line = line.trim_end_matches('\r');
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split('|').collect();
            if f.len() != FIELDS {
                bad(
                    &mut out,
                    format!("expected {FIELDS} |-separated fields, found {}", f.len()),
                );
                continue;
            }
            let key = digest(line);
            if out.next.has_seen(&key) {
                continue;
            }
            let (Some(start), Some(end)) = (epoch(f[0]), epoch(f[2])) else {
                bad(&mut out, "bad start or end time".into());
                continue;
            };
            if end < start {
                bad(&mut out, "the call ends before it starts".into());
                continue;
            }
            let answered = epoch(f[1]).filter(|a| a.timestamp() > 0);
            let direction = if f[3] == "out" {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            let (local, remote) = match direction {
                Direction::Outbound => (f[5], f[8]),
                _ => (f[8], f[5]),
            };
            let outcome = if answered.is_some() {
                Outcome::Answered
            } else {
                unanswered(f[16])
            };
            // twinkle records no Call-ID: a stable id from what identifies the call.
            let call_id = format!(
                "twinkle-{}",
                digest(&format!("{}|{}|{}", f[0], f[3], remote))
            );
            let info = CallInfo {
                direction,
                remote: sip_user(remote),
                local: Some(sip_user(local)),
                agent: Some(f[19].to_owned()).filter(|a| !a.is_empty()),
                origin: Origin::Manual,
                record_id: None,
            };
            out.next.remember(key);
            out.events.extend(history_events(
                &self.name, call_id, info, start, answered, end, outcome,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callsync_core::event::EventKind;

    #[test]
    fn the_recorded_history_and_rewrites() {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/softphones/twinkle.ch"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinkle.ch");
        std::fs::copy(fixture, &path).unwrap();
        let mut src = TwinkleSource::new("twinkle", &path);
        let p = src.poll(&Cursor::default());
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let ended: Vec<(Direction, Outcome, String)> = p
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Ended { outcome, .. } => Some((
                    e.info.as_ref().unwrap().direction,
                    *outcome,
                    e.info.as_ref().unwrap().remote.clone(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            ended,
            vec![
                (Direction::Outbound, Outcome::Answered, "bob".into()),
                (Direction::Inbound, Outcome::NoAnswer, "bob".into()),
                (Direction::Inbound, Outcome::Answered, "bob".into()),
            ]
        );
        // Rewritten with one more call (and the same three): only the new one comes out.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("1795277700|0|1795277705|out|Tom|sip:tom@127.0.0.1|||sip:0312345678@127.0.0.1|||||||failure|486|Busy Here||tom\n");
        std::fs::write(&path, &text).unwrap();
        let p2 = src.poll(&p.next);
        let ends: Vec<&EventKind> = p2
            .events
            .iter()
            .map(|e| &e.kind)
            .filter(|k| matches!(k, EventKind::Ended { .. }))
            .collect();
        assert_eq!(
            ends,
            vec![&EventKind::Ended {
                outcome: Outcome::Busy,
                duration_s: Some(0)
            }]
        );
        assert_eq!(p2.events[0].info.as_ref().unwrap().remote, "0312345678");
        // A partial rewrite (no final newline yet) emits nothing broken.
        std::fs::write(&path, &text[..text.len() - 30]).unwrap();
        assert!(src.poll(&p2.next).events.is_empty());
    }

    /// Defect: one non-UTF-8 byte made the whole file unreadable, retried ~9 times a second for
    /// ever with an error each time. The line is skipped with one problem; the rest comes.
    #[test]
    fn a_bad_line_is_skipped_once_and_the_rest_comes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinkle.ch");
        let mut bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/softphones/twinkle.ch"
        ))
        .unwrap();
        bytes.extend_from_slice(b"1795277700|0|17952\xff77705|out|Tom|sip:tom@x|||sip:1@x|||||||failure|486|Busy||tom\n");
        bytes.extend_from_slice(
            b"1795277800|0|1795277700|out|Tom|sip:tom@x|||sip:2@x|||||||failure|486|Busy||tom\n",
        );
        std::fs::write(&path, &bytes).unwrap();
        let mut src = TwinkleSource::new("twinkle", &path);
        let p = src.poll(&Cursor::default());
        assert!(!p.retry_soon);
        let reasons: Vec<&str> = p.problems.iter().map(|p| p.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("UTF-8") && reasons[1].contains("ends before"));
        assert_eq!(
            p.events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Ended { .. }))
                .count(),
            3
        );
        let again = src.poll(&p.next);
        assert!(
            again.problems.is_empty() && again.events.is_empty(),
            "said twice"
        );
    }
}
