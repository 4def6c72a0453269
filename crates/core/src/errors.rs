//! The integration error log's entries: every input callsync could not use, and why. A flood
//! of one kind (every line of a file in the wrong format) is summarised. Writing them is the
//! store's (`callsync-store`'s `ErrorLog`).

use serde::{Deserialize, Serialize};

use crate::event::SourceProblem;

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

/// Entries kept per kind of problem in one batch; the rest are counted in one more entry.
pub(crate) const SAME_KIND_KEPT: usize = 20;

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
}
