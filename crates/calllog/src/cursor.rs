//! Where each call-log source stopped reading, persisted so that a restart resumes exactly.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many recent event keys / row digests a cursor remembers (a safety net against
/// re-emitting after truncation, replacement or a rewritten history).
const MEMORY: usize = 5_000;

pub use callsync_fs::FileId;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Appended files: the file being read…
    #[serde(default)]
    pub file: Option<FileId>,
    /// …the byte offset of the next unread line…
    #[serde(default)]
    pub offset: u64,
    /// …and its line number (for error messages)…
    #[serde(default)]
    pub line: u64,
    /// …and a digest of the bytes just before the offset: a file truncated and grown back
    /// past the offset between two reads looks unchanged by size alone.
    #[serde(default)]
    pub tail: Option<String>,
    /// Appended files: the modification time of the file last read (ns): if that file is gone
    /// (deleted, replaced), only newer ones are read.
    #[serde(default)]
    pub mtime_ns: Option<i64>,
    /// SQLite histories: the last row id read.
    #[serde(default)]
    pub last_row: i64,
    /// Recently emitted event keys / row digests, oldest first.
    #[serde(default)]
    pub seen: VecDeque<String>,
}

impl Cursor {
    pub(crate) fn has_seen(&self, key: &str) -> bool {
        self.seen.iter().any(|k| k == key)
    }

    pub(crate) fn remember(&mut self, key: String) {
        self.seen.push_back(key);
        while self.seen.len() > MEMORY {
            self.seen.pop_front();
        }
    }
}

/// All sources' cursors in one small JSON file, replaced atomically.
pub struct CursorStore {
    path: PathBuf,
}

impl CursorStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CursorStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> io::Result<BTreeMap<String, Cursor>> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, cursors: &BTreeMap<String, Cursor>) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            callsync_fs::create_private_dir(dir)?;
        }
        let bytes = serde_json::to_vec(cursors).map_err(io::Error::other)?;
        callsync_fs::write_private_atomic(&self.path, &bytes)
    }
}
