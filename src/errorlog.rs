//! The integration error log: every input callsync could not use, and why, for `callsync
//! errors` and the tray. JSON Lines in the data directory, appended and fsynced.

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

impl ErrorLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ErrorLog { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&self, e: &ErrorEntry) -> io::Result<()> {
        crate::fsutil::append_json_line(&self.path, e)
    }

    pub fn calllog(&self, p: &SourceProblem) -> io::Result<()> {
        tracing::warn!(source = %p.source, file = %p.file, line = ?p.line, "call log: {}", p.reason);
        self.append(&ErrorEntry {
            file: Some(p.file.clone()),
            line: p.line,
            ..ErrorEntry::now("calllog", &p.source, &p.reason)
        })
    }

    pub fn read(&self) -> io::Result<Vec<ErrorEntry>> {
        crate::fsutil::read_json_lines(&self.path)
    }
}
