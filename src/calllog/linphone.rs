//! linphone's call history (`~/.local/share/linphone/call-history.db`, liblinphone 5.1).
//!
//! liblinphone writes this SQLite file through a VFS that takes **no locks**, so a read-write
//! opener corrupts it (measured: 8 of 10 runs). It is opened read-only (`mode=ro` URI), with no
//! PRAGMA and no write of any kind; transient errors (hot journal, table being created) are
//! retried. One row per call appears when the call ends; there is no ringing event.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags};

use super::cursor::Cursor;
use super::{history_events, sip_user, CallInfo, Direction, Origin, Outcome, Poll, Source};

pub struct LinphoneSource {
    name: String,
    path: PathBuf,
}

impl LinphoneSource {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        LinphoneSource {
            name: name.into(),
            path: path.into(),
        }
    }
}

/// One `call_history` row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: i64,
    pub caller: String,
    pub callee: String,
    pub direction: i64,
    pub duration: i64,
    pub start_time: i64,
    pub connected_time: i64,
    pub status: i64,
    pub call_id: Option<String>,
}

/// `LinphoneCallStatus` → outcome. "Accepted elsewhere" (5) counts as answered, "declined
/// elsewhere" (6) as rejected: another of the agent's devices handled the call.
pub fn outcome(status: i64, connected: bool) -> Outcome {
    match status {
        0 if connected => Outcome::Answered,
        5 => Outcome::Answered,
        3 | 6 => Outcome::Rejected,
        _ => Outcome::NoAnswer,
    }
}

fn epoch(s: i64) -> DateTime<FixedOffset> {
    Utc.timestamp_opt(s, 0)
        .single()
        .unwrap_or_default()
        .fixed_offset()
}

/// Reads rows after `last` from a read-only connection.
pub fn read_rows(path: &Path, last: i64) -> rusqlite::Result<Vec<Row>> {
    let uri = format!("file:{}?mode=ro", path.display());
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // sqlite3_busy_timeout, not a PRAGMA: nothing is written to the file.
    conn.busy_timeout(Duration::from_millis(200))?;
    let has_call_id = conn
        .prepare("SELECT call_id FROM call_history LIMIT 0")
        .is_ok();
    let sql = format!(
        "SELECT id, caller, callee, direction, duration, start_time, connected_time, status, {} FROM call_history WHERE id > ?1 ORDER BY id",
        if has_call_id { "call_id" } else { "NULL" }
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([last], |r| {
        let num = |i: usize| -> rusqlite::Result<i64> {
            // start_time/connected_time are epoch seconds stored as TEXT.
            match r.get_ref(i)? {
                rusqlite::types::ValueRef::Integer(n) => Ok(n),
                rusqlite::types::ValueRef::Text(t) => Ok(std::str::from_utf8(t)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0)),
                rusqlite::types::ValueRef::Real(f) => Ok(f as i64),
                _ => Ok(0),
            }
        };
        Ok(Row {
            id: r.get(0)?,
            caller: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            callee: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            direction: num(3)?,
            duration: num(4)?,
            start_time: num(5)?,
            connected_time: num(6)?,
            status: num(7)?,
            call_id: r.get::<_, Option<String>>(8)?,
        })
    })?;
    rows.collect()
}

impl LinphoneSource {
    fn events_of(&self, row: &Row) -> Vec<super::CallEvent> {
        let direction = if row.direction == 0 {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let (local, remote) = match direction {
            Direction::Outbound => (&row.caller, &row.callee),
            _ => (&row.callee, &row.caller),
        };
        let connected = row.connected_time > 0;
        let start = epoch(row.start_time);
        let answered = connected.then(|| epoch(row.connected_time));
        let end = epoch(
            if connected {
                row.connected_time
            } else {
                row.start_time
            } + row.duration.max(0),
        );
        let info = CallInfo {
            direction,
            remote: sip_user(remote),
            local: Some(sip_user(local)),
            agent: None,
            origin: Origin::Manual,
            record_id: None,
        };
        let call_id = row
            .call_id
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("linphone-{}-{}", row.start_time, row.id));
        history_events(
            &self.name,
            call_id,
            info,
            start,
            answered,
            end,
            outcome(row.status, connected),
        )
    }
}

impl Source for LinphoneSource {
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
        if !self.path.exists() {
            return out;
        }
        match read_rows(&self.path, cursor.last_row) {
            Ok(rows) => {
                for row in rows {
                    out.next.last_row = out.next.last_row.max(row.id);
                    for ev in self.events_of(&row) {
                        let key = ev.key();
                        if !out.next.has_seen(&key) {
                            out.next.remember(key);
                            out.events.push(ev);
                        }
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                // linphone is mid-write (hot journal), creating the table, or holding the file:
                // not an error, just later.
                let transient = [
                    "readonly",
                    "no such table",
                    "locked",
                    "busy",
                    "disk I/O",
                    "no such column",
                ]
                .iter()
                .any(|t| msg.contains(t));
                out.retry_soon = true;
                if !transient {
                    out.problems
                        .push(self.problem(None, format!("cannot read the call history: {msg}")));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calllog::EventKind;

    #[test]
    fn the_recorded_history_becomes_the_expected_calls() {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/softphones/final_decl_alice_call-history.db"
        );
        if !Path::new(fixture).exists() {
            // The shared fixtures sit beside the repository in this workplace and in CI.
            panic!("fixture missing: {fixture}");
        }
        // Work on a copy: even a read-only open must never touch the fixture.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("call-history.db");
        std::fs::copy(fixture, &db).unwrap();
        let before = std::fs::read(&db).unwrap();
        let mut src = LinphoneSource::new("linphone", &db);
        let p = src.poll(&Cursor::default());
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "the history file was modified"
        );
        let ended: Vec<(String, Direction, Outcome, String)> = p
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Ended { outcome, .. } => {
                    let i = e.info.as_ref().unwrap();
                    Some((e.call_id.clone(), i.direction, *outcome, i.remote.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            ended,
            vec![
                (
                    "3XDLIqYnco".into(),
                    Direction::Outbound,
                    Outcome::Answered,
                    "bob".into()
                ),
                (
                    "-54x0zN0M4".into(),
                    Direction::Inbound,
                    Outcome::NoAnswer,
                    "bob".into()
                ),
                (
                    "2qHdwimJGT".into(),
                    Direction::Inbound,
                    Outcome::Answered,
                    "bob".into()
                ),
                (
                    "8STQrxP2VA".into(),
                    Direction::Outbound,
                    Outcome::Rejected,
                    "bob".into()
                ),
            ]
        );
        assert_eq!(p.next.last_row, 4);
        // Nothing new: nothing again.
        assert!(src.poll(&p.next).events.is_empty());
    }

    #[test]
    fn status_table() {
        let table = [
            (0, true, Outcome::Answered),
            (0, false, Outcome::NoAnswer),
            (1, false, Outcome::NoAnswer),
            (2, false, Outcome::NoAnswer),
            (3, false, Outcome::Rejected),
            (4, false, Outcome::NoAnswer),
            (5, false, Outcome::Answered),
            (6, false, Outcome::Rejected),
        ];
        for (status, connected, want) in table {
            assert_eq!(outcome(status, connected), want, "{status}");
        }
    }
}
