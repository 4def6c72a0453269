//! MicroSIP's call history: `microsip.ini` (`%APPDATA%\MicroSIP\` when installed, beside
//! `microsip.exe` when portable), UTF-16LE with a BOM (UTF-8 accepted for hand-made files), an
//! INI section `[Calls]` whose keys `0`…`999` form a ring overwritten in place, one row per
//! call: `number;name;type;time;duration;info`. Facts from MicroSIP's source (3.19.27, 3.22.3):
//! `type` 0 outgoing, 1 incoming answered, 2 missed, 3 answered elsewhere; `time` the Unix
//! second the row was made (dialling or ringing); `duration` connected seconds; `info` the end
//! reason in the UI's language, empty while the call is in progress. A deleted row is `N=null`.
//!
//! Readings (ours): a row is a finished call when `info` is non-empty, and it is emitted once,
//! when it first is. MicroSIP stores no SIP Call-ID: the call id is derived from (source, number,
//! time), which an in-place update (in progress → ended, missed → incoming) keeps, so a re-read
//! never makes a second Task; a transfer cannot be told apart from a new call in this format.
//! The ring is read by row, not by key, so a wrapped ring loses and repeats nothing. The
//! profile API rewrites the whole file: a read that is not a whole file (odd length, no complete
//! line) is retried, and only complete lines count. No ringing is visible before the row is
//! written at the end, so MicroSIP gives no screen pop (the native log does).

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, TimeZone, Utc};

use super::cursor::Cursor;
use super::{digest, history_events, sip_user, CallInfo, Direction, Origin, Outcome, Poll, Source};

pub struct MicrosipSource {
    name: String,
    path: PathBuf,
}

/// One `[Calls]` row as MicroSIP wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub number: String,
    pub name: String,
    pub kind: u8,
    pub time: i64,
    pub duration: u64,
    pub info: String,
}

impl Row {
    /// `number;name;type;time;duration;info`. MicroSIP does not escape: a `;` in the name
    /// gives more fields, so the number is the first and the last four are the rest.
    pub fn parse(value: &str) -> Result<Row, String> {
        let f: Vec<&str> = value.split(';').collect();
        if f.len() < 6 {
            return Err(format!(
                "expected number;name;type;time;duration;info, found {} field(s)",
                f.len()
            ));
        }
        let n = f.len();
        let kind: u8 = f[n - 4]
            .trim()
            .parse()
            .ok()
            .filter(|k| *k <= 3)
            .ok_or_else(|| format!("type {:?} is not 0–3", f[n - 4]))?;
        let time: i64 = f[n - 3]
            .trim()
            .parse()
            .ok()
            .filter(|t| super::CALL_TIMES.contains(t))
            .ok_or_else(|| format!("time {:?} is not a Unix time in 2000–2100", f[n - 3]))?;
        let duration: u64 = f[n - 2]
            .trim()
            .parse()
            .ok()
            .filter(|d| *d <= super::MAX_DURATION_S)
            .ok_or_else(|| format!("duration {:?} is not a number of seconds", f[n - 2]))?;
        Ok(Row {
            number: f[0].trim().to_owned(),
            name: f[1..n - 4].join(";"),
            kind,
            time,
            duration,
            info: f[n - 1].trim().to_owned(),
        })
    }

    pub fn finished(&self) -> bool {
        !self.info.is_empty()
    }

    pub fn direction(&self) -> Direction {
        if self.kind == 0 {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    }

    /// The seed's outcome: by `type` and `duration` first, which do not depend on the UI's
    /// language; the end reason only tells a declined or busy outgoing call from an unanswered
    /// one (English and Japanese texts; any other text is "not answered", never "missed" for
    /// a call that was answered). "Answered elsewhere" (3) was answered by the user on another
    /// device: answered.
    pub fn outcome(&self) -> Outcome {
        match self.kind {
            1 | 3 => Outcome::Answered,
            2 => Outcome::NoAnswer,
            _ if self.duration > 0 => Outcome::Answered,
            _ => {
                let i = self.info.to_lowercase();
                if ["declined", "decline", "rejected", "拒否"]
                    .iter()
                    .any(|w| i.contains(w))
                {
                    Outcome::Rejected
                } else if ["busy", "話し中", "通話中"].iter().any(|w| i.contains(w)) {
                    Outcome::Busy
                } else {
                    Outcome::NoAnswer
                }
            }
        }
    }
}

/// The call id of a row: stable across in-place updates of that row (number and time do not
/// change), and the same for a call read from the INI file or from an export by a source of
/// the same name.
fn call_id(source: &str, r: &Row) -> String {
    format!(
        "microsip-{}",
        digest(&format!("{source}|{}|{}", r.number, r.time))
    )
}

/// The events of a finished row. MicroSIP keeps no connect time: the talk is taken to begin at
/// the row's time.
fn row_events(source: &str, id: String, r: &Row) -> Vec<super::CallEvent> {
    let Some(start) = Utc
        .timestamp_opt(r.time, 0)
        .single()
        .map(|d| d.fixed_offset())
    else {
        return Vec::new();
    };
    let outcome = r.outcome();
    let answered: Option<DateTime<FixedOffset>> = (outcome == Outcome::Answered).then_some(start);
    let end = start + chrono::Duration::seconds(r.duration as i64);
    let info = CallInfo {
        direction: r.direction(),
        remote: sip_user(&r.number),
        local: None,
        agent: None,
        origin: Origin::Manual,
        record_id: None,
    };
    history_events(source, id, info, start, answered, end, outcome)
}

/// How a reason ends when the file was caught mid-rewrite (read again, not reported).
const REWRITE: &str = "read during a rewrite";

/// The file's text, or why it is not (yet) a whole file. UTF-16LE with BOM as MicroSIP writes
/// it; UTF-8 (with or without BOM) for hand-made files.
pub fn decode(bytes: &[u8]) -> Result<String, String> {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        if rest.len() % 2 != 0 {
            return Err(format!("an odd number of UTF-16 bytes: {REWRITE}"));
        }
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16(&units).map_err(|e| format!("not UTF-16LE text: {e}"));
    }
    let rest = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    if rest.len() >= 2 && rest[1] == 0 && rest[0] != 0 {
        // UTF-16LE without its BOM: the first bytes of a rewrite, or a damaged file.
        return Err(format!(
            "UTF-16 text without its byte-order mark: {REWRITE}"
        ));
    }
    String::from_utf8(rest.to_vec()).map_err(|_| "neither UTF-16LE nor UTF-8 text".into())
}

/// The `[Calls]` rows of an INI text: (line number, key, value), complete lines only (the last
/// may still be being written), `null` rows left out.
pub fn calls_section(text: &str) -> Vec<(usize, &str, &str)> {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut inside = false;
    let mut out = Vec::new();
    for (i, line) in complete.lines().enumerate() {
        let line = line.trim_end_matches('\r').trim();
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim().eq_ignore_ascii_case("calls");
            continue;
        }
        if !inside || line.is_empty() || line.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            if !v.eq_ignore_ascii_case("null") && !v.is_empty() {
                out.push((i + 1, k.trim(), v));
            }
        }
    }
    out
}

impl MicrosipSource {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        MicrosipSource {
            name: name.into(),
            path: path.into(),
        }
    }

    fn call_id(&self, r: &Row) -> String {
        call_id(&self.name, r)
    }

    fn read(&self) -> Result<Option<String>, String> {
        match std::fs::read(&self.path) {
            Ok(b) => decode(&b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read: {e}")),
        }
    }

    /// The finished calls of an INI text not emitted yet (by `out.next`'s memory). No I/O.
    pub fn read_text(&self, text: &str, mut out: Poll) -> Poll {
        let mut rows: Vec<(usize, Row)> = Vec::new();
        for (line, key, value) in calls_section(text) {
            match Row::parse(value) {
                Ok(r) => rows.push((line, r)),
                Err(why) => {
                    // Said once: the file is read whole at every poll.
                    let k = format!("bad:{}", digest(&format!("{key}={value}")));
                    if !out.next.has_seen(&k) {
                        out.next.remember(k);
                        out.problems
                            .push(self.problem(Some(line as u64), format!("{key}: {why}")));
                    }
                }
            }
        }
        // The ring is overwritten in place: by time, not by key.
        rows.sort_by_key(|(line, r)| (r.time, *line));
        for (_, r) in rows.into_iter().filter(|(_, r)| r.finished()) {
            let id = self.call_id(&r);
            if out.next.has_seen(&id) {
                continue;
            }
            out.next.remember(id.clone());
            out.events.extend(row_events(&self.name, id, &r));
        }
        out
    }
}

impl Source for MicrosipSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn poll(&mut self, cursor: &Cursor) -> Poll {
        let out = Poll {
            next: cursor.clone(),
            ..Poll::default()
        };
        match self.read() {
            Ok(Some(text)) => self.read_text(&text, out),
            Ok(None) => out,
            Err(why) => {
                // A rewrite in progress, or a file in use: read again soon; a file that is no
                // history at all is said once.
                let mut out = out;
                out.retry_soon = true;
                let k = format!("unreadable:{}", digest(&why));
                if !why.ends_with(REWRITE) && !out.next.has_seen(&k) {
                    out.next.remember(k);
                    out.problems.push(self.problem(None, why));
                }
                out
            }
        }
    }

    /// The calls already in the history at first sight are history from before callsync: only
    /// calls that finish from now on are read.
    fn baseline(&self) -> Cursor {
        let mut c = Cursor::default();
        if let Ok(Some(text)) = self.read() {
            for (_, _, value) in calls_section(&text) {
                if let Ok(r) = Row::parse(value) {
                    if r.finished() {
                        c.remember(self.call_id(&r));
                    }
                }
            }
        }
        c
    }
}

pub mod export;

#[cfg(test)]
mod tests;
