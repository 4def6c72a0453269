//! The integration error log: every input callsync could not use, and why, for `callsync
//! errors` and the tray. JSON Lines in the data directory, appended and fsynced once per batch;
//! a flood of one kind of problem is summarised ("… and 1,234 more like this"), and the file is
//! capped: past 4 MiB it becomes `errors.jsonl.1` (the one before is dropped).

use std::io;
use std::path::{Path, PathBuf};

use callsync_core::errors::{summarize, ErrorEntry};
use callsync_core::event::SourceProblem;

pub struct ErrorLog {
    path: PathBuf,
}

/// Past this size the log starts again (the old one kept as `.1`): at most ~8 MiB in all.
const CAP_BYTES: u64 = 4 * 1024 * 1024;

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
    pub(crate) fn append_all(&self, entries: &[ErrorEntry]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= CAP_BYTES) {
            std::fs::rename(&self.path, self.previous())?;
        }
        callsync_fs::append_json_lines(&self.path, entries)
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
        let mut all: Vec<ErrorEntry> = callsync_fs::read_json_lines(&self.previous())?;
        all.extend(callsync_fs::read_json_lines::<ErrorEntry>(&self.path)?);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
