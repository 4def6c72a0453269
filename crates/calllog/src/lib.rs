//! Call logs: what softphones write, read without ever writing to them, turned into
//! [`CallEvent`]s. Sources (several at once): the native call-event log (JSON Lines,
//! `docs/call-log-format.md`), linphone's `call-history.db` (read-only), twinkle's
//! `twinkle.ch`, and CSV exports. Each source reads from a persisted [`cursor::Cursor`]; a
//! batch's cursor is saved only when the consumer acknowledges the batch ([`follow`]), so a
//! restart resumes with no gap and no repeat of anything acknowledged.

pub mod csvlog;
pub mod cursor;
pub mod follow;
pub mod fskind;
pub mod linphone;
pub mod microsip;
pub mod native;
pub mod rotation;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod twinkle;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

// What the sources produce: the event model is the domain's, re-exported for the sources.
pub use callsync_core::event::*;

/// What one poll of a source found.
#[derive(Debug, Default)]
pub struct Poll {
    pub events: Vec<CallEvent>,
    pub problems: Vec<SourceProblem>,
    /// The cursor after these events: saved when the consumer acknowledges them.
    pub next: cursor::Cursor,
    /// The file was busy (locked, being rewritten): poll again shortly.
    pub retry_soon: bool,
}

/// A call log callsync follows.
pub trait Source: Send {
    fn name(&self) -> &str;
    /// The file to watch (its directory is what gets watched).
    fn path(&self) -> &std::path::Path;
    /// Reads what is new after `cursor`. Never writes to the softphone's files.
    fn poll(&mut self, cursor: &cursor::Cursor) -> Poll;

    /// The whole file as it is now, as `callsync calls import` reads it: complete, so a last
    /// line without its newline counts too.
    fn read_whole(&mut self) -> Poll {
        self.poll(&cursor::Cursor::default())
    }

    /// Where a source with no saved position starts, saved at once: whatever is written
    /// after this moment is read, even if the log is rotated before the first read is
    /// acknowledged.
    fn baseline(&self) -> cursor::Cursor {
        cursor::Cursor::default()
    }

    /// A problem with this source's file, for the integration error log.
    fn problem(&self, line: Option<u64>, reason: String) -> SourceProblem {
        SourceProblem {
            source: self.name().to_owned(),
            file: self.path().display().to_string(),
            line,
            reason,
        }
    }
}

/// The kinds of call log callsync reads.
pub const SOURCE_KINDS: [&str; 6] = [
    "native",
    "linphone",
    "twinkle",
    "csv",
    "microsip",
    "microsip-csv",
];

/// A source of `kind` (one of [`SOURCE_KINDS`]) reading `path`; `csv` is the column mapping
/// of a CSV source (default names without one).
pub fn open_source(
    kind: &str,
    name: &str,
    path: std::path::PathBuf,
    csv: Option<csvlog::CsvMapping>,
) -> Result<Box<dyn Source>, String> {
    Ok(match kind {
        "native" => Box::new(native::NativeSource::new(name, path)),
        "linphone" => Box::new(linphone::LinphoneSource::new(name, path)),
        "twinkle" => Box::new(twinkle::TwinkleSource::new(name, path)),
        "microsip" => Box::new(microsip::MicrosipSource::new(name, path)),
        // The csv source's MicroSIP preset: MicroSIP's own export.
        "microsip-csv" => Box::new(microsip::export::ExportSource::new(name, path)),
        "csv" => Box::new(csvlog::CsvSource::new(name, path, csv.unwrap_or_default())),
        other => {
            return Err(format!(
                "unknown call log kind {other:?} (one of {})",
                SOURCE_KINDS.join(", ")
            ))
        }
    })
}

/// One configured source (`[calllog] sources = [{ kind = …, path = … }]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub kind: String,
    #[serde(default)]
    pub path: String,
    /// Defaults to the kind.
    #[serde(default)]
    pub name: String,
    /// `csv` only: which columns and values mean what.
    #[serde(default)]
    pub csv: Option<csvlog::CsvMapping>,
}

/// Unix seconds a call in a history can have started at: 2000-01-01 up to 2100-01-01.
pub(crate) const CALL_TIMES: std::ops::Range<i64> = 946_684_800..4_102_444_800;

/// A short digest of a row, for remembering rows of histories that are rewritten whole.
pub(crate) fn digest(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// linphone's history in its data folder (`~/.local/share/linphone`,
/// `%LOCALAPPDATA%\linphone`): `linphone.db` where it exists (liblinphone ≥ 5.2 writes calls
/// there and leaves `call-history.db` frozen), else `call-history.db`.
pub fn linphone_default(dir: &Path) -> PathBuf {
    let new = dir.join("linphone.db");
    let old = dir.join("call-history.db");
    if new.exists() {
        if old.exists() {
            tracing::warn!(
                "both {} and {} exist: reading linphone.db (linphone 5.2 and later stop writing call-history.db)",
                new.display(),
                old.display()
            );
        }
        new
    } else {
        old
    }
}

impl SourceSpec {
    /// The file, with `~` expanded and the softphone's default where none is given.
    pub fn resolved_path(&self) -> Option<PathBuf> {
        let base = directories::BaseDirs::new();
        let home = base.as_ref().map(|b| b.home_dir().to_owned());
        if self.path.is_empty() && self.kind == "microsip" {
            // Installed MicroSIP: %APPDATA%\MicroSIP\microsip.ini (a portable one keeps it
            // beside microsip.exe: give that path).
            return cfg!(windows)
                .then(|| base.map(|b| b.config_dir().join("MicroSIP").join("microsip.ini")))
                .flatten();
        }
        if self.path.is_empty() && self.kind == "linphone" {
            return base.map(|b| linphone_default(&b.data_local_dir().join("linphone")));
        }
        let raw = if self.path.is_empty() {
            match self.kind.as_str() {
                "twinkle" => "~/.twinkle/twinkle.ch",
                _ => return None,
            }
        } else {
            &self.path
        };
        match raw.strip_prefix("~/") {
            Some(rest) => home.map(|h| h.join(rest)),
            None => Some(PathBuf::from(raw)),
        }
    }

    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            self.kind.clone()
        } else {
            self.name.clone()
        }
    }

    /// The source this entry describes.
    pub fn open(&self) -> Result<Box<dyn Source>, String> {
        let path = self
            .resolved_path()
            .ok_or_else(|| format!("call log source {:?} has no path", self.display_name()))?;
        open_source(&self.kind, &self.display_name(), path, self.csv.clone())
    }
}
