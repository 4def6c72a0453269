//! `callsync cache import`: loads records from JSON Lines shaped as the REST API returns them
//! (one record with `attributes` per line, or one query-result page `{"records": [...]}` per
//! line). A bad line is reported with its number and skipped; the rest of the file still loads.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;

use crate::cache::{Cache, CacheError, Change};
use callsync_core::lookup::LookupRules;
use callsync_core::phone::Normalizer;
use callsync_core::record::from_sobject;

/// Lines parsed and written together: big enough for sled's batching, small enough that
/// progress moves and memory stays flat.
const BATCH_LINES: usize = 2_000;
/// Records between flushes.
const FLUSH_EVERY: usize = 50_000;
/// Rejections kept with their reasons (the rest are only counted).
const MAX_KEPT_REJECTIONS: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub line: usize,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    pub lines: usize,
    pub imported: usize,
    /// Every rejected line's number and reason, up to a thousand.
    pub rejected: Vec<Rejected>,
    pub rejected_total: usize,
    /// Phone values that are no number at all (kept as typed, not indexed).
    pub unusable_numbers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

fn parse_line(
    line_no: usize,
    bytes: &[u8],
    normalizer: &Normalizer,
    rules: &LookupRules,
) -> Result<Vec<Change>, Rejected> {
    let reject = |reason: String| Rejected {
        line: line_no,
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| reject(format!("not UTF-8 text: {e}")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| reject(format!("malformed JSON: {e}")))?;
    let records: Vec<&Value> = match value.get("records").and_then(Value::as_array) {
        Some(page) => page.iter().collect(),
        None => vec![&value],
    };
    records
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            from_sobject(v, None, normalizer, rules)
                .map(Change::Upsert)
                .map_err(|e| {
                    if value.get("records").is_some() {
                        reject(format!("record {}: {e}", i + 1))
                    } else {
                        reject(e.to_string())
                    }
                })
        })
        .collect()
}

/// Imports `path` into `cache`; `progress` gets the bytes read so far.
pub fn import_jsonl(
    path: &Path,
    cache: &Cache,
    normalizer: &Normalizer,
    rules: &LookupRules,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let read_err = |source| ImportError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    import_reader(file, cache, normalizer, rules, &mut progress).map_err(|e| match e {
        ImportError::Read { source, .. } => read_err(source),
        other => other,
    })
}

/// A batch of lines, parsed.
struct Parsed {
    changes: Vec<Change>,
    rejected: Vec<Rejected>,
    /// Bytes read up to the end of this batch.
    read: u64,
}

/// As [`import_jsonl`], from any reader. A reader thread parses and normalizes the next batch
/// (on all cores) while this thread writes the current one.
pub(crate) fn import_reader(
    reader: impl Read + Send,
    cache: &Cache,
    normalizer: &Normalizer,
    rules: &LookupRules,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    // Into an empty cache, load records first and build the index once, in order.
    let bulk = cache.stats()?.records.values().all(|n| *n == 0);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Parsed>(2);
    let lines = std::thread::scope(|s| -> Result<usize, ImportError> {
        let producer = s.spawn(move || read_batches(reader, normalizer, rules, tx));
        for parsed in rx {
            for c in &parsed.changes {
                if let Change::Upsert(r) = c {
                    report.unusable_numbers += r.phones.iter().filter(|p| p.key.is_none()).count();
                }
            }
            for r in parsed.rejected {
                report.rejected_total += 1;
                if report.rejected.len() < MAX_KEPT_REJECTIONS {
                    report.rejected.push(r);
                }
            }
            if bulk {
                cache.apply_bulk(&parsed.changes, &[])?;
            } else {
                cache.apply(&parsed.changes, &[])?;
            }
            report.imported += parsed.changes.len();

            if report.imported / FLUSH_EVERY
                != (report.imported - parsed.changes.len()) / FLUSH_EVERY
            {
                cache.flush()?;
            }
            progress(parsed.read);
        }
        producer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the reader thread panicked")))
            .map_err(|source| ImportError::Read {
                path: PathBuf::new(),
                source,
            })
    })?;
    if bulk {
        cache.finish_bulk()?;
    } else {
        // Past `COMPACT_AT` changes the writes started a background rebuild: let it finish
        // rather than be cancelled by a process about to exit (or build a second one here).
        cache.wait_for_index();
        cache.flush()?;
    }
    report.lines = lines;
    Ok(report)
}

/// Reads and parses batches until the end of input (or until the writer stops listening).
fn read_batches(
    reader: impl Read,
    normalizer: &Normalizer,
    rules: &LookupRules,
    tx: std::sync::mpsc::SyncSender<Parsed>,
) -> std::io::Result<usize> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut read = 0u64;
    let mut line_no = 0usize;
    loop {
        let mut batch: Vec<(usize, Vec<u8>)> = Vec::with_capacity(BATCH_LINES);
        let mut eof = false;
        while batch.len() < BATCH_LINES {
            let mut buf = Vec::new();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            read += n as u64;
            let trimmed = buf.trim_ascii();
            if !trimmed.is_empty() {
                batch.push((line_no, trimmed.to_vec()));
            }
        }
        let results: Vec<Result<Vec<Change>, Rejected>> = batch
            .par_iter()
            .map(|(no, bytes)| parse_line(*no, bytes, normalizer, rules))
            .collect();
        let mut parsed = Parsed {
            changes: Vec::with_capacity(results.len()),
            rejected: Vec::new(),
            read,
        };
        for r in results {
            match r {
                Ok(c) => parsed.changes.extend(c),
                Err(e) => parsed.rejected.push(e),
            }
        }
        if tx.send(parsed).is_err() || eof {
            return Ok(line_no);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheOptions;
    use callsync_core::record::ObjectKind;

    #[test]
    fn bad_lines_are_reported_and_the_rest_loads() {
        let d = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(&d.path().join("c"), &CacheOptions::default()).unwrap();
        let input = concat!(
            r#"{"attributes":{"type":"Contact"},"Id":"003000000000001AAA","Name":"A","Phone":"03-1234-5678"}"#,
            "\n",
            "\n",
            "{not json\n",
            r#"{"attributes":{"type":"Case"},"Id":"500000000000001AAA"}"#,
            "\n",
            r#"{"totalSize":2,"done":true,"records":[{"attributes":{"type":"Lead"},"Id":"00Q000000000001AAA","Name":"L","Phone":"abc"},{"attributes":{"type":"Lead"},"Id":"00Q000000000002AAA","Name":"M","Phone":"0312345678"}]}"#,
            "\n",
            "@@BAD@@\n",
            r#"{"attributes":{"type":"Account"},"Id":"001000000000001AAA","Name":"Acme"}"#,
        );
        // Line 6 is not UTF-8.
        let input = input.replace("@@BAD@@", "\u{1}").into_bytes();
        let input: Vec<u8> = input
            .into_iter()
            .map(|b| if b == 1 { 0xff } else { b })
            .collect();
        let n = Normalizer::from_codes("JP", &[]).unwrap();
        let mut seen = 0;
        let r = import_reader(
            input.as_slice(),
            &cache,
            &n,
            &LookupRules::default(),
            &mut |b| seen = b,
        )
        .unwrap();
        assert_eq!(r.lines, 7);
        assert_eq!(r.imported, 4);
        assert_eq!(seen, input.len() as u64);
        assert_eq!(r.unusable_numbers, 1);
        let lines: Vec<usize> = r.rejected.iter().map(|x| x.line).collect();
        assert_eq!(lines, [3, 4, 6], "{:?}", r.rejected);
        assert!(r.rejected[0].reason.starts_with("malformed JSON"));
        assert!(r.rejected[1].reason.contains("\"Case\" is not cached"));
        assert!(r.rejected[2].reason.contains("not UTF-8"));
        assert_eq!(cache.count(ObjectKind::Lead).unwrap(), 2);
    }
}
