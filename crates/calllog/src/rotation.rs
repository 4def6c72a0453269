//! A log's rotation chain, as logrotate (and most PBXs) leave it: `calls.jsonl.2`,
//! `calls.jsonl.1`, `calls.jsonl`, or dated `calls.jsonl-20261201`, each possibly compressed
//! (`.gz`). The follower reads the chain oldest first, so that calls written before several
//! rotations made while callsync was not running are all read, in order.

use std::io::Read;
use std::path::{Path, PathBuf};

use callsync_fs::FileId;

/// Where a file stands in its log's chain, from its name alone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// `name-20261201` (logrotate `dateext`): later dates are newer.
    Dated(String),
    /// `name.3`: higher numbers are older (stored negated so that the order is oldest first).
    Numbered(i64),
    /// The log itself: the newest.
    Current,
}

/// The rank of `file` in the chain of the log named `log`, and whether it is gzip-compressed;
/// `None` for a file that belongs to no such chain.
pub fn rank(log: &str, file: &str) -> Option<(Rank, bool)> {
    if file == log {
        return Some((Rank::Current, false));
    }
    let (stem, gz) = match file.strip_suffix(".gz") {
        Some(s) => (s, true),
        None => (file, false),
    };
    let rest = stem.strip_prefix(log)?;
    if let Some(n) = rest.strip_prefix('.') {
        if !n.is_empty() && n.len() <= 6 && n.bytes().all(|b| b.is_ascii_digit()) {
            return Some((Rank::Numbered(-n.parse::<i64>().ok()?), gz));
        }
    }
    let date = rest.strip_prefix('-').or_else(|| rest.strip_prefix('.'))?;
    let digits = date.bytes().filter(u8::is_ascii_digit).count();
    let plausible = digits >= 6
        && date
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'_')
        && date.as_bytes().first().is_some_and(u8::is_ascii_digit);
    plausible.then(|| (Rank::Dated(date.to_owned()), gz))
}

/// One file of a chain.
#[derive(Clone, Debug)]
pub struct Member {
    pub path: PathBuf,
    pub rank: Rank,
    pub gz: bool,
    pub id: FileId,
    pub len: u64,
    pub modified_ns: i64,
}

impl Member {
    pub(crate) fn is_current(&self) -> bool {
        self.rank == Rank::Current
    }

    /// The whole content, decompressed (rotated files are complete: they are read whole).
    pub fn content(&self) -> std::io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        std::fs::File::open(&self.path)?.read_to_end(&mut raw)?;
        if !self.gz {
            return Ok(raw);
        }
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    }
}

/// The chain of `log`, oldest first, the log itself (if it exists) last. Dated files come
/// before numbered ones (logrotate uses one scheme at a time; a mix means the scheme changed,
/// and dated files then are the older); within a scheme, the name's order.
pub fn chain(log: &Path) -> Vec<Member> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return Vec::new();
    };
    let mut out: Vec<Member> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name();
            let (rank, gz) = rank(name, file.to_str()?)?;
            let path = e.path();
            let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
            let modified_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            Some(Member {
                id: FileId::of(&path, &meta),
                path,
                rank,
                gz,
                len: meta.len(),
                modified_ns,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.rank, a.modified_ns).cmp(&(&b.rank, b.modified_ns)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_a_chain() {
        let log = "calls.jsonl";
        for (file, want) in [
            ("calls.jsonl", Some((Rank::Current, false))),
            ("calls.jsonl.1", Some((Rank::Numbered(-1), false))),
            ("calls.jsonl.12.gz", Some((Rank::Numbered(-12), true))),
            (
                "calls.jsonl-20261202",
                Some((Rank::Dated("20261202".into()), false)),
            ),
            (
                "calls.jsonl-20261202.gz",
                Some((Rank::Dated("20261202".into()), true)),
            ),
            (
                "calls.jsonl-2026-12-02",
                Some((Rank::Dated("2026-12-02".into()), false)),
            ),
            (
                "calls.jsonl-20261202-1796000000",
                Some((Rank::Dated("20261202-1796000000".into()), false)),
            ),
            ("calls.jsonl.bak", None),
            ("calls.jsonl.1.tmp", None),
            ("calls.jsonl-old", None),
            ("other.jsonl.1", None),
            ("calls.jsonlx", None),
            ("calls.jsonl.", None),
        ] {
            assert_eq!(rank(log, file), want, "{file}");
        }
    }

    #[test]
    fn oldest_first() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "calls.jsonl",
            "calls.jsonl.1",
            "calls.jsonl.2.gz",
            "calls.jsonl.10",
            "calls.jsonl-20261130",
            "calls.jsonl-20261201.gz",
            "unrelated.txt",
        ] {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        let names: Vec<String> = chain(&d.path().join("calls.jsonl"))
            .iter()
            .map(|m| m.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "calls.jsonl-20261130",
                "calls.jsonl-20261201.gz",
                "calls.jsonl.10",
                "calls.jsonl.2.gz",
                "calls.jsonl.1",
                "calls.jsonl"
            ]
        );
    }
}
