//! linphone's call history: `call-history.db` (liblinphone ≤ 5.1, Debian 12's linphone) or, for
//! liblinphone ≥ 5.2 (Linphone desktop 5.x, Windows and Linux), the `conference_call` table of
//! `linphone.db`, which such a linphone imports `call-history.db` into once and then writes
//! instead. The file's tables say which it is. In `linphone.db` a row is made at call start and
//! updated at connect and end; only an end event (`event.type` 4) makes it final, so rows are
//! read once final, by `call_id`, with the position held below the oldest row still in progress
//! (one left without an end for a day is passed over: linphone died mid-call).
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
    /// Which history the file holds and, for `call_history`, whether it has a `call_id` column:
    /// learned from a successful read only (a read linphone disturbed says nothing about the
    /// schema), and never unlearned.
    schema: Option<Schema>,
    /// The last whole-file problem reported: the same one is not reported again.
    complained: Option<String>,
}

impl LinphoneSource {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        LinphoneSource {
            name: name.into(),
            path: path.into(),
            schema: None,
            complained: None,
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

/// The columns every liblinphone 5.x `call_history` has.
const REQUIRED: [&str; 8] = [
    "id",
    "caller",
    "callee",
    "direction",
    "duration",
    "start_time",
    "connected_time",
    "status",
];

/// A read-only connection through a `file:` URI: the path percent-encoded (`#`, `?`, `%` in a
/// folder name would otherwise end the path), `mode=ro`, no PRAGMA, nothing written.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let uri = match url::Url::from_file_path(&abs) {
        Ok(u) => format!("{u}?mode=ro"),
        Err(()) => format!("file:{}?mode=ro", abs.display()),
    };
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // sqlite3_busy_timeout, not a PRAGMA: nothing is written to the file.
    conn.busy_timeout(Duration::from_millis(200))?;
    Ok(conn)
}

/// What reading the history found wrong.
#[derive(Debug)]
pub enum ReadError {
    /// linphone is writing (hot journal, lock, table being created): later.
    Transient(String),
    /// The file is not a call history callsync can read: say so (once).
    Unusable(String),
}

/// Which history a linphone database holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// `call-history.db` (liblinphone ≤ 5.1): `call_history`, with or without `call_id`.
    CallHistory { call_id: bool },
    /// `linphone.db` (liblinphone ≥ 5.2): `conference_call` + `sip_address` + events.
    MainDb,
}

/// The tables `linphone.db`'s call log needs.
const MAIN_DB_TABLES: [&str; 4] = [
    "conference_call",
    "sip_address",
    "conference_call_event",
    "event",
];

/// The schema of the file. `Err` when it cannot be told now.
fn schema(conn: &Connection, path: &Path) -> Result<Schema, ReadError> {
    let transient = |e: rusqlite::Error| ReadError::Transient(e.to_string());
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(transient)?;
    if tables.iter().any(|t| t == "conference_call") {
        let missing: Vec<&str> = MAIN_DB_TABLES
            .iter()
            .copied()
            .filter(|m| !tables.iter().any(|t| t == m))
            .collect();
        if !missing.is_empty() {
            return Err(ReadError::Unusable(format!(
                "{} has conference_call but not {}: not a linphone.db callsync can read",
                path.display(),
                missing.join(", ")
            )));
        }
        return Ok(Schema::MainDb);
    }
    if !tables.iter().any(|t| t == "call_history") {
        if tables.is_empty() {
            return Err(ReadError::Transient("no tables yet".into()));
        }
        return Err(ReadError::Unusable(format!(
            "{} has neither call_history nor conference_call (it has {}): it is not linphone's call-history.db or linphone.db",
            path.display(),
            tables.join(", ")
        )));
    }
    let st = conn
        .prepare("SELECT * FROM call_history LIMIT 0")
        .map_err(transient)?;
    let columns: Vec<String> = st.column_names().map(str::to_owned).collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !columns.iter().any(|c| c == r))
        .collect();
    if !missing.is_empty() {
        return Err(ReadError::Unusable(format!(
            "call_history in {} lacks the column(s) {} (an older linphone?): it cannot be read",
            path.display(),
            missing.join(", ")
        )));
    }
    Ok(Schema::CallHistory {
        call_id: columns.iter().any(|c| c == "call_id"),
    })
}

/// A row, or (its id, why it cannot be used).
type RowRead = Result<Row, (i64, String)>;

/// `linphone.db`: rows after `last`, each with whether it is final (has its end event). Times
/// are UTC text; a never-connected `connected_time` is 1970-01-01, which reads as 0.
pub(crate) fn read_main_rows(
    conn: &Connection,
    last: i64,
) -> rusqlite::Result<Vec<(bool, RowRead)>> {
    let mut stmt = conn.prepare(
        "SELECT cc.id, f.value, t.value, cc.direction, cc.duration, \
                CAST(strftime('%s', cc.start_time) AS INTEGER), \
                CAST(strftime('%s', cc.connected_time) AS INTEGER), cc.status, cc.call_id, \
                EXISTS (SELECT 1 FROM conference_call_event cce JOIN event e ON e.id = cce.event_id \
                        WHERE cce.conference_call_id = cc.id AND e.type = 4) \
         FROM conference_call cc \
         JOIN sip_address f ON f.id = cc.from_sip_address_id \
         JOIN sip_address t ON t.id = cc.to_sip_address_id \
         WHERE cc.id > ?1 ORDER BY cc.id",
    )?;
    let rows = stmt.query_map([last], |r| Ok((r.get(9)?, row_at(r)?)))?;
    rows.collect()
}

/// How long a `linphone.db` row may stay without its end before it is passed over.
const ABANDONED_S: i64 = 86_400;

/// A value read as text: text (lossy UTF-8), a number's digits, empty for NULL; a BLOB is no
/// text.
fn text(v: rusqlite::types::ValueRef<'_>) -> Result<String, String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Ok(String::new()),
        ValueRef::Text(t) => Ok(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Ok(n.to_string()),
        ValueRef::Real(f) => Ok(f.to_string()),
        ValueRef::Blob(_) => Err("holds binary data where text belongs".into()),
    }
}

/// A value read as a whole number (epoch seconds are stored as TEXT).
fn number(v: rusqlite::types::ValueRef<'_>) -> Result<i64, String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Ok(0),
        ValueRef::Integer(n) => Ok(n),
        ValueRef::Real(f) if f.is_finite() && f.abs() < 1e15 => Ok(f as i64),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map_or(Ok(0), |s| {
                s.parse().map_err(|_| format!("{s:?} is no number"))
            }),
        _ => Err("holds no number".into()),
    }
}

/// The longest call, in this table's integer type.
const MAX_DURATION: i64 = super::MAX_DURATION_S as i64;

/// Reads rows after `last`: each either a [`Row`] or (its id, why it cannot be used).
pub(crate) fn read_rows(
    conn: &Connection,
    has_call_id: bool,
    last: i64,
) -> rusqlite::Result<Vec<RowRead>> {
    let sql = format!(
        "SELECT id, caller, callee, direction, duration, start_time, connected_time, status, {} FROM call_history WHERE id > ?1 ORDER BY id",
        if has_call_id { "call_id" } else { "NULL" }
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([last], row_at)?;
    rows.collect()
}

/// The row in columns 0 (id) to 8 of a query in [`row_from`]'s order.
fn row_at(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowRead> {
    let id: i64 = r.get(0)?;
    let values = [
        r.get_ref(1)?,
        r.get_ref(2)?,
        r.get_ref(3)?,
        r.get_ref(4)?,
        r.get_ref(5)?,
        r.get_ref(6)?,
        r.get_ref(7)?,
        r.get_ref(8)?,
    ];
    Ok(row_from(id, &values).map_err(|e| (id, e)))
}

/// A row from its values (caller, callee, direction, duration, start_time, connected_time,
/// status, call_id), checked: text where text belongs, numbers where numbers do, times and
/// durations a call can have. No I/O.
pub fn row_from(id: i64, v: &[rusqlite::types::ValueRef<'_>; 8]) -> Result<Row, String> {
    let t = |i: usize, what: &str| text(v[i]).map_err(|e| format!("{what} {e}"));
    let n = |i: usize, what: &str| number(v[i]).map_err(|e| format!("{what} {e}"));
    let row = Row {
        id,
        caller: t(0, "caller")?,
        callee: t(1, "callee")?,
        direction: n(2, "direction")?,
        duration: n(3, "duration")?,
        start_time: n(4, "start_time")?,
        connected_time: n(5, "connected_time")?,
        status: n(6, "status")?,
        call_id: Some(t(7, "call_id")?).filter(|c| !c.is_empty()),
    };
    if !super::CALL_TIMES.contains(&row.start_time) {
        return Err(format!(
            "start_time {} is no date of a call",
            row.start_time
        ));
    }
    if !(0..=MAX_DURATION).contains(&row.duration) {
        return Err(format!("duration {} is out of range", row.duration));
    }
    if row.connected_time != 0
        && !(row.start_time..=row.start_time + MAX_DURATION).contains(&row.connected_time)
    {
        return Err(format!(
            "connected_time {} is before the start or long after it",
            row.connected_time
        ));
    }
    Ok(row)
}

impl LinphoneSource {
    /// A row's call events. No I/O.
    pub fn events_of(&self, row: &Row) -> Vec<super::CallEvent> {
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

    /// A row's call events not emitted yet.
    fn emit(&self, row: &Row, out: &mut Poll) {
        for ev in self.events_of(row) {
            let key = ev.key();
            if !out.next.has_seen(&key) {
                out.next.remember(key);
                out.events.push(ev);
            }
        }
    }

    /// A whole-file problem: reported when it is new, not on every poll.
    fn complain(&mut self, out: &mut Poll, why: String) {
        if self.complained.as_deref() != Some(why.as_str()) {
            out.problems.push(self.problem(None, why.clone()));
            self.complained = Some(why);
        }
    }

    fn read(&mut self, cursor: &Cursor, out: &mut Poll) -> Result<(), ReadError> {
        let conn = connect(&self.path).map_err(|e| ReadError::Transient(e.to_string()))?;
        let schema = match self.schema {
            // Learned once; a later read that sees no call_id is a disturbed one.
            Some(s @ (Schema::MainDb | Schema::CallHistory { call_id: true })) => s,
            _ => {
                let learned = schema(&conn, &self.path)?;
                self.schema = Some(learned);
                learned
            }
        };
        let has_call_id = match schema {
            Schema::MainDb => return self.read_main(&conn, cursor, out),
            Schema::CallHistory { call_id } => call_id,
        };
        let rows = read_rows(&conn, has_call_id, cursor.last_row)
            .map_err(|e| ReadError::Transient(e.to_string()))?;
        for row in rows {
            match row {
                Ok(row) => {
                    out.next.last_row = out.next.last_row.max(row.id);
                    self.emit(&row, out);
                }
                // Skipped, with one problem: it is behind the position from now on.
                Err((id, why)) => {
                    out.next.last_row = out.next.last_row.max(id);
                    out.problems.push(self.problem(
                        Some(id as u64),
                        format!("call_history row {id} skipped: {why}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl LinphoneSource {
    /// `linphone.db`: final rows after the position are emitted (once: by their events' keys);
    /// the position stops below the oldest row still in progress.
    fn read_main(
        &mut self,
        conn: &Connection,
        cursor: &Cursor,
        out: &mut Poll,
    ) -> Result<(), ReadError> {
        let rows = read_main_rows(conn, cursor.last_row)
            .map_err(|e| ReadError::Transient(e.to_string()))?;
        let now = Utc::now().timestamp();
        let mut held = false;
        for (ended, row) in rows {
            match row {
                Ok(row) if ended => {
                    self.emit(&row, out);
                    if !held {
                        out.next.last_row = row.id;
                    }
                }
                Ok(row) => {
                    if now - row.start_time < ABANDONED_S {
                        held = true;
                    } else if !held {
                        out.next.last_row = row.id;
                    }
                }
                Err((id, why)) => {
                    if !held {
                        out.next.last_row = id;
                    }
                    let key = format!("bad-row:{id}");
                    if !out.next.has_seen(&key) {
                        out.next.remember(key);
                        out.problems.push(self.problem(
                            Some(id as u64),
                            format!("conference_call row {id} skipped: {why}"),
                        ));
                    }
                }
            }
        }
        Ok(())
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
        match std::fs::metadata(&self.path) {
            Err(_) => return out,
            Ok(m) if m.is_dir() => {
                let why = format!(
                    "{} is a folder: the linphone source needs the linphone.db or call-history.db file in it",
                    self.path.display()
                );
                self.complain(&mut out, why);
                return out;
            }
            Ok(_) => {}
        }
        match self.read(cursor, &mut out) {
            Ok(()) => self.complained = None,
            // linphone is mid-write (hot journal), creating the table, or holding the file:
            // not an error, just later.
            Err(ReadError::Transient(_)) => out.retry_soon = true,
            Err(ReadError::Unusable(why)) => {
                out.next = cursor.clone();
                out.events.clear();
                self.complain(&mut out, why);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{connect_call, end_call, main_db, start_call};
    use callsync_core::event::EventKind;

    #[test]
    fn the_recorded_history_becomes_the_expected_calls() {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/softphones/final_decl_alice_call-history.db"
        );
        if !Path::new(fixture).exists() {
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

    fn fixture_copy(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let db = dir.join("call-history.db");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/softphones/final_decl_alice_call-history.db"
            ),
            &db,
        )
        .unwrap();
        db
    }

    fn ended(p: &Poll) -> usize {
        p.events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Ended { .. }))
            .count()
    }

    /// Defect: a path with `#`, `?` or `%` could not be opened (it went into the SQLite URI
    /// unescaped).
    #[test]
    fn a_path_with_uri_characters_opens() {
        let d = tempfile::tempdir().unwrap();
        // `?` cannot be in a Windows file name; the rest can, non-ASCII too.
        let name = if cfg!(windows) {
            "linphone #2 [x] 100% 山田"
        } else {
            "linphone #2 ?x 100% 山田"
        };
        let db = fixture_copy(&d.path().join(name));
        let p = LinphoneSource::new("l", &db).poll(&Cursor::default());
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(ended(&p), 4);
    }

    /// Defect: a db without call_history, an older schema or a folder exited 0 with no events
    /// and no message. Each is said once, not on every poll.
    #[test]
    fn files_that_are_no_history_say_what_is_wrong_once() {
        let d = tempfile::tempdir().unwrap();
        let other = d.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE contacts (id INTEGER);")
            .unwrap();
        let old = d.path().join("old.db");
        Connection::open(&old)
            .unwrap()
            .execute_batch("CREATE TABLE call_history (id INTEGER PRIMARY KEY, caller TEXT, callee TEXT, direction INTEGER, duration INTEGER, start_time TEXT, status INTEGER);")
            .unwrap();
        for (path, want) in [
            (other, "neither call_history nor conference_call"),
            (old, "lacks the column(s) connected_time"),
            (d.path().to_owned(), "is a folder"),
        ] {
            let mut src = LinphoneSource::new("l", &path);
            let p = src.poll(&Cursor::default());
            assert_eq!(p.problems.len(), 1, "{path:?}: {:?}", p.problems);
            assert!(p.problems[0].reason.contains(want), "{:?}", p.problems);
            assert!(src.poll(&p.next).problems.is_empty(), "said twice");
        }
        // An empty file (linphone creating it): later, not a problem.
        let empty = d.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        let p = LinphoneSource::new("l", &empty).poll(&Cursor::default());
        assert!(p.problems.is_empty() && p.retry_soon, "{:?}", p.problems);
    }

    /// Defect: one BLOB in a row made the whole history unreadable, retried ~9 times a second
    /// for ever with an error each time; a huge number wrapped silently. The bad row is skipped
    /// with one problem; the others come.
    #[test]
    fn a_bad_row_is_skipped_with_one_problem() {
        let d = tempfile::tempdir().unwrap();
        let db = fixture_copy(d.path());
        {
            let c = Connection::open(&db).unwrap();
            c.execute(
                "INSERT INTO call_history (caller, callee, direction, duration, start_time, connected_time, status, call_id) VALUES (?1, 'sip:alice@127.0.0.1', 1, 3, '1796000000', '0', 2, 'blob-row')",
                [rusqlite::types::Value::Blob(vec![0xff, 0x00, 0x12])],
            )
            .unwrap();
            c.execute_batch(
                "INSERT INTO call_history (caller, callee, direction, duration, start_time, connected_time, status, call_id) VALUES ('sip:bob@127.0.0.1', 'sip:alice@127.0.0.1', 1, 3, '99999999999999999', '0', 2, 'huge-row');
                 INSERT INTO call_history (caller, callee, direction, duration, start_time, connected_time, status, call_id) VALUES ('sip:bob@127.0.0.1', 'sip:alice@127.0.0.1', 1, 3, '1796000100', '0', 2, 'good-row');",
            )
            .unwrap();
        }
        let mut src = LinphoneSource::new("l", &db);
        let p = src.poll(&Cursor::default());
        assert_eq!(ended(&p), 5, "the four recorded calls and the good row");
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(
            p.problems[0].reason.contains("binary data"),
            "{:?}",
            p.problems
        );
        assert!(
            p.problems[1].reason.contains("start_time"),
            "{:?}",
            p.problems
        );
        assert!(!p.retry_soon);
        assert_eq!(p.next.last_row, 7);
        let again = src.poll(&p.next);
        assert!(again.problems.is_empty() && again.events.is_empty());
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

    fn outcomes(p: &Poll) -> Vec<(String, Direction, Outcome, Option<u64>)> {
        p.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Ended {
                    outcome,
                    duration_s,
                    ..
                } => Some((
                    e.call_id.clone(),
                    e.info.as_ref().unwrap().direction,
                    *outcome,
                    *duration_s,
                )),
                _ => None,
            })
            .collect()
    }

    /// liblinphone ≥ 5.2: calls in `linphone.db`, read once final, by their SIP Call-ID, with
    /// every status; a call in progress holds the position until it ends, and comes once.
    #[test]
    fn linphone_5_2_main_db_calls_come_once_final() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("linphone.db");
        let c = main_db(&db).unwrap();
        let today = Utc::now().format("%Y-%m-%d").to_string();
        let at = |hms: &str| format!("{today} {hms}");
        let a = start_call(&c, "call-answered", true, &at("00:00:01")).unwrap();
        end_call(&c, a, 0, Some(&at("00:00:04")), 30).unwrap();
        let m = start_call(&c, "call-missed", true, &at("00:01:00")).unwrap();
        end_call(&c, m, 2, None, 0).unwrap();
        let live = start_call(&c, "call-live", false, &at("00:02:00")).unwrap();
        let r = start_call(&c, "call-declined", false, &at("00:03:00")).unwrap();
        end_call(&c, r, 3, None, 0).unwrap();
        let x = start_call(&c, "call-aborted", false, &at("00:04:00")).unwrap();
        end_call(&c, x, 4, None, 0).unwrap();
        let mut src = LinphoneSource::new("linphone", &db);
        let p = src.poll(&Cursor::default());
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let got = outcomes(&p);
        assert_eq!(
            got,
            vec![
                (
                    "call-answered".into(),
                    Direction::Inbound,
                    Outcome::Answered,
                    Some(30)
                ),
                (
                    "call-missed".into(),
                    Direction::Inbound,
                    Outcome::NoAnswer,
                    Some(0)
                ),
                (
                    "call-declined".into(),
                    Direction::Outbound,
                    Outcome::Rejected,
                    Some(0)
                ),
                (
                    "call-aborted".into(),
                    Direction::Outbound,
                    Outcome::NoAnswer,
                    Some(0)
                ),
            ]
        );
        let caller = p.events[0].info.as_ref().unwrap();
        assert_eq!(
            (caller.remote.as_str(), caller.local.as_deref()),
            ("0311110001", Some("agent"))
        );
        // The position stays below the call in progress.
        assert_eq!(p.next.last_row, m);
        assert!(
            src.poll(&p.next).events.is_empty(),
            "a re-read repeated calls"
        );
        // It connects, then ends: it comes once.
        connect_call(&c, live, &at("00:02:05")).unwrap();
        assert!(
            src.poll(&p.next).events.is_empty(),
            "a connected call is not final"
        );
        end_call(&c, live, 0, None, 12).unwrap();
        let p2 = src.poll(&p.next);
        assert_eq!(
            outcomes(&p2),
            vec![(
                "call-live".into(),
                Direction::Outbound,
                Outcome::Answered,
                Some(12)
            )]
        );
        assert_eq!(p2.next.last_row, x);
        assert!(src.poll(&p2.next).events.is_empty());
    }

    /// A row left without its end for a day (linphone died mid-call) does not hold the
    /// position for ever.
    #[test]
    fn an_abandoned_main_db_row_is_passed_over() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("linphone.db");
        let c = main_db(&db).unwrap();
        let stale = start_call(&c, "call-stale", true, "2026-01-01 10:00:00").unwrap();
        let a = start_call(&c, "call-after", true, "2026-01-01 11:00:00").unwrap();
        end_call(&c, a, 2, None, 0).unwrap();
        let mut src = LinphoneSource::new("linphone", &db);
        let p = src.poll(&Cursor::default());
        assert_eq!(outcomes(&p).len(), 1);
        assert!(p.next.last_row >= a && a > stale, "{}", p.next.last_row);
    }

    /// With no path, `kind = "linphone"` reads linphone.db where liblinphone ≥ 5.2 made one.
    #[test]
    fn the_default_path_prefers_linphone_db() {
        let d = tempfile::tempdir().unwrap();
        let old = d.path().join("call-history.db");
        std::fs::write(&old, b"").unwrap();
        assert_eq!(crate::linphone_default(d.path()), old);
        let new = d.path().join("linphone.db");
        drop(main_db(&new).unwrap());
        assert_eq!(crate::linphone_default(d.path()), new);
    }
}
