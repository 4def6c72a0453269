//! Call events: what happened to a call, as every call-log source reports it (the sources
//! themselves are `callsync-calllog`), and the seed's call types.

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
