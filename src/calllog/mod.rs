//! Call logs: what softphones write, turned into typed [`CallEvent`]s.
//!
//! Sources (several at once): the native call-event log (JSON Lines, `docs/call-log-format.md`),
//! linphone's `call-history.db` (read-only), twinkle's `twinkle.ch`, and CSV exports. Each
//! source reads from a persisted [`cursor::Cursor`]; a batch's cursor is saved only when the
//! consumer acknowledges the batch, so a restart resumes with no gap and no repeat of anything
//! acknowledged (event keys dedupe the rest).

pub mod csvlog;
pub mod cursor;
pub mod fskind;
pub mod linphone;
pub mod native;
pub mod rotation;
pub mod twinkle;
pub mod watch;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outbound,
    Inbound,
    Internal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    #[default]
    Manual,
    ClickToCall,
    Predictive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    NoAnswer,
    Busy,
    Rejected,
    Voicemail,
    /// Predictive dialer: the callee picked up but no agent was free.
    NoAgent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Internal,
    External,
    AutoForward,
}

/// What the first event of a call says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    pub direction: Direction,
    /// The other party's number as shown.
    pub remote: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// The agent's identity in the phone system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default)]
    pub origin: Origin,
    /// The Salesforce record a click-to-call started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Dialing,
    Ringing,
    Answered,
    Ended {
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u64>,
    },
    Transferred {
        kind: TransferKind,
        to: String,
    },
    Memo {
        #[serde(default)]
        items: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        #[serde(default)]
        edited: bool,
    },
    Speech {
        #[serde(default)]
        transcript: String,
        #[serde(default)]
        summary: String,
    },
    /// A meeting (video call) that ended, for the meeting history integration: one line,
    /// `at` is its start. Becomes a Salesforce Event, not a Task.
    Meeting(Box<MeetingInfo>),
}

/// What a `meeting` line says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingInfo {
    #[serde(default)]
    pub title: String,
    pub end: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The host's identity in the phone system (mapped to a Salesforce user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A participant's number: the Event goes on its best match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The Salesforce record the meeting was booked from (wins over `remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Dialing => "dialing",
            EventKind::Ringing => "ringing",
            EventKind::Answered => "answered",
            EventKind::Ended { .. } => "ended",
            EventKind::Transferred { .. } => "transferred",
            EventKind::Memo { .. } => "memo",
            EventKind::Speech { .. } => "speech",
            EventKind::Meeting(_) => "meeting",
        }
    }
}

/// One thing that happened to one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    /// Which configured source it came from.
    pub source: String,
    /// Unique per call (becomes the Task's `CallObject`).
    pub call_id: String,
    pub at: DateTime<FixedOffset>,
    #[serde(flatten)]
    pub kind: EventKind,
    /// Present on the first event of a call (and on every event of history-style sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<CallInfo>,
}

impl CallEvent {
    /// Identity for deduplication: a call's event of one kind at one instant.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.call_id,
            self.kind.name(),
            self.at.timestamp_millis()
        )
    }
}

/// The seed's call types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    Outgoing,
    Incoming,
    TransferInternal,
    TransferExternal,
    TransferAutoForward,
    Voicemail,
    OutgoingMissed,
    IncomingMissed,
    /// Classified, never written to Salesforce.
    Internal,
}

impl CallType {
    /// Whether the seed integrates this call type with Salesforce (internal calls: no).
    pub fn is_integrated(self) -> bool {
        self != CallType::Internal
    }
}

/// Classifies a finished call by the seed's rules. A transfer wins over the outcome; for the
/// predictive dialer, a callee who picked up with no agent free is an outgoing missed call.
pub fn classify(
    direction: Direction,
    outcome: Outcome,
    transfer: Option<TransferKind>,
) -> CallType {
    if direction == Direction::Internal {
        return CallType::Internal;
    }
    if let Some(t) = transfer {
        return match t {
            TransferKind::Internal => CallType::TransferInternal,
            TransferKind::External => CallType::TransferExternal,
            TransferKind::AutoForward => CallType::TransferAutoForward,
        };
    }
    match (direction, outcome) {
        (_, Outcome::Voicemail) => CallType::Voicemail,
        (Direction::Outbound, Outcome::Answered) => CallType::Outgoing,
        (Direction::Outbound, _) => CallType::OutgoingMissed,
        (_, Outcome::Answered) => CallType::Incoming,
        _ => CallType::IncomingMissed,
    }
}

/// The user part of a SIP URI (`"Bob" <sip:0312345678@pbx;user=phone>` → `0312345678`), or
/// the input when it is no URI.
pub fn sip_user(s: &str) -> String {
    let s = s.trim();
    let inner = match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let rest = inner
        .strip_prefix("sips:")
        .or_else(|| inner.strip_prefix("sip:"))
        .or_else(|| inner.strip_prefix("tel:"))
        .unwrap_or(inner);
    let user = rest.split(['@', ';', '?']).next().unwrap_or(rest);
    user.to_owned()
}

/// The longest call a log may report (a week): a bigger number is a broken value, refused at
/// parse time rather than wrapped into an end before the start.
pub const MAX_DURATION_S: u64 = 7 * 86_400;

/// A time a call log gives, as Salesforce will take it: no leap second (`…23:59:60`, which a
/// Salesforce datetime refuses), between 2000 and 2100.
pub fn check_time(field: &str, t: &DateTime<FixedOffset>) -> Result<(), String> {
    use chrono::{Datelike, Timelike};
    if t.nanosecond() >= 1_000_000_000 {
        return Err(format!(
            "{field} is a leap second ({t}), which Salesforce refuses: write 23:59:59"
        ));
    }
    if !(2000..2100).contains(&t.year()) {
        return Err(format!("{field} {t} is no date of a call"));
    }
    Ok(())
}

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
pub const SOURCE_KINDS: [&str; 4] = ["native", "linphone", "twinkle", "csv"];

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
        "csv" => Box::new(csvlog::CsvSource::new(name, path, csv.unwrap_or_default())),
        other => {
            return Err(format!(
                "unknown call log kind {other:?} (one of {})",
                SOURCE_KINDS.join(", ")
            ))
        }
    })
}

/// The events of a finished call as a history-style source (one row per call) reports it.
pub fn history_events(
    source: &str,
    call_id: String,
    info: CallInfo,
    start: DateTime<FixedOffset>,
    answered: Option<DateTime<FixedOffset>>,
    end: DateTime<FixedOffset>,
    outcome: Outcome,
) -> Vec<CallEvent> {
    let first = match info.direction {
        Direction::Outbound => EventKind::Dialing,
        _ => EventKind::Ringing,
    };
    let ev = |at, kind, info: Option<CallInfo>| CallEvent {
        source: source.to_owned(),
        call_id: call_id.clone(),
        at,
        kind,
        info,
    };
    let mut out = vec![ev(start, first, Some(info.clone()))];
    if let Some(a) = answered {
        out.push(ev(a, EventKind::Answered, Some(info.clone())));
    }
    let duration = match answered {
        Some(a) => (end - a).num_seconds().max(0) as u64,
        None => 0,
    };
    out.push(ev(
        end,
        EventKind::Ended {
            outcome,
            duration_s: Some(duration),
        },
        Some(info),
    ));
    out
}

/// What the agent shows when a call starts ringing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenPop {
    pub call_id: String,
    /// The number for people (international format).
    pub number: String,
    /// Company / person per the seed's table, or "Unknown caller".
    pub title: String,
    /// "Contact", "Person Account", …
    pub kind: Option<String>,
    pub others: usize,
    /// `/lightning/r/{Object}/{Id}/view`, to append to the instance URL.
    pub record_path: Option<String>,
}

/// The screen pop for an incoming `ringing` event (none for other events): the caller looked up
/// in the cache by the seed's rules.
pub fn screen_pop(
    e: &CallEvent,
    lookup: impl FnOnce(&str) -> Option<crate::lookup::LookupResult>,
) -> Option<ScreenPop> {
    let info = e.info.as_ref()?;
    if !matches!(e.kind, EventKind::Ringing) || info.direction != Direction::Inbound {
        return None;
    }
    let r = lookup(&info.remote);
    let number = r
        .as_ref()
        .map(|r| r.key.display())
        .unwrap_or_else(|| info.remote.clone());
    Some(
        match r.and_then(|r| r.best.clone().map(|b| (b, r.others.len()))) {
            Some((m, others)) => ScreenPop {
                call_id: e.call_id.clone(),
                number,
                title: m.display.one_line(),
                kind: Some(m.kind_label().to_owned()),
                others,
                record_path: Some(format!("/lightning/r/{}/{}/view", m.kind.api_name(), m.id)),
            },
            None => ScreenPop {
                call_id: e.call_id.clone(),
                number,
                title: "Unknown caller".into(),
                kind: None,
                others: 0,
                record_path: None,
            },
        },
    )
}

/// A source failed on some input (logged to the integration error log; the source goes on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProblem {
    pub source: String,
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        use Direction::*;
        use Outcome::*;
        let table = [
            (Outbound, Answered, None, CallType::Outgoing),
            (Outbound, NoAnswer, None, CallType::OutgoingMissed),
            (Outbound, Busy, None, CallType::OutgoingMissed),
            (Outbound, Rejected, None, CallType::OutgoingMissed),
            (Outbound, NoAgent, None, CallType::OutgoingMissed),
            (Inbound, Answered, None, CallType::Incoming),
            (Inbound, NoAnswer, None, CallType::IncomingMissed),
            (Inbound, Rejected, None, CallType::IncomingMissed),
            (Inbound, Voicemail, None, CallType::Voicemail),
            (
                Inbound,
                Answered,
                Some(TransferKind::Internal),
                CallType::TransferInternal,
            ),
            (
                Inbound,
                Answered,
                Some(TransferKind::External),
                CallType::TransferExternal,
            ),
            (
                Inbound,
                NoAnswer,
                Some(TransferKind::AutoForward),
                CallType::TransferAutoForward,
            ),
            (Internal, Answered, None, CallType::Internal),
            (
                Internal,
                Answered,
                Some(TransferKind::External),
                CallType::Internal,
            ),
        ];
        for (d, o, t, want) in table {
            assert_eq!(classify(d, o, t), want, "{d:?} {o:?} {t:?}");
        }
        assert!(!CallType::Internal.is_integrated());
        assert!(CallType::Voicemail.is_integrated());
    }

    #[test]
    fn sip_users() {
        for (input, want) in [
            ("\"Alice\" <sip:alice@127.0.0.1:5070>", "alice"),
            ("sip:bob@127.0.0.1", "bob"),
            ("<sip:+81312345678@pbx.example;user=phone>", "+81312345678"),
            ("sips:0312345678@x", "0312345678"),
            ("tel:+1-415-555-0100", "+1-415-555-0100"),
            ("03-1234-5678", "03-1234-5678"),
        ] {
            assert_eq!(sip_user(input), want);
        }
    }
}
