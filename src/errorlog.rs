//! The integration error log: every input callsync could not use, and why, for `callsync
//! errors` and the tray. JSON Lines in the data directory, appended and fsynced.

use std::io::{self, Write};
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
        if let Some(dir) = self.path.parent() {
            crate::fsutil::create_private_dir(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = serde_json::to_vec(e).map_err(io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    }

    pub fn calllog(&self, p: &SourceProblem) -> io::Result<()> {
        tracing::warn!(source = %p.source, file = %p.file, line = ?p.line, "call log: {}", p.reason);
        self.append(&ErrorEntry {
            at: crate::record::format_sf_datetime(chrono::Utc::now()),
            area: "calllog".into(),
            source: p.source.clone(),
            file: Some(p.file.clone()),
            line: p.line,
            reason: p.reason.clone(),
        })
    }

    pub fn read(&self) -> io::Result<Vec<ErrorEntry>> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => Ok(s
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
