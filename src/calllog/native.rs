//! The native call-event log: JSON Lines appended by a softphone or plugin
//! (`docs/call-log-format.md`). Only whole lines are read (a partial last line waits for its
//! newline); a rotated file is found again by its identity and read to its end before the new
//! one; truncation and replacement restart at the beginning, with event keys as the guard
//! against repeats.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::DateTime;
use serde_json::Value;

use super::cursor::{Cursor, FileId};
use super::{CallEvent, CallInfo, EventKind, Poll, Source};

/// Event names the format defines; anything else is logged and skipped (later versions may add
/// events).
const KNOWN: [&str; 8] = [
    "dialing",
    "ringing",
    "answered",
    "ended",
    "transferred",
    "memo",
    "speech",
    "meeting",
];

/// How the lines of an appended log are understood.
pub trait LineFormat: Send {
    /// Called before each read: header formats (CSV) read the file's first line here.
    fn prepare(&mut self, _file: &Path) -> Result<(), String> {
        Ok(())
    }
    /// Line 1 of a header format is no data.
    fn has_header(&self) -> bool {
        false
    }
    /// The events of one line (none: a line to skip, e.g. an unknown event).
    fn parse(&self, source: &str, line: &str) -> Result<Vec<CallEvent>, String>;
}

/// A log that grows by appended lines, read from a persisted (identity, offset, fingerprint).
pub struct AppendedLog<F: LineFormat> {
    name: String,
    path: PathBuf,
    format: F,
    /// The file as it was when last read to its end: an unchanged file is not opened again
    /// (every open is also an inotify event that wakes the watcher).
    read_to_end: Option<crate::fsutil::FileStamp>,
}

impl<F: LineFormat> AppendedLog<F> {
    pub fn with_format(name: impl Into<String>, path: impl Into<PathBuf>, format: F) -> Self {
        AppendedLog {
            name: name.into(),
            path: path.into(),
            format,
            read_to_end: None,
        }
    }
}

/// The native JSON Lines format.
pub struct Native;

impl LineFormat for Native {
    fn parse(&self, source: &str, line: &str) -> Result<Vec<CallEvent>, String> {
        match parse_line(source, line)? {
            Some(ev) => Ok(vec![ev]),
            None => {
                let name = serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v["event"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                tracing::info!(source, "skipping unknown event {name:?}");
                Ok(Vec::new())
            }
        }
    }
}

pub type NativeSource = AppendedLog<Native>;

impl NativeSource {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        AppendedLog::with_format(name, path, Native)
    }
}

/// Parses one line of the native format.
pub fn parse_line(source: &str, line: &str) -> Result<Option<CallEvent>, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    if let Some(ver) = v.get("v") {
        if ver.as_u64() != Some(1) {
            return Err(format!(
                "format version {ver} is not supported (this callsync reads v1)"
            ));
        }
    }
    let call_id = v["call_id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("missing call_id")?
        .to_owned();
    let event = v["event"].as_str().ok_or("missing event")?;
    if !KNOWN.contains(&event) {
        return Ok(None);
    }
    let at = v["at"].as_str().ok_or("missing at")?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|e| {
        format!("bad timestamp {at:?} (RFC 3339 with offset, e.g. 2026-11-21T10:00:00+09:00): {e}")
    })?;
    let kind: EventKind =
        serde_json::from_value(v.clone()).map_err(|e| format!("bad {event} event: {e}"))?;
    let info = if v.get("direction").is_some() {
        Some(
            serde_json::from_value::<CallInfo>(v.clone())
                .map_err(|e| format!("bad call details: {e}"))?,
        )
    } else {
        None
    };
    Ok(Some(CallEvent {
        source: source.to_owned(),
        call_id,
        at,
        kind,
        info,
    }))
}

/// Looks for a file with identity `id` next to `path` (a rotated log: `calls.log.1`, …).
fn find_rotated(path: &Path, id: FileId) -> Option<PathBuf> {
    let dir = path.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p != path
                && std::fs::metadata(p)
                    .map(|m| FileId::of(&m) == id)
                    .unwrap_or(false)
        })
}

/// Bytes before the offset that the fingerprint covers.
const TAIL: u64 = 64;

/// Digest of the `TAIL` bytes before `offset` in `file`.
fn tail_digest(file: &Path, offset: u64) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(file).ok()?;
    let start = offset.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = vec![0u8; (offset - start) as usize];
    f.read_exact(&mut buf).ok()?;
    Some(
        Sha256::digest(&buf)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

impl<F: LineFormat> AppendedLog<F> {
    /// Reads whole lines of `file` from `cursor.offset`, advancing the cursor past them.
    fn read_from(&mut self, file: &Path, cursor: &mut Cursor, out: &mut Poll) {
        if let Err(reason) = self.format.prepare(file) {
            out.problems.push(self.problem(Some(1), reason));
            return;
        }
        let mut f = match std::fs::File::open(file) {
            Ok(f) => f,
            Err(e) => {
                out.problems
                    .push(self.problem(None, format!("cannot read: {e}")));
                return;
            }
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(cursor.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            out.problems
                .push(self.problem(None, "cannot read the new lines".into()));
            out.retry_soon = true;
            return;
        }
        // A set view of the remembered keys for this read (the cursor keeps them in order).
        let mut seen: std::collections::HashSet<String> = cursor.seen.iter().cloned().collect();
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let raw = &buf[start..start + nl];
            start += nl + 1;
            cursor.offset += (nl + 1) as u64;
            cursor.line += 1;
            let line = match std::str::from_utf8(raw) {
                Ok(l) => l.trim(),
                Err(_) => {
                    out.problems
                        .push(self.problem(Some(cursor.line), "not UTF-8 text".into()));
                    continue;
                }
            };
            if line.is_empty() || (cursor.line == 1 && self.format.has_header()) {
                continue;
            }
            match self.format.parse(&self.name, line) {
                Ok(evs) => {
                    for ev in evs {
                        let key = ev.key();
                        if seen.insert(key.clone()) {
                            cursor.remember(key);
                            out.events.push(ev);
                        }
                    }
                }
                Err(reason) => out.problems.push(self.problem(Some(cursor.line), reason)),
            }
        }
        cursor.tail = tail_digest(file, cursor.offset);
    }
}

impl<F: LineFormat> Source for AppendedLog<F> {
    fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn poll(&mut self, cursor: &Cursor) -> Poll {
        let mut next = cursor.clone();
        let mut out = Poll::default();
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            // Not there yet (or rotated away and not recreated): nothing to read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(old) = next.file.and_then(|id| find_rotated(&self.path, id)) {
                    self.read_from(&old, &mut next, &mut out);
                }
                out.next = next;
                return out;
            }
            Err(e) => {
                out.problems
                    .push(self.problem(None, format!("cannot read: {e}")));
                out.next = next;
                return out;
            }
        };
        let stamp = crate::fsutil::FileStamp::of(&meta);
        let id = stamp.id;
        if self.read_to_end == Some(stamp) && next.file == Some(id) && next.offset == meta.len() {
            out.next = next;
            return out;
        }
        if next.file != Some(id) {
            // Rotated: finish the old file first, wherever it went.
            if let Some(old) = next.file.and_then(|old| find_rotated(&self.path, old)) {
                self.read_from(&old, &mut next, &mut out);
            }
            next.file = Some(id);
            next.offset = 0;
            next.line = 0;
        } else if meta.len() < next.offset
            || (next.offset > 0 && tail_digest(&self.path, next.offset) != next.tail)
        {
            // Truncated or rewritten in place: start again (keys keep already-emitted events
            // out).
            tracing::info!(source = %self.name, "call log truncated; reading it again from the start");
            next.offset = 0;
            next.line = 0;
        }
        self.read_from(&self.path.clone(), &mut next, &mut out);
        // Remember the file only when this read reached its end as it was measured.
        self.read_to_end = (next.file == Some(id) && next.offset == meta.len()).then_some(stamp);
        out.next = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calllog::{Direction, Outcome, TransferKind};

    #[test]
    fn parses_every_event() {
        let lines = [
            r#"{"v":1,"call_id":"c1","event":"dialing","at":"2026-11-21T10:00:00+09:00","direction":"outbound","remote":"03-1234-5678","agent":"taro","origin":"click_to_call","record_id":"003000000000001AAA"}"#,
            r#"{"call_id":"c1","event":"answered","at":"2026-11-21T10:00:05+09:00"}"#,
            r#"{"call_id":"c1","event":"transferred","at":"2026-11-21T10:01:00+09:00","kind":"auto_forward","to":"100"}"#,
            r#"{"call_id":"c1","event":"ended","at":"2026-11-21T10:02:00+09:00","outcome":"answered","duration_s":115}"#,
            r#"{"call_id":"c1","event":"memo","at":"2026-11-21T10:03:00+09:00","items":["Quote","Callback"],"comment":"wants a quote","edited":false}"#,
            r#"{"call_id":"c1","event":"speech","at":"2026-11-21T10:05:00+09:00","transcript":"hello","summary":"greeting"}"#,
        ];
        let evs: Vec<CallEvent> = lines
            .iter()
            .map(|l| parse_line("n", l).unwrap().unwrap())
            .collect();
        let info = evs[0].info.as_ref().unwrap();
        assert_eq!(info.direction, Direction::Outbound);
        assert_eq!(info.record_id.as_deref(), Some("003000000000001AAA"));
        assert_eq!(
            evs[2].kind,
            EventKind::Transferred {
                kind: TransferKind::AutoForward,
                to: "100".into()
            }
        );
        assert_eq!(
            evs[3].kind,
            EventKind::Ended {
                outcome: Outcome::Answered,
                duration_s: Some(115)
            }
        );
        assert!(matches!(&evs[4].kind, EventKind::Memo { items, .. } if items.len() == 2));
    }

    #[test]
    fn bad_lines_say_why_and_unknown_events_are_skipped() {
        let table = [
            ("{not json", "malformed JSON"),
            ("[1]", "not a JSON object"),
            (
                r#"{"event":"ringing","at":"2026-11-21T10:00:00Z"}"#,
                "missing call_id",
            ),
            (
                r#"{"call_id":"c","event":"ringing","at":"yesterday"}"#,
                "bad timestamp",
            ),
            (
                r#"{"call_id":"c","event":"ringing","at":"2026-11-21T10:00:00"}"#,
                "bad timestamp",
            ),
            (
                r#"{"call_id":"c","event":"ended","at":"2026-11-21T10:00:00Z","outcome":"exploded"}"#,
                "bad ended event",
            ),
            (
                r#"{"call_id":"c","event":"ringing","at":"2026-11-21T10:00:00Z","direction":"sideways","remote":"1"}"#,
                "bad call details",
            ),
            (
                r#"{"v":2,"call_id":"c","event":"ringing","at":"2026-11-21T10:00:00Z"}"#,
                "version",
            ),
        ];
        for (line, want) in table {
            let e = parse_line("n", line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
        assert_eq!(
            parse_line(
                "n",
                r#"{"call_id":"c","event":"hold","at":"2026-11-21T10:00:00Z"}"#
            )
            .unwrap(),
            None
        );
    }
}
