//! Calls → Salesforce Tasks ("activity history"), by the seed's rules, as pure functions: what to
//! create, when, with which fields, and what a later update may touch.
//!
//! Where the seed and MiiTel's documentation are silent (subject/comment defaults, which user
//! owns a missed call, what "click-to-call attaches to the record" means), the choice is the one a
//! Salesforce admin would expect, configurable, and documented in the README.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::event::{
    classify, CallEvent, CallInfo, CallType, Direction, EventKind, Origin, Outcome, TransferKind,
};
use crate::lookup::Match;
use crate::record::RecordId;

/// When a Task is first written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// At dial/answer with duration 0, completed when the call ends.
    AfterBegin,
    /// Once, when the call ends (the only timing that writes the custom fields and voicemail).
    AfterEnd,
}

/// Subject and Comments templates for one call type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub subject: String,
    pub description: String,
}

/// Custom Task fields (API names) the admin created; empty: not written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomFields {
    pub dial_start: String,
    pub call_start: String,
    pub call_end: String,
    /// Multi-select picklist: memo items joined with `;`.
    pub memo: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActivitySettings {
    pub timing: Timing,
    /// Task `Status` (e.g. Completed: the Task shows in the activity history).
    pub status: String,
    pub templates: BTreeMap<CallType, Template>,
    pub custom: CustomFields,
    /// The outgoing-call setting: a click-to-call Task goes on the record it started from
    /// (instead of the number's best match).
    pub click_to_call_on_record: bool,
    /// The agent's time zone, for `ActivityDate`.
    pub utc_offset: FixedOffset,
    /// A call from (or to) a number no record has: its Task unlinked (MiiTel's behaviour), or
    /// on a Lead or Contact created for the number.
    pub unknown_caller: UnknownCaller,
    /// The fields of that record besides its Phone (LastName, the Lead's Company, any field
    /// the org requires).
    pub unknown_record: Fields,
}

/// `activity.unknown_caller`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCaller {
    #[default]
    Unlinked,
    CreateLead,
    CreateContact,
}

/// The record created for an unknown number (`activity.unknown_caller`): its object and
/// fields, the number in `Phone`. `None` when the setting leaves such Tasks unlinked.
pub fn unknown_caller_record(
    s: &ActivitySettings,
    number: &str,
) -> Option<(crate::record::ObjectKind, Fields)> {
    use crate::record::ObjectKind;
    let kind = match s.unknown_caller {
        UnknownCaller::Unlinked => return None,
        UnknownCaller::CreateLead => ObjectKind::Lead,
        UnknownCaller::CreateContact => ObjectKind::Contact,
    };
    let mut f = s.unknown_record.clone();
    if kind != ObjectKind::Lead {
        // Company is a Lead field; a Contact has none.
        f.remove("Company");
    }
    f.insert("Phone".into(), json!(number));
    Some((kind, f))
}

/// Who owns the Task (`OwnerId`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignees {
    /// The signed-in agent's own user (the default owner).
    pub default_owner: Option<RecordId>,
    /// Call-log agent identity → Salesforce user.
    pub agents: BTreeMap<String, RecordId>,
    /// Owner of missed incoming calls and voicemail (MiiTel uses the integration user).
    pub missed_owner: Option<RecordId>,
    /// An automatically forwarded call belongs to the User whose Phone is the destination.
    pub forward_to_destination: bool,
}

impl Default for Assignees {
    fn default() -> Self {
        Assignees {
            default_owner: None,
            agents: BTreeMap::new(),
            missed_owner: None,
            forward_to_destination: true,
        }
    }
}

/// What is known about a call so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSummary {
    pub call_id: String,
    pub info: CallInfo,
    pub started: DateTime<FixedOffset>,
    #[serde(default)]
    pub answered: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    pub ended: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(default)]
    pub duration_s: Option<u64>,
    #[serde(default)]
    pub transfer: Option<(TransferKind, String)>,
    #[serde(default)]
    pub memo_items: Vec<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub transcript: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

impl CallSummary {
    pub fn call_type(&self) -> Option<CallType> {
        let t = self.transfer.as_ref().map(|(k, _)| *k);
        self.outcome.map(|o| classify(self.info.direction, o, t))
    }
}

/// The moment a decision is asked for.
/// A call in progress: its summary so far and what was queued for it. The store keeps it
/// across restarts; [`CallRecord::fold`] is the one rule for what each event does to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub summary: CallSummary,
    /// A create was queued (at the beginning or at the end).
    pub created: bool,
    pub ended: bool,
    /// The record the agent chose for this call among the number's matches, and where that
    /// puts the Task: it beats the lookup rule for every write of the call.
    #[serde(default)]
    pub chosen: Option<(RecordId, Target)>,
}

impl CallRecord {
    /// The record a call's first event (the one that says who and which way) starts; `None`
    /// for an event of a call whose beginning was never seen.
    pub fn start(e: &CallEvent) -> Option<CallRecord> {
        let info = e.info.clone()?;
        Some(CallRecord {
            summary: CallSummary {
                call_id: e.call_id.clone(),
                info,
                started: e.at,
                answered: None,
                ended: None,
                outcome: None,
                duration_s: None,
                transfer: None,
                memo_items: Vec::new(),
                comment: None,
                transcript: None,
                summary: None,
            },
            created: false,
            ended: false,
            chosen: None,
        })
    }

    /// Folds one event into the summary and returns the stage it completes, if it completes
    /// one: the beginning (dialing out; answering in), the end, or an update of an ended call
    /// (a memo, speech). A re-delivered end (a batch not acknowledged before a crash) completes
    /// nothing again.
    pub fn fold(&mut self, e: &CallEvent) -> Option<Stage> {
        let s = &mut self.summary;
        let stage = match &e.kind {
            EventKind::Dialing | EventKind::Ringing => {
                s.started = s.started.min(e.at);
                (s.info.direction == Direction::Outbound && matches!(e.kind, EventKind::Dialing))
                    .then_some(Stage::Begin)
            }
            EventKind::Answered => {
                s.answered = Some(e.at);
                (s.info.direction != Direction::Outbound).then_some(Stage::Begin)
            }
            EventKind::Ended {
                outcome,
                duration_s,
            } => {
                s.ended = Some(e.at);
                s.outcome = Some(*outcome);
                s.duration_s = duration_s
                    .or_else(|| s.answered.map(|a| (e.at - a).num_seconds().max(0) as u64))
                    .or(Some(0));
                Some(Stage::End)
            }
            EventKind::Transferred { kind, to } => {
                s.transfer = Some((*kind, to.clone()));
                None
            }
            EventKind::Memo { items, comment, .. } => {
                s.memo_items = items.clone();
                s.comment = comment.clone();
                self.ended.then_some(Stage::Update)
            }
            EventKind::Speech {
                transcript,
                summary,
            } => {
                s.transcript = Some(transcript.clone());
                s.summary = Some(summary.clone());
                self.ended.then_some(Stage::Update)
            }
            EventKind::Meeting(_) => None,
        };
        stage.filter(|st| !(*st == Stage::End && self.ended))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The call was dialled or answered.
    Begin,
    /// The call ended.
    End,
    /// A memo was saved or edited, or speech analysis finished.
    Update,
}

/// The Task fields callsync writes (API name → value).
pub type Fields = BTreeMap<String, Value>;

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Create(Fields),
    /// Fields to change on the call's Task (only fields callsync owns).
    Update(Fields),
    Skip(&'static str),
}

/// Where the lookup and the click-to-call record put the Task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub who: Option<RecordId>,
    pub what: Option<RecordId>,
}

/// The seed's WhoId/WhatId per match: Contact → Who = Contact, What = its Account; Account →
/// What; person account → Who = its person contact, What = the Account; Lead → Who only.
pub fn target_of(m: &Match) -> Target {
    use crate::record::ObjectKind::*;
    match (m.kind, m.person_account) {
        (Contact, _) => Target {
            who: Some(m.id.clone()),
            what: m.account_id.clone(),
        },
        (Account, true) => Target {
            who: m.person_contact_id.clone(),
            what: Some(m.id.clone()),
        },
        (Account, false) => Target {
            who: None,
            what: Some(m.id.clone()),
        },
        (Lead, _) => Target {
            who: Some(m.id.clone()),
            what: None,
        },
        (User, _) => Target::default(),
    }
}

/// The update that moves a written Task to `target`: WhoId and WhatId only, each set or
/// cleared (a Contact chosen over a Lead brings a WhatId; a Lead chosen over a Contact must
/// clear it: "If WhoId refers to a lead, WhatId must be empty").
pub fn link_fields(target: &Target) -> Fields {
    let lead_who = target.who.as_ref().is_some_and(|w| w.prefix() == "00Q");
    let id = |r: Option<&RecordId>| r.map_or(Value::Null, |r| json!(r.as_str()));
    let mut f = Fields::new();
    f.insert("WhoId".into(), id(target.who.as_ref()));
    f.insert(
        "WhatId".into(),
        id(target.what.as_ref().filter(|_| !lead_who)),
    );
    f
}

/// A click-to-call's own record by key prefix (Contact/Lead → Who, anything else → What).
pub fn target_of_record(id: &RecordId) -> Target {
    match id.prefix() {
        "003" | "00Q" => Target {
            who: Some(id.clone()),
            what: None,
        },
        _ => Target {
            who: None,
            what: Some(id.clone()),
        },
    }
}

pub fn label(t: CallType) -> &'static str {
    match t {
        CallType::Outgoing => "Outgoing call",
        CallType::Incoming => "Incoming call",
        CallType::TransferInternal => "Transfer (internal)",
        CallType::TransferExternal => "Transfer (external)",
        CallType::TransferAutoForward => "Automatic call forwarding",
        CallType::Voicemail => "Voicemail",
        CallType::OutgoingMissed => "Outgoing call (missed)",
        CallType::IncomingMissed => "Incoming call (missed)",
        CallType::Internal => "Internal call",
    }
}

/// Default templates: the call type and number in the subject, the details in Comments.
pub fn default_templates() -> BTreeMap<CallType, Template> {
    use CallType::*;
    [Outgoing, Incoming, TransferInternal, TransferExternal, TransferAutoForward, Voicemail, OutgoingMissed, IncomingMissed]
        .into_iter()
        .map(|t| {
            (
                t,
                Template {
                    subject: "{CALL_TYPE}: {REMOTE_NUMBER}".into(),
                    description: "{CALL_TYPE} with {REMOTE_NUMBER} ({DURATION})\nAgent: {AGENT}\nMemo: {MEMO}\n{COMMENT}\n{SPEECH_RECOGNITION_SUMMARY}".into(),
                },
            )
        })
        .collect()
}

impl Default for ActivitySettings {
    fn default() -> Self {
        ActivitySettings {
            timing: Timing::AfterEnd,
            status: "Completed".into(),
            templates: default_templates(),
            custom: CustomFields::default(),
            click_to_call_on_record: true,
            // The PC's own offset: the agent's day.
            utc_offset: chrono::Offset::fix(chrono::Local::now().offset()),
            unknown_caller: UnknownCaller::Unlinked,
            unknown_record: [
                ("LastName".to_owned(), json!("Unknown caller")),
                ("Company".to_owned(), json!("Unknown")),
            ]
            .into(),
        }
    }
}

pub(crate) const SUBJECT_MAX: usize = 255;
pub(crate) const DESCRIPTION_MAX: usize = 32_000;
const MARKER: &str = "…[truncated]";

/// Cuts `s` to `max` characters, ending with a marker, rather than letting Salesforce refuse it.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let keep = max.saturating_sub(MARKER.chars().count());
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(MARKER);
    out
}

fn duration_text(s: Option<u64>) -> String {
    match s {
        None => "in progress".into(),
        Some(s) if s >= 3600 => format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60),
        Some(s) => format!("{}:{:02}", s / 60, s % 60),
    }
}

/// Fills a template. Unknown placeholders stay as written (a visible hint to fix the template);
/// lines left empty, or a bare `Label:` whose value was empty, are left out.
pub fn render(
    template: &str,
    call: &CallSummary,
    call_type: Option<CallType>,
    number: &str,
) -> String {
    let values = [
        (
            "{CALL_TYPE}",
            call_type.map(label).unwrap_or("Call").to_owned(),
        ),
        ("{REMOTE_NUMBER}", number.to_owned()),
        ("{DURATION}", duration_text(call.duration_s)),
        ("{MEMO}", call.memo_items.join(", ")),
        ("{COMMENT}", call.comment.clone().unwrap_or_default()),
        (
            "{SPEECH_RECOGNITION}",
            call.transcript.clone().unwrap_or_default(),
        ),
        (
            "{SPEECH_RECOGNITION_SUMMARY}",
            call.summary.clone().unwrap_or_default(),
        ),
        ("{AGENT}", call.info.agent.clone().unwrap_or_default()),
    ];
    fill(template, &values)
}

/// Replaces the placeholders, then drops lines left empty or reduced to a bare `Label:`.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in values {
        out = out.replace(k, v);
    }
    out.lines()
        .filter(|l| {
            let t = l.trim();
            let bare_label = t.ends_with(':')
                && !t[..t.len() - 1].contains(':')
                && t.split_whitespace().count() <= 3;
            !t.is_empty() && !bare_label
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The meeting (video) history integration's Event settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeetingSettings {
    pub subject: String,
    pub description: String,
    /// Custom Event fields (API names; empty: not written).
    pub recording_url_field: String,
    pub tags_field: String,
}

/// The Event for a meeting (`start` is the meeting's `at`): Subject and Description from the
/// templates, start and end, Who/What like a call's Task, the host's user as owner, the
/// recording URL and tags in their custom fields.
pub fn meeting_event(
    m: &crate::event::MeetingInfo,
    start: DateTime<FixedOffset>,
    target: &Target,
    a: &Assignees,
    s: &MeetingSettings,
) -> Fields {
    let secs = (m.end - start).num_seconds().max(0) as u64;
    let values = [
        ("{TITLE}", m.title.clone()),
        (
            "{RECORDING_URL}",
            m.recording_url.clone().unwrap_or_default(),
        ),
        ("{TRANSCRIPT}", m.transcript.clone().unwrap_or_default()),
        ("{TAGS}", m.tags.join(", ")),
        ("{DURATION}", duration_text(Some(secs))),
        ("{AGENT}", m.agent.clone().unwrap_or_default()),
    ];
    let fmt =
        |d: DateTime<FixedOffset>| crate::record::format_sf_datetime(d.with_timezone(&chrono::Utc));
    let mut f = Fields::new();
    let subject = fill(&s.subject, &values);
    let subject = if subject.trim().is_empty() {
        "Meeting".to_owned()
    } else {
        subject
    };
    f.insert("Subject".into(), json!(truncate(&subject, SUBJECT_MAX)));
    f.insert(
        "Description".into(),
        json!(truncate(&fill(&s.description, &values), DESCRIPTION_MAX)),
    );
    f.insert("StartDateTime".into(), json!(fmt(start)));
    // An Event must end at or after its start.
    f.insert("EndDateTime".into(), json!(fmt(m.end.max(start))));
    if let Some(w) = &target.who {
        f.insert("WhoId".into(), json!(w.as_str()));
    }
    let lead_who = target.who.as_ref().is_some_and(|w| w.prefix() == "00Q");
    if let (Some(w), false) = (&target.what, lead_who) {
        f.insert("WhatId".into(), json!(w.as_str()));
    }
    let owner = m
        .agent
        .as_ref()
        .and_then(|id| a.agents.get(id))
        .or(a.default_owner.as_ref());
    if let Some(o) = owner {
        f.insert("OwnerId".into(), json!(o.as_str()));
    }
    if let (false, Some(url)) = (s.recording_url_field.is_empty(), &m.recording_url) {
        f.insert(s.recording_url_field.clone(), json!(url));
    }
    if !s.tags_field.is_empty() && !m.tags.is_empty() {
        f.insert(s.tags_field.clone(), json!(m.tags.join(";")));
    }
    f
}

/// Decides what to write for `call` at `stage`.
///
/// `target`: where the number's best match (or the click-to-call record) puts the Task;
/// `forward_user`: for automatic forwarding, the User whose `Phone` is the destination;
/// `number`: the remote number for people.
pub fn decide(
    call: &CallSummary,
    stage: Stage,
    target: &Target,
    forward_user: Option<&RecordId>,
    number: &str,
    s: &ActivitySettings,
    a: &Assignees,
) -> Decision {
    if call.info.direction == Direction::Internal {
        return Decision::Skip("internal calls are not integrated");
    }
    let call_type = call.call_type();
    let predictive = call.info.origin == Origin::Predictive;
    match (stage, s.timing) {
        (Stage::Begin, Timing::AfterEnd) => return Decision::Skip("registered when the call ends"),
        (Stage::Begin, Timing::AfterBegin) if predictive => {
            // Predictive calls are only known to be connected at the end.
            return Decision::Skip("predictive calls are registered when they end");
        }
        (Stage::End, _)
            if call_type == Some(CallType::Voicemail) && s.timing == Timing::AfterBegin =>
        {
            return Decision::Skip(
                "voicemail is registered only with the after-the-call-ends timing",
            );
        }
        (Stage::End, _)
            if predictive
                && call_type == Some(CallType::Outgoing)
                && s.timing == Timing::AfterBegin =>
        {
            return Decision::Skip("connected predictive calls are registered only with the after-the-call-ends timing");
        }
        _ => {}
    }
    if stage == Stage::Update {
        // Only what callsync owns: an agent's own edits to other fields stay.
        let mut f = Fields::new();
        let t = s.templates.get(&call_type.unwrap_or(CallType::Outgoing));
        if let Some(t) = t {
            f.insert(
                "Description".into(),
                json!(truncate(
                    &render(&t.description, call, call_type, number),
                    DESCRIPTION_MAX
                )),
            );
        }
        if !s.custom.memo.is_empty() && s.timing == Timing::AfterEnd {
            f.insert(s.custom.memo.clone(), json!(call.memo_items.join(";")));
        }
        return Decision::Update(f);
    }

    let mut f = Fields::new();
    let fallback = Template {
        subject: "{CALL_TYPE}: {REMOTE_NUMBER}".into(),
        description: String::new(),
    };
    let template = call_type
        .and_then(|t| s.templates.get(&t))
        .unwrap_or(&fallback);
    f.insert(
        "Subject".into(),
        json!(truncate(
            &render(&template.subject, call, call_type, number),
            SUBJECT_MAX
        )),
    );
    f.insert(
        "Description".into(),
        json!(truncate(
            &render(&template.description, call, call_type, number),
            DESCRIPTION_MAX
        )),
    );
    f.insert("Status".into(), json!(s.status));
    f.insert("TaskSubtype".into(), json!("Call"));
    let created = call
        .ended
        .filter(|_| stage == Stage::End)
        .unwrap_or(call.answered.unwrap_or(call.started));
    f.insert(
        "ActivityDate".into(),
        json!(created
            .with_timezone(&s.utc_offset)
            .format("%Y-%m-%d")
            .to_string()),
    );
    f.insert(
        "CallType".into(),
        json!(match call.info.direction {
            Direction::Outbound => "Outbound",
            Direction::Inbound => "Inbound",
            Direction::Internal => "Internal",
        }),
    );
    f.insert("CallObject".into(), json!(call.call_id));
    let duration = if stage == Stage::Begin {
        0
    } else {
        call.duration_s.unwrap_or(0)
    };
    f.insert("CallDurationInSeconds".into(), json!(duration));
    if let Some(w) = &target.who {
        f.insert("WhoId".into(), json!(w.as_str()));
    }
    // A Lead in WhoId may not have a WhatId.
    let lead_who = target.who.as_ref().is_some_and(|w| w.prefix() == "00Q");
    if let (Some(w), false) = (&target.what, lead_who) {
        f.insert("WhatId".into(), json!(w.as_str()));
    }
    if let Some(owner) = owner(call, call_type, forward_user, a) {
        f.insert("OwnerId".into(), json!(owner.as_str()));
    }
    if stage == Stage::End && s.timing == Timing::AfterEnd {
        let fmt = |d: DateTime<FixedOffset>| {
            crate::record::format_sf_datetime(d.with_timezone(&chrono::Utc))
        };
        let c = &s.custom;
        if !c.dial_start.is_empty() {
            f.insert(c.dial_start.clone(), json!(fmt(call.started)));
        }
        if let (false, Some(a)) = (c.call_start.is_empty(), call.answered) {
            f.insert(c.call_start.clone(), json!(fmt(a)));
        }
        if let (false, Some(e)) = (c.call_end.is_empty(), call.ended) {
            f.insert(c.call_end.clone(), json!(fmt(e)));
        }
        if !c.memo.is_empty() && !call.memo_items.is_empty() {
            f.insert(c.memo.clone(), json!(call.memo_items.join(";")));
        }
    }
    if stage == Stage::End && s.timing == Timing::AfterBegin {
        // Completing the Task created at the beginning: the upsert on CallObject's key
        // carries the full set, which is the same shape.
        return Decision::Update(f);
    }
    Decision::Create(f)
}

/// The owner by the assignee settings.
fn owner<'a>(
    call: &CallSummary,
    t: Option<CallType>,
    forward_user: Option<&'a RecordId>,
    a: &'a Assignees,
) -> Option<&'a RecordId> {
    let agent = call
        .info
        .agent
        .as_ref()
        .and_then(|id| a.agents.get(id))
        .or(a.default_owner.as_ref());
    match t {
        Some(CallType::TransferAutoForward) if a.forward_to_destination => forward_user.or(agent),
        Some(CallType::IncomingMissed | CallType::Voicemail) => a.missed_owner.as_ref().or(agent),
        _ => agent,
    }
}

#[cfg(test)]
mod tests;
