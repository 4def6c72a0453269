//! MicroSIP's CSV export (the history's "Export" menu; `Calls::OnMenuExport` in MicroSIP's
//! source, 3.20.5): UTF-8, a header `Type,Name,Number,Time,Duration,Info`, one row per call,
//! `Type` `out` / `in` / `miss` (3.22 adds `else`, answered elsewhere), `Time` the Unix second
//! the call began, `Duration` connected seconds, `Info` the end reason in the UI's language.
//!
//! A preset of the CSV source (`kind = "microsip-csv"`): the file is read as any CSV log
//! (appended rows, rotation, a new export replacing the old), and each row means what the same
//! row of `microsip.ini` means ([`super::Row`]), with the same call id, so a call read from both
//! the INI file and an export by sources of one name makes one Task.

use std::path::PathBuf;

use super::{call_id, row_events, Row};
use crate::csvlog::split;
use crate::native::{AppendedLog, LineFormat};
use crate::CallEvent;

/// The columns an export has, as MicroSIP writes them (never translated).
const COLUMNS: [&str; 6] = ["Type", "Name", "Number", "Time", "Duration", "Info"];

#[derive(Default)]
pub struct ExportCsv {
    /// Where each of [`COLUMNS`] is in this file's header.
    at: [Option<usize>; 6],
}

pub type ExportSource = AppendedLog<ExportCsv>;

impl ExportSource {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        AppendedLog::with_format(name, path, ExportCsv::default())
    }
}

/// `Type` → the INI file's `type`.
fn kind(text: &str) -> Option<u8> {
    match text.to_ascii_lowercase().as_str() {
        "out" => Some(0),
        "in" => Some(1),
        "miss" => Some(2),
        "else" => Some(3),
        _ => None,
    }
}

impl ExportCsv {
    fn field<'a>(&self, row: &'a [String], col: usize) -> &'a str {
        self.at[col]
            .and_then(|i| row.get(i))
            .map(String::as_str)
            .unwrap_or_default()
    }
}

impl LineFormat for ExportCsv {
    fn prepare(&mut self, header: &str) -> Result<(), String> {
        let names = split(header.trim_start_matches('\u{feff}').trim_end(), b',')?;
        for (i, want) in COLUMNS.iter().enumerate() {
            self.at[i] = names.iter().position(|n| n.eq_ignore_ascii_case(want));
        }
        let missing: Vec<&str> = COLUMNS
            .iter()
            .zip(self.at)
            .filter(|(name, at)| at.is_none() && **name != "Name")
            .map(|(name, _)| *name)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "not a MicroSIP export: the header lacks {} (it has {}; MicroSIP writes {})",
                missing.join(", "),
                names.join(", "),
                COLUMNS.join(",")
            ))
        }
    }

    fn has_header(&self) -> bool {
        true
    }

    fn parse(&self, source: &str, line: &str) -> Result<Vec<CallEvent>, String> {
        let row = split(line, b',')?;
        let t = self.field(&row, 0);
        let kind = kind(t).ok_or_else(|| format!("Type {t:?} is not out, in, miss or else"))?;
        // The INI file's row syntax checks the rest (number, time, duration ranges).
        let r = Row::parse(&format!(
            "{};{};{kind};{};{};{}",
            self.field(&row, 2),
            self.field(&row, 1).replace(';', ","),
            self.field(&row, 3),
            self.field(&row, 4),
            self.field(&row, 5).replace(';', ","),
        ))?;
        if r.number.is_empty() {
            return Err("no Number".into());
        }
        if !r.finished() {
            return Err("no Info: the call was in progress when exported".into());
        }
        Ok(row_events(source, call_id(source, &r), &r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::Cursor;
    use crate::{Direction, Outcome, Source};
    use callsync_core::event::EventKind;

    /// An export as MicroSIP writes it (written from its source: MicroSIP does not run here).
    const EXPORT: &str = "\u{feff}Type,Name,Number,Time,Duration,Info\r\n\
        in,山田 太郎,0311110001,1764633600,42,通話終了\r\n\
        out,,0311110002,1764633700,0,Canceled\r\n\
        miss,\"Sato, Hanako\",0311110003,1764633800,0,Missed Call\r\n\
        out,,0311110004,1764633900,0,Declined\r\n\
        else,,0311110005,1764634000,0,Answered Elsewhere\r\n\
        out,,0311110006,1764634100,0,\r\n\
        call,,0311110007,1764634200,0,Call Ended\r\n\
        out,,0311110008,yesterday,0,Call Ended\r\n";

    fn ended(events: &[CallEvent]) -> Vec<(String, Direction, Outcome, Option<u64>)> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Ended {
                    outcome,
                    duration_s,
                    ..
                } => e
                    .info
                    .as_ref()
                    .map(|i| (i.remote.clone(), i.direction, *outcome, *duration_s)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_export_becomes_calls_and_bad_rows_say_why() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("Calls.csv");
        std::fs::write(&p, EXPORT).unwrap();
        let mut src = ExportSource::new("microsip", &p);
        let poll = src.poll(&Cursor::default());
        assert_eq!(
            ended(&poll.events),
            vec![
                (
                    "0311110001".into(),
                    Direction::Inbound,
                    Outcome::Answered,
                    Some(42)
                ),
                (
                    "0311110002".into(),
                    Direction::Outbound,
                    Outcome::NoAnswer,
                    Some(0)
                ),
                (
                    "0311110003".into(),
                    Direction::Inbound,
                    Outcome::NoAnswer,
                    Some(0)
                ),
                (
                    "0311110004".into(),
                    Direction::Outbound,
                    Outcome::Rejected,
                    Some(0)
                ),
                (
                    "0311110005".into(),
                    Direction::Inbound,
                    Outcome::Answered,
                    Some(0)
                ),
            ]
        );
        let why: Vec<(Option<u64>, &str)> = poll
            .problems
            .iter()
            .map(|p| (p.line, p.reason.as_str()))
            .collect();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].1.contains("in progress"), "{why:?}");
        assert!(why[1].1.contains("\"call\" is not out"), "{why:?}");
        assert!(why[2].1.contains("not a Unix time"), "{why:?}");
        assert_eq!(why[0].0, Some(7));
        // Read again from where it stopped: nothing more.
        assert!(src.poll(&poll.next).events.is_empty());
    }

    /// The same call read from microsip.ini and from an export has one call id: one Task.
    #[test]
    fn the_ini_and_the_export_agree_on_call_ids() {
        let d = tempfile::tempdir().unwrap();
        let ini = d.path().join("microsip.ini");
        std::fs::write(
            &ini,
            "[Calls]\r\n0=0311110001;山田 太郎;1;1764633600;42;Call Ended\r\n",
        )
        .unwrap();
        let from_ini = super::super::MicrosipSource::new("microsip", &ini)
            .read_text(&std::fs::read_to_string(&ini).unwrap(), Default::default());
        let csv = d.path().join("Calls.csv");
        std::fs::write(&csv, EXPORT).unwrap();
        let from_csv = ExportSource::new("microsip", &csv).poll(&Cursor::default());
        assert_eq!(from_ini.events[0].call_id, from_csv.events[0].call_id);
    }

    #[test]
    fn a_file_that_is_no_export_says_what_it_lacks() {
        let mut f = ExportCsv::default();
        let e = f.prepare("Name,Number,When\r\n").unwrap_err();
        assert!(e.contains("lacks Type, Time, Duration, Info"), "{e}");
        assert!(f.prepare("type,number,time,duration,info").is_ok());
    }
}
