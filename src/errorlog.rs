//! The integration error log: every input callsync could not use, and why, for `callsync
//! errors` and the tray. JSON Lines in the data directory, appended and fsynced once per batch;
//! a flood of one kind of problem is summarised ("… and 1,234 more like this"), and the file is
//! capped: past 4 MiB it becomes `errors.jsonl.1` (the one before is dropped).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::calllog::SourceProblem;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    pub at: String,
    /// `calllog`, `salesforce`, …
    pub area: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub reason: String,
}

impl ErrorEntry {
    /// An entry stamped now, about no particular file line.
    pub fn now(area: &str, source: impl Into<String>, reason: impl Into<String>) -> ErrorEntry {
        ErrorEntry {
            at: crate::record::format_sf_datetime(chrono::Utc::now()),
            area: area.into(),
            source: source.into(),
            file: None,
            line: None,
            reason: reason.into(),
        }
    }
}

pub struct ErrorLog {
    path: PathBuf,
}

/// Past this size the log starts again (the old one kept as `.1`): at most ~8 MiB in all.
const CAP_BYTES: u64 = 4 * 1024 * 1024;

/// Entries kept per kind of problem in one batch; the rest are counted in one more entry.
const SAME_KIND_KEPT: usize = 20;

impl ErrorLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ErrorLog { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn previous(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    pub fn append(&self, e: &ErrorEntry) -> io::Result<()> {
        self.append_all(std::slice::from_ref(e))
    }

    /// Appends entries with one write and one fsync (a file of 200,000 bad lines costs one, not
    /// 200,000), starting a new file once the current one is past the cap.
    pub fn append_all(&self, entries: &[ErrorEntry]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= CAP_BYTES) {
            std::fs::rename(&self.path, self.previous())?;
        }
        crate::fsutil::append_json_lines(&self.path, entries)
    }

    pub fn calllog(&self, p: &SourceProblem) -> io::Result<()> {
        self.calllog_batch(std::slice::from_ref(p))
    }

    /// A batch of call-log problems: each logged, but a kind seen many times (every line of a
    /// file in the wrong format) only its first few and then "… and N more like this".
    pub fn calllog_batch(&self, problems: &[SourceProblem]) -> io::Result<()> {
        let entries = summarize(problems);
        for e in &entries {
            tracing::warn!(source = %e.source, file = ?e.file, line = ?e.line, "call log: {}", e.reason);
        }
        self.append_all(&entries)
    }

    /// The entries, oldest first (the previous file's too).
    pub fn read(&self) -> io::Result<Vec<ErrorEntry>> {
        let mut all: Vec<ErrorEntry> = crate::fsutil::read_json_lines(&self.previous())?;
        all.extend(crate::fsutil::read_json_lines::<ErrorEntry>(&self.path)?);
        Ok(all)
    }
}

/// What kind of problem a reason is: its words up to the first detail (`malformed JSON:
/// expected value at line 1` → `malformed JSON`).
fn kind(reason: &str) -> &str {
    reason.split([':', '(']).next().unwrap_or(reason).trim()
}

/// Pure: the entries for a batch of problems, at most [`SAME_KIND_KEPT`] per (source, file,
/// kind) followed by one that counts the rest.
pub fn summarize(problems: &[SourceProblem]) -> Vec<ErrorEntry> {
    use std::collections::BTreeMap;
    let mut counts: BTreeMap<(&str, &str, &str), (usize, Option<u64>)> = BTreeMap::new();
    let mut out = Vec::new();
    for p in problems {
        let c = counts
            .entry((&p.source, &p.file, kind(&p.reason)))
            .or_insert((0, None));
        c.0 += 1;
        if c.0 <= SAME_KIND_KEPT {
            out.push(ErrorEntry {
                file: Some(p.file.clone()),
                line: p.line,
                ..ErrorEntry::now("calllog", &p.source, &p.reason)
            });
        } else if c.1.is_none() {
            c.1 = p.line;
        }
    }
    for ((source, file, kind), (n, first_line)) in counts {
        if n > SAME_KIND_KEPT {
            out.push(ErrorEntry {
                file: Some(file.to_owned()),
                line: first_line,
                ..ErrorEntry::now(
                    "calllog",
                    source,
                    format!(
                        "… and {} more like this ({kind}), from this line on",
                        crate::i18n::count((n - SAME_KIND_KEPT) as u64)
                    ),
                )
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(line: u64, reason: &str) -> SourceProblem {
        SourceProblem {
            source: "native".into(),
            file: "/x/calls.jsonl".into(),
            line: Some(line),
            reason: reason.into(),
        }
    }

    #[test]
    fn a_flood_is_summarised() {
        let mut ps: Vec<SourceProblem> = (1..=25_000)
            .map(|i| {
                problem(
                    i,
                    &format!("malformed JSON: expected value at line 1 column {i}"),
                )
            })
            .collect();
        ps.push(problem(25_001, "missing call_id"));
        let out = summarize(&ps);
        assert_eq!(out.len(), SAME_KIND_KEPT + 2);
        let more = out.iter().find(|e| e.reason.starts_with("…")).unwrap();
        assert_eq!(
            more.reason,
            "… and 24,980 more like this (malformed JSON), from this line on"
        );
        assert_eq!(more.line, Some(21));
        assert!(out.iter().any(|e| e.reason == "missing call_id"));
    }

    #[test]
    fn the_log_is_capped() {
        let d = tempfile::tempdir().unwrap();
        let log = ErrorLog::new(d.path().join("errors.jsonl"));
        let big = ErrorEntry::now("calllog", "x", "y".repeat(1024 * 1024));
        for _ in 0..10 {
            log.append(&big).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(log.path()) + size(&log.previous()) <= 2 * CAP_BYTES + 2 * 1024 * 1024);
        assert!(log.read().unwrap().len() >= 4);
    }
}
