//! The native call-event log: JSON Lines appended by a softphone or plugin
//! (`docs/call-log-format.md`). Only whole lines are read (a partial last line waits for its
//! newline); a rotated file is found again by its identity and read to its end before the new
//! one; truncation and replacement restart at the beginning, with event keys as the guard
//! against repeats.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::DateTime;
use serde_json::Value;

use super::cursor::Cursor;
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
    /// Called with a file's first line before its lines are read: header formats (CSV) learn
    /// their columns from it.
    fn prepare(&mut self, _header: &str) -> Result<(), String> {
        Ok(())
    }
    /// Line 1 of a header format is no data.
    fn has_header(&self) -> bool {
        false
    }
    /// The events of one line (none: a line to skip, e.g. an unknown event).
    fn parse(&self, source: &str, line: &str) -> Result<Vec<CallEvent>, String>;
}

/// A log that grows by appended lines, read from a persisted (identity, offset, fingerprint)
/// through its rotation chain ([`super::rotation`]).
pub struct AppendedLog<F: LineFormat> {
    name: String,
    path: PathBuf,
    format: F,
    /// Reading a finished file (an import): a last line without its newline is a line.
    whole: bool,
    /// The file as it was when last read to its end: an unchanged file is not opened again
    /// (every open is also an inotify event that wakes the watcher).
    read_to_end: Option<callsync_fs::FileStamp>,
}

impl<F: LineFormat> AppendedLog<F> {
    pub(crate) fn with_format(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        format: F,
    ) -> Self {
        AppendedLog {
            name: name.into(),
            path: path.into(),
            format,
            whole: false,
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
    super::check_time("at", &at)?;
    let kind: EventKind =
        serde_json::from_value(v.clone()).map_err(|e| format!("bad {event} event: {e}"))?;
    match &kind {
        EventKind::Ended {
            duration_s: Some(d),
            ..
        } if *d > super::MAX_DURATION_S => {
            return Err(format!(
                "duration_s {d} is out of range (0 to {} seconds)",
                super::MAX_DURATION_S
            ))
        }
        EventKind::Meeting(m) => {
            super::check_time("end", &m.end)?;
            if m.end < at {
                return Err("the meeting ends before it starts".into());
            }
        }
        _ => {}
    }
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

/// Bytes before the offset that the fingerprint covers.
const TAIL: u64 = 64;

/// Files modified this long before the one read last still count as newer (5 s): reading a
/// file again costs nothing (event keys keep repeats out), missing one loses calls.
const MTIME_MARGIN_NS: i64 = 5_000_000_000;

/// Digest of the `TAIL` bytes before `offset` in `content`.
fn digest_at(content: &[u8], offset: u64) -> Option<String> {
    use sha2::{Digest, Sha256};
    let end = usize::try_from(offset)
        .ok()
        .filter(|e| *e <= content.len())?;
    let start = end.saturating_sub(TAIL as usize);
    Some(
        Sha256::digest(&content[start..end])
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Digest of the `TAIL` bytes before `offset` in the file at `path`.
fn tail_digest(path: &Path, offset: u64) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let start = offset.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = vec![0u8; (offset - start) as usize];
    f.read_exact(&mut buf).ok()?;
    digest_at(&buf, buf.len() as u64)
}

/// The first line of `content`, if it is whole.
fn first_line(content: &[u8]) -> Option<String> {
    let nl = content.iter().position(|b| *b == b'\n')?;
    Some(String::from_utf8_lossy(&content[..nl]).into_owned())
}

/// Where the cursor's position is in a chain: (member, offset). `None` when it cannot be told
/// for sure: the file is gone or was emptied with no copy left, or the position is a file's
/// start (no fingerprint: the file may have been copied away and emptied since).
fn locate(chain: &[Member], cursor: &Cursor, header: bool) -> Option<(usize, u64)> {
    let file = cursor.file?;
    // Right after a CSV header is a file's start too: every file of the chain begins with the
    // same header, so those bytes tell no file from another.
    if cursor.offset == 0 || (header && cursor.line <= 1) {
        return None;
    }
    let fits = |m: &Member, content: Option<&[u8]>| {
        if cursor.offset == 0 {
            return true;
        }
        match content {
            Some(c) => {
                digest_at(c, cursor.offset).is_some() && digest_at(c, cursor.offset) == cursor.tail
            }
            None => m.len >= cursor.offset && tail_digest(&m.path, cursor.offset) == cursor.tail,
        }
    };
    // By identity, the file as it was (not rewritten or truncated in place).
    let by_id = chain
        .iter()
        .position(|m| m.id == file && !m.gz)
        .filter(|i| fits(&chain[*i], None));
    if let Some(i) = by_id.filter(|i| !chain[*i].is_current()) {
        return Some((i, cursor.offset));
    }
    // A copy of it made since it was read (copytruncate, or a compressed rotation): the oldest
    // such copy holds the position (a later copytruncate copied what came after). Preferred
    // even when the log itself still fits: copied and emptied, it may have grown back past
    // the position with lines that look the same (a CSV header).
    let since = cursor.mtime_ns.unwrap_or(0) - MTIME_MARGIN_NS;
    for (i, m) in chain.iter().enumerate() {
        if m.is_current() || (m.id == file && !m.gz) || m.modified_ns < since {
            continue;
        }
        if !m.gz && m.len < cursor.offset {
            continue;
        }
        let content = if m.gz { m.content().ok() } else { None };
        if fits(m, content.as_deref()) {
            return Some((i, cursor.offset));
        }
    }
    by_id.map(|i| (i, cursor.offset))
}

use super::rotation::{self, Member};

impl<F: LineFormat> AppendedLog<F> {
    /// Reads whole lines of `content` (which starts at `cursor.offset` of its file), advancing
    /// the cursor past them; a part line waits for its newline.
    fn consume(&mut self, content: &[u8], cursor: &mut Cursor, out: &mut Poll) {
        // A set view of the remembered keys for this read (the cursor keeps them in order).
        let mut seen: std::collections::HashSet<String> = cursor.seen.iter().cloned().collect();
        let mut start = 0;
        while let Some(nl) = content[start..].iter().position(|b| *b == b'\n') {
            let raw = &content[start..start + nl];
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
            self.parse_line(line, cursor, &mut seen, out);
        }
        if self.whole && start < content.len() {
            // A finished file's last line, without its newline.
            let raw = &content[start..];
            cursor.offset += raw.len() as u64;
            cursor.line += 1;
            match std::str::from_utf8(raw) {
                Ok(l) if !l.trim().is_empty() => self.parse_line(l.trim(), cursor, &mut seen, out),
                Ok(_) => {}
                Err(_) => out
                    .problems
                    .push(self.problem(Some(cursor.line), "not UTF-8 text".into())),
            }
        }
    }

    fn parse_line(
        &mut self,
        line: &str,
        cursor: &mut Cursor,
        seen: &mut std::collections::HashSet<String>,
        out: &mut Poll,
    ) {
        {
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
    }

    /// Hands a header format its file's first line; false when there is none whole yet (wait)
    /// or it is refused (a problem).
    fn prepared(&mut self, start: &[u8], out: &mut Poll) -> bool {
        if !self.format.has_header() {
            return true;
        }
        let Some(h) = first_line(start) else {
            return false;
        };
        match self.format.prepare(&h) {
            Ok(()) => true,
            Err(reason) => {
                out.problems.push(self.problem(Some(1), reason));
                false
            }
        }
    }

    /// Reads one member of the chain from `cursor.offset` to its end.
    fn read_member(&mut self, m: &Member, cursor: &mut Cursor, out: &mut Poll) {
        if m.is_current() {
            let mut f = match std::fs::File::open(&m.path) {
                Ok(f) => f,
                Err(e) => {
                    out.problems
                        .push(self.problem(None, format!("cannot read: {e}")));
                    return;
                }
            };
            let mut buf = Vec::new();
            let mut header = Vec::new();
            let read = (|| {
                if self.format.has_header() {
                    let mut h = vec![0u8; 64 * 1024];
                    let n = f.read(&mut h)?;
                    header.extend_from_slice(&h[..n]);
                }
                f.seek(SeekFrom::Start(cursor.offset))?;
                f.read_to_end(&mut buf)
            })();
            if read.is_err() {
                out.problems
                    .push(self.problem(None, "cannot read the new lines".into()));
                out.retry_soon = true;
                return;
            }
            if !self.prepared(&header, out) {
                return;
            }
            self.consume(&buf, cursor, out);
            cursor.tail = tail_digest(&m.path, cursor.offset);
        } else {
            let whole = match m.content() {
                Ok(c) => c,
                Err(e) => {
                    out.problems.push(self.problem(
                        None,
                        format!("cannot read the rotated log {}: {e}", m.path.display()),
                    ));
                    return;
                }
            };
            if !self.prepared(&whole, out) {
                return;
            }
            let from = usize::try_from(cursor.offset)
                .unwrap_or(usize::MAX)
                .min(whole.len());
            self.consume(&whole[from..], cursor, out);
            cursor.tail = digest_at(&whole, cursor.offset);
        }
        cursor.mtime_ns = Some(m.modified_ns);
    }
}

impl<F: LineFormat> Source for AppendedLog<F> {
    fn name(&self) -> &str {
        &self.name
    }

    fn read_whole(&mut self) -> Poll {
        self.whole = true;
        let p = self.poll(&Cursor::default());
        self.whole = false;
        p
    }

    /// The log as it is now, from its beginning; if it does not exist yet, whatever appears
    /// from now on (rotated files older than this are history from before callsync).
    fn baseline(&self) -> Cursor {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let meta = std::fs::metadata(&self.path).ok();
        Cursor {
            file: meta
                .as_ref()
                .map(|m| callsync_fs::FileId::of(&self.path, m)),
            mtime_ns: Some(
                meta.and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos() as i64)
                    .unwrap_or(now),
            ),
            ..Cursor::default()
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn poll(&mut self, cursor: &Cursor) -> Poll {
        let mut next = cursor.clone();
        let mut out = Poll::default();
        let current = match std::fs::metadata(&self.path) {
            Ok(m) => Some(callsync_fs::FileStamp::of(&self.path, &m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                out.problems
                    .push(self.problem(None, format!("cannot read: {e}")));
                out.next = next;
                return out;
            }
        };
        if let Some(stamp) = current {
            if self.read_to_end == Some(stamp)
                && next.file == Some(stamp.id)
                && next.offset == stamp.len
            {
                out.next = next;
                return out;
            }
        }
        let chain = rotation::chain(&self.path);
        let (from, offset) = if next.file.is_none() && next.mtime_ns.is_none() {
            // No baseline (a position saved before baselines existed): the log from its
            // beginning; rotated files hold history from before callsync followed it.
            (
                chain.len().saturating_sub(usize::from(current.is_some())),
                0,
            )
        } else {
            match locate(&chain, &next, self.format.has_header()) {
                Some(p) => p,
                None => {
                    // The file read last is gone (deleted, replaced, truncated with no copy),
                    // or reading is at a file's start: read every file modified since it was
                    // last read; event keys keep out what was read already.
                    if next.offset > 0 {
                        tracing::info!(source = %self.name, "call log replaced or truncated; reading what is newer than the part already read");
                    }
                    // Modification times are coarse (the kernel's tick): a margin keeps a file
                    // written in the same instant from looking older.
                    let since = next.mtime_ns.unwrap_or(0) - MTIME_MARGIN_NS;
                    let i = chain
                        .iter()
                        .position(|m| m.modified_ns >= since)
                        .unwrap_or(chain.len());
                    (i, 0)
                }
            }
        };
        for (j, m) in chain.iter().enumerate().skip(from) {
            if j > from || next.file != Some(m.id) || offset != next.offset {
                next.file = Some(m.id);
                next.offset = if j == from { offset } else { 0 };
                if next.offset == 0 {
                    next.line = 0;
                }
            }
            self.read_member(m, &mut next, &mut out);
        }
        // Remember the log only when this read reached its end as it was measured.
        self.read_to_end = current.filter(|s| next.file == Some(s.id) && next.offset == s.len);
        out.next = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callsync_core::event::{Direction, Outcome, TransferKind};

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
            (
                r#"{"call_id":"c","event":"ringing","at":"2016-12-31T23:59:60Z"}"#,
                "leap second",
            ),
            (
                r#"{"call_id":"c","event":"ringing","at":"1970-01-01T00:00:00Z"}"#,
                "no date of a call",
            ),
            (
                r#"{"call_id":"c","event":"ended","at":"2026-11-21T10:00:00Z","outcome":"answered","duration_s":18446744073709551615}"#,
                "out of range",
            ),
            (
                r#"{"call_id":"c","event":"ended","at":"2026-11-21T10:00:00Z","outcome":"answered","duration_s":184467440737095516150}"#,
                "bad ended event",
            ),
            (
                r#"{"call_id":"m","event":"meeting","at":"2026-11-21T10:00:00Z","end":"2026-11-21T09:00:00Z"}"#,
                "ends before",
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
