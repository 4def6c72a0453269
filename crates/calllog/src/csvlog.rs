//! CSV call logs (softphones and PBXs that export CSV), with a configurable mapping from columns
//! and values to call events. Appended rows are read like any appended log (identity, offset,
//! fingerprint); the header row names the columns. Rows are single lines (quoted newlines are
//! not supported).

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::native::{AppendedLog, LineFormat};
use super::{history_events, CallEvent, CallInfo, Direction, Origin, Outcome};

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Which column holds what, and which values mean what (compared case-insensitively).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvMapping {
    /// Column with a unique call id; empty: derived from start time, direction and number.
    pub call_id: String,
    pub direction: String,
    pub remote: String,
    pub start: String,
    /// Column with the answer time (empty or 0: not answered).
    pub answered: String,
    pub end: String,
    /// Column with the talk time in seconds (used when there is no end column).
    pub duration: String,
    /// Column with the result text.
    pub outcome: String,
    pub agent: String,
    pub outbound_values: Vec<String>,
    pub internal_values: Vec<String>,
    pub answered_values: Vec<String>,
    pub busy_values: Vec<String>,
    pub rejected_values: Vec<String>,
    pub voicemail_values: Vec<String>,
    /// `rfc3339`, `epoch`, or a strftime pattern such as `%Y/%m/%d %H:%M:%S`.
    pub time_format: String,
    /// Offset for times written without one, e.g. `+09:00`.
    pub timezone: String,
    pub delimiter: String,
}

impl Default for CsvMapping {
    fn default() -> Self {
        CsvMapping {
            call_id: "call_id".into(),
            direction: "direction".into(),
            remote: "number".into(),
            start: "start".into(),
            answered: "answered".into(),
            end: "end".into(),
            duration: "duration".into(),
            outcome: "result".into(),
            agent: String::new(),
            outbound_values: v(&["out", "outbound", "outgoing", "発信"]),
            internal_values: v(&["internal", "内線"]),
            answered_values: v(&["answered", "ok", "success", "connected", "応答"]),
            busy_values: v(&["busy", "話中"]),
            rejected_values: v(&["rejected", "declined", "拒否"]),
            voicemail_values: v(&["voicemail", "留守電"]),
            time_format: "rfc3339".into(),
            timezone: "+00:00".into(),
            delimiter: ",".into(),
        }
    }
}

pub struct Csv {
    mapping: CsvMapping,
    columns: Vec<String>,
}

pub type CsvSource = AppendedLog<Csv>;

impl Csv {
    pub fn new(mapping: CsvMapping) -> Csv {
        Csv {
            mapping,
            columns: Vec::new(),
        }
    }
}

impl CsvSource {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>, mapping: CsvMapping) -> Self {
        AppendedLog::with_format(name, path, Csv::new(mapping))
    }
}

pub(crate) fn split(line: &str, delimiter: u8) -> Result<Vec<String>, String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(line.as_bytes());
    match r.records().next() {
        Some(Ok(rec)) => Ok(rec.iter().map(|s| s.trim().to_owned()).collect()),
        Some(Err(e)) => Err(format!("bad CSV: {e}")),
        None => Ok(Vec::new()),
    }
}

impl Csv {
    fn delimiter(&self) -> u8 {
        self.mapping.delimiter.bytes().next().unwrap_or(b',')
    }

    fn col<'a>(&self, row: &'a [String], name: &str) -> Option<&'a str> {
        if name.is_empty() {
            return None;
        }
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        row.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn time(&self, s: &str) -> Result<DateTime<FixedOffset>, String> {
        let tz: FixedOffset = self
            .mapping
            .timezone
            .parse()
            .map_err(|_| format!("bad timezone {:?} (like +09:00)", self.mapping.timezone))?;
        let t = match self.mapping.time_format.as_str() {
            "rfc3339" => DateTime::parse_from_rfc3339(s)
                .or_else(|_| {
                    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
                        .map(|n| tz.from_local_datetime(&n).single().unwrap_or_default())
                })
                .map_err(|e| format!("bad time {s:?}: {e}")),
            "epoch" => s
                .parse::<i64>()
                .ok()
                .and_then(|n| Utc.timestamp_opt(n, 0).single())
                .map(|d| d.fixed_offset())
                .ok_or_else(|| format!("bad epoch time {s:?}")),
            fmt => NaiveDateTime::parse_from_str(s, fmt)
                .map_err(|e| format!("bad time {s:?} for {fmt:?}: {e}"))
                .and_then(|n| {
                    tz.from_local_datetime(&n)
                        .single()
                        .ok_or_else(|| format!("ambiguous time {s:?}"))
                }),
        }?;
        super::check_time("time", &t)?;
        Ok(t)
    }
}

fn is_one_of(value: &str, list: &[String]) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(value))
}

impl LineFormat for Csv {
    fn prepare(&mut self, first: &str) -> Result<(), String> {
        self.columns = split(
            first.trim_start_matches('\u{feff}').trim_end(),
            self.delimiter(),
        )?;
        let m = &self.mapping;
        for (what, name) in [
            ("direction", &m.direction),
            ("remote", &m.remote),
            ("start", &m.start),
        ] {
            if !self.columns.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                return Err(format!(
                    "the header has no {what} column {name:?} (columns: {})",
                    self.columns.join(", ")
                ));
            }
        }
        Ok(())
    }

    fn has_header(&self) -> bool {
        true
    }

    fn parse(&self, source: &str, line: &str) -> Result<Vec<CallEvent>, String> {
        let row = split(line, self.delimiter())?;
        let m = &self.mapping;
        let dir_text = self.col(&row, &m.direction).unwrap_or_default();
        let direction = if is_one_of(dir_text, &m.internal_values) {
            Direction::Internal
        } else if is_one_of(dir_text, &m.outbound_values) {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let remote = self.col(&row, &m.remote).ok_or("no number")?.to_owned();
        let start = self.time(self.col(&row, &m.start).ok_or("no start time")?)?;
        let answered = match self.col(&row, &m.answered) {
            Some(a) if a != "0" => Some(self.time(a)?),
            _ => None,
        };
        let duration: Option<i64> = match self.col(&row, &m.duration) {
            None => None,
            Some(d) => match d.parse::<u64>() {
                Ok(n) if n <= super::MAX_DURATION_S => Some(n as i64),
                Ok(n) => {
                    return Err(format!(
                        "talk time {n} is out of range (0 to {} seconds)",
                        super::MAX_DURATION_S
                    ))
                }
                Err(_) => return Err(format!("talk time {d:?} is no number of seconds")),
            },
        };
        let end = match self.col(&row, &m.end) {
            Some(e) => self.time(e)?,
            None => answered.unwrap_or(start) + chrono::Duration::seconds(duration.unwrap_or(0)),
        };
        let result = self.col(&row, &m.outcome).unwrap_or_default();
        let outcome = if is_one_of(result, &m.voicemail_values) {
            Outcome::Voicemail
        } else if answered.is_some() || is_one_of(result, &m.answered_values) {
            Outcome::Answered
        } else if is_one_of(result, &m.busy_values) {
            Outcome::Busy
        } else if is_one_of(result, &m.rejected_values) {
            Outcome::Rejected
        } else {
            Outcome::NoAnswer
        };
        if end < start || answered.is_some_and(|a| a < start || a > end) {
            return Err("the times are out of order (the call ends before it starts)".into());
        }
        // Answered without an answer-time column: the talk time ends the call.
        let answered = answered.or_else(|| {
            (outcome == Outcome::Answered)
                .then(|| end - chrono::Duration::seconds(duration.unwrap_or(0)))
        });
        let call_id = match self.col(&row, &m.call_id) {
            Some(id) => id.to_owned(),
            None => {
                let d =
                    Sha256::digest(format!("{}|{dir_text}|{remote}", start.timestamp()).as_bytes());
                format!(
                    "csv-{}",
                    d.iter()
                        .take(8)
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                )
            }
        };
        let info = CallInfo {
            direction,
            remote,
            local: None,
            agent: self.col(&row, &m.agent).map(str::to_owned),
            origin: Origin::Manual,
            record_id: None,
        };
        Ok(history_events(
            source, call_id, info, start, answered, end, outcome,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::Cursor;
    use crate::Source;
    use callsync_core::event::EventKind;

    #[test]
    fn a_japanese_pbx_export() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("calls.csv");
        std::fs::write(
            &p,
            "\u{feff}通話ID,種別,相手番号,開始,応答,終了,結果\n\
             A1,発信,03-1234-5678,2026/11/21 10:00:00,2026/11/21 10:00:05,2026/11/21 10:03:05,応答\n\
             A2,着信,090-1111-2222,2026/11/21 10:10:00,,2026/11/21 10:10:20,不在\n\
             A3,発信,06-6123-4567,2026/11/21 10:20:00,,2026/11/21 10:20:02,話中\n\
             A4,着信,bad,not a time,,,\n",
        )
        .unwrap();
        let mapping = CsvMapping {
            call_id: "通話ID".into(),
            direction: "種別".into(),
            remote: "相手番号".into(),
            start: "開始".into(),
            answered: "応答".into(),
            end: "終了".into(),
            outcome: "結果".into(),
            time_format: "%Y/%m/%d %H:%M:%S".into(),
            timezone: "+09:00".into(),
            ..CsvMapping::default()
        };
        let mut src = CsvSource::new("pbx", &p, mapping);
        let poll = src.poll(&Cursor::default());
        let ended: Vec<(String, Direction, Outcome, Option<u64>)> = poll
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Ended {
                    outcome,
                    duration_s,
                } => Some((
                    e.call_id.clone(),
                    e.info.as_ref().unwrap().direction,
                    *outcome,
                    *duration_s,
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            ended,
            vec![
                (
                    "A1".into(),
                    Direction::Outbound,
                    Outcome::Answered,
                    Some(180)
                ),
                ("A2".into(), Direction::Inbound, Outcome::NoAnswer, Some(0)),
                ("A3".into(), Direction::Outbound, Outcome::Busy, Some(0)),
            ]
        );
        assert_eq!(poll.problems.len(), 1);
        assert_eq!(poll.problems[0].line, Some(5));
        assert_eq!(poll.events[0].at.to_rfc3339(), "2026-11-21T10:00:00+09:00");
        // A new row appended later comes alone.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        use std::io::Write as _;
        writeln!(
            f,
            "A5,着信,03-9999-0000,2026/11/21 11:00:00,2026/11/21 11:00:03,2026/11/21 11:01:03,応答"
        )
        .unwrap();
        let next = src.poll(&poll.next);
        assert_eq!(next.events.iter().filter(|e| e.call_id == "A5").count(), 3);
        assert!(next.events.iter().all(|e| e.call_id == "A5"));
    }

    #[test]
    fn a_header_without_the_needed_columns_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("calls.csv");
        std::fs::write(&p, "when,who\n1,2\n").unwrap();
        let mut src = CsvSource::new("pbx", &p, CsvMapping::default());
        let poll = src.poll(&Cursor::default());
        assert!(poll.events.is_empty());
        assert!(
            poll.problems[0].reason.contains("no direction column"),
            "{:?}",
            poll.problems
        );
    }

    /// Values that would wrap or that Salesforce refuses are refused with their line number.
    #[test]
    fn impossible_values_are_refused_with_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("calls.csv");
        std::fs::write(
            &p,
            "call_id,direction,number,start,answered,end,duration,result
             a,in,031234,2026-11-21T10:00:00Z,,,999999999999,answered
             b,in,031234,2026-11-21T10:00:00Z,,,-5,answered
             c,in,031234,2016-12-31T23:59:60Z,,,5,answered
             d,in,031234,2026-11-21T10:00:00Z,,2026-11-21T09:00:00Z,,answered
             e,in,031234,2026-11-21T10:00:00Z,,,5,answered
",
        )
        .unwrap();
        let poll = CsvSource::new("pbx", &p, CsvMapping::default()).poll(&Cursor::default());
        let got: Vec<(Option<u64>, &str)> = poll
            .problems
            .iter()
            .map(|p| (p.line, p.reason.as_str()))
            .collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0].0, Some(2));
        assert!(
            got[0].1.contains("out of range") && got[1].1.contains("no number"),
            "{got:?}"
        );
        assert!(got[2].1.contains("leap second") && got[3].1.contains("out of order"));
        assert!(poll.events.iter().all(|e| e.call_id == "e"));
    }
}
