//! Call events → Task writes in the outbox. Each call's summary is kept in the outbox store
//! across restarts; every Task write a batch causes is durable when `handle` returns, so the
//! caller acknowledges the call-log batch only then (nothing lost, and a re-delivered batch
//! finds its writes already queued or merged).

use callsync_core::activity::CallRecord;
use callsync_core::activity::{
    self, ActivitySettings, Assignees, CallSummary, Decision, MeetingSettings, Stage, Target,
};
use callsync_core::event::{CallEvent, EventKind, Origin, TransferKind};
use callsync_core::lookup::LookupRules;
use callsync_core::phone::Normalizer;
use callsync_core::record::{ObjectKind, RecordId};
use callsync_store::cache::Cache;
use callsync_store::outbox::{Op, Outbox, OutboxError, SObject};

pub struct Pipeline<'a> {
    pub outbox: &'a Outbox,
    /// For Who/What and forwarding owners; without it Tasks go unattached (still created).
    pub cache: Option<&'a Cache>,
    pub normalizer: &'a Normalizer,
    pub rules: &'a LookupRules,
    /// The activity history integration (None: off, calls write nothing).
    pub settings: Option<&'a ActivitySettings>,
    /// The meeting history integration (None: off, meetings write nothing).
    pub meeting: Option<&'a MeetingSettings>,
    pub assignees: &'a Assignees,
}

/// What the pipeline takes from the configuration and the sign-in, read once: which
/// integrations are on and whose Tasks they are. The agent and the demo both build their
/// pipeline from it.
pub struct PipelineSetup {
    settings: Option<ActivitySettings>,
    meeting: Option<MeetingSettings>,
    assignees: Assignees,
}

impl PipelineSetup {
    pub fn of(app: &crate::App) -> PipelineSetup {
        let me = app.auth_store().load().ok().flatten().map(|a| a.user_id);
        let c = &app.config;
        PipelineSetup {
            settings: c.activity.enabled.then(|| c.activity.settings()),
            meeting: c.meeting.enabled.then(|| c.meeting.settings()),
            assignees: c.assignee.assignees(me.as_deref()),
        }
    }

    pub fn pipeline<'a>(
        &'a self,
        outbox: &'a Outbox,
        cache: Option<&'a Cache>,
        normalizer: &'a Normalizer,
        rules: &'a LookupRules,
    ) -> Pipeline<'a> {
        Pipeline {
            outbox,
            cache,
            normalizer,
            rules,
            settings: self.settings.as_ref(),
            meeting: self.meeting.as_ref(),
            assignees: &self.assignees,
        }
    }
}

impl Pipeline<'_> {
    /// The agent's choice for the call, else the click-to-call record, else the number's
    /// best match now (the freshest answer when the Task is written).
    fn target(&self, rec: &CallRecord, settings: &ActivitySettings) -> Target {
        if let Some((_, t)) = &rec.chosen {
            return t.clone();
        }
        let s = &rec.summary;
        let record = (settings.click_to_call_on_record && s.info.origin == Origin::ClickToCall)
            .then_some(s.info.record_id.as_deref())
            .flatten();
        self.target_of(record, &s.info.remote)
    }

    /// The record a write goes on: the one named, else the number's best match.
    fn target_of(&self, record: Option<&str>, number: &str) -> Target {
        if let Some(id) = record.and_then(RecordId::parse) {
            return activity::target_of_record(&id);
        }
        self.cache
            .and_then(|c| {
                callsync_store::lookup::lookup(c, self.normalizer, self.rules, number).ok()
            })
            .and_then(|r| r.best)
            .map(|m| activity::target_of(&m))
            .unwrap_or_default()
    }

    /// A meeting's Event, queued once (a re-delivered line merges into the queued one).
    fn meeting(
        &self,
        e: &CallEvent,
        m: &callsync_core::event::MeetingInfo,
    ) -> Result<Option<Decision>, OutboxError> {
        let Some(settings) = self.meeting else {
            return Ok(None);
        };
        let target = self.target_of(m.record_id.as_deref(), m.remote.as_deref().unwrap_or(""));
        let f = activity::meeting_event(m, e.at, &target, self.assignees, settings);
        self.outbox
            .enqueue_for(SObject::Event, &e.call_id, Op::Create, f.clone())?;
        Ok(Some(Decision::Create(f)))
    }

    /// For automatic forwarding: the active User whose phone is the destination.
    fn forward_user(&self, s: &CallSummary) -> Option<RecordId> {
        let (kind, to) = s.transfer.as_ref()?;
        if *kind != TransferKind::AutoForward {
            return None;
        }
        let key = self.normalizer.key(to).ok()?;
        self.cache?
            .hits(&key)
            .ok()?
            .into_iter()
            .find(|h| h.entry.kind == ObjectKind::User)
            .map(|h| h.id)
    }

    /// A Task for a number no record has: with `activity.unknown_caller`, on the record created
    /// for the number — once per number: one written before is reused, one still queued is
    /// shared (its Id replaces the placeholder when it is written). Numbers that are no full
    /// phone number (extensions, short codes) get none.
    fn unknown_caller(
        &self,
        f: &mut activity::Fields,
        s: &CallSummary,
        settings: &ActivitySettings,
    ) -> Result<(), OutboxError> {
        // (Internal calls never get here: `decide` skips them.)
        let Ok(number) = self.normalizer.key(&s.info.remote) else {
            return Ok(());
        };
        let Some(e) = number.e164() else {
            return Ok(());
        };
        let Some((kind, record)) = activity::unknown_caller_record(settings, &number.display())
        else {
            return Ok(());
        };
        let object = match kind {
            ObjectKind::Lead => SObject::Lead,
            _ => SObject::Contact,
        };
        let key = e.as_str();
        let who = match self.outbox.record_id(object, key)? {
            Some(id) => id,
            None => {
                self.outbox.enqueue_for(object, key, Op::Create, record)?;
                object.placeholder(key)
            }
        };
        f.insert("WhoId".into(), serde_json::json!(who));
        Ok(())
    }

    fn number(&self, s: &CallSummary) -> String {
        self.normalizer
            .key(&s.info.remote)
            .map(|k| k.display())
            .unwrap_or_else(|_| s.info.remote.clone())
    }

    /// Handles a batch of events; returns the decisions made (for logs and tests).
    pub fn handle(&self, events: &[CallEvent]) -> Result<Vec<(String, Decision)>, OutboxError> {
        let mut out = Vec::new();
        for e in events {
            if let EventKind::Meeting(m) = &e.kind {
                if let Some(d) = self.meeting(e, m)? {
                    out.push((e.call_id.clone(), d));
                }
                continue;
            }
            let Some(settings) = self.settings else {
                continue;
            };
            let _call = self.outbox.lock_calls();
            let mut rec = match self.outbox.call(&e.call_id)? {
                Some(r) => r,
                None => match CallRecord::start(e) {
                    Some(r) => r,
                    None => {
                        tracing::warn!(call = %e.call_id, event = e.kind.name(), "event for a call whose first event was never seen; skipped");
                        continue;
                    }
                },
            };
            let stage = rec.fold(e);
            if let Some(stage) = stage {
                let skip_begin = stage == Stage::Begin && rec.created;
                let skip_update = stage == Stage::Update && !rec.created;
                if !skip_begin && !skip_update {
                    let target = self.target(&rec, settings);
                    let fwd = self.forward_user(&rec.summary);
                    let number = self.number(&rec.summary);
                    let mut d = activity::decide(
                        &rec.summary,
                        stage,
                        &target,
                        fwd.as_ref(),
                        &number,
                        settings,
                        self.assignees,
                    );
                    let creates = match &mut d {
                        Decision::Create(f) => Some(f),
                        Decision::Update(f) if !rec.created => Some(f),
                        _ => None,
                    };
                    if let (Some(f), true) = (creates, target == Target::default()) {
                        self.unknown_caller(f, &rec.summary, settings)?;
                    }
                    match &d {
                        Decision::Create(f) => {
                            self.outbox.enqueue(&e.call_id, Op::Create, f.clone())?;
                            rec.created = true;
                        }
                        // Completing a Task that was never created (a call that ended before
                        // it began, for the queue): create it whole.
                        Decision::Update(f) if !rec.created => {
                            self.outbox.enqueue(&e.call_id, Op::Create, f.clone())?;
                            rec.created = true;
                        }
                        Decision::Update(f) => {
                            self.outbox.enqueue(&e.call_id, Op::Update, f.clone())?;
                        }
                        Decision::Skip(_) => {}
                    }
                    out.push((e.call_id.clone(), d));
                }
                if stage == Stage::End {
                    rec.ended = true;
                }
            }
            self.outbox.put_call(&rec)?;
        }
        self.outbox.flush()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callsync_calllog::native::parse_line;
    use callsync_store::cache::{CacheOptions, Change};

    fn ev(l: &str) -> CallEvent {
        parse_line("t", l).unwrap().unwrap()
    }

    #[test]
    fn a_call_becomes_one_task_with_its_memo_merged() {
        let d = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&d.path().join("outbox")).unwrap();
        let (cache, _) = Cache::open(&d.path().join("cache"), &CacheOptions::default()).unwrap();
        let n = Normalizer::from_codes("JP", &[]).unwrap();
        let contact = serde_json::json!({"attributes": {"type": "Contact"}, "Id": "003000000000001AAA", "Name": "Taro",
            "AccountId": "001000000000001AAA", "Phone": "03-1234-5678"});
        let r = callsync_core::record::from_sobject(&contact, None, &n, &()).unwrap();
        cache.apply(&[Change::Upsert(r)], &[]).unwrap();
        let rules = LookupRules::default();
        let settings = ActivitySettings::default();
        let meeting = callsync_config::MeetingConfig::default().settings();
        let assignees = Assignees::default();
        let p = Pipeline {
            outbox: &outbox,
            cache: Some(&cache),
            normalizer: &n,
            rules: &rules,
            settings: Some(&settings),
            meeting: Some(&meeting),
            assignees: &assignees,
        };
        let events = [
            r#"{"call_id":"c1","event":"ringing","at":"2026-11-21T10:00:00+09:00","direction":"inbound","remote":"+81 3 1234 5678"}"#,
            r#"{"call_id":"c1","event":"answered","at":"2026-11-21T10:00:05+09:00"}"#,
            r#"{"call_id":"c1","event":"ended","at":"2026-11-21T10:03:05+09:00","outcome":"answered"}"#,
        ];
        let evs: Vec<CallEvent> = events.iter().map(|l| ev(l)).collect();
        // Delivered in two batches, the second twice (a re-delivery after a crash).
        p.handle(&evs[..2]).unwrap();
        p.handle(&evs[2..]).unwrap();
        p.handle(&evs[1..]).unwrap();
        let items = outbox.items().unwrap();
        assert_eq!(items.len(), 1);
        let f = &items[0].fields;
        assert_eq!(f["WhoId"], "003000000000001AAA");
        assert_eq!(f["WhatId"], "001000000000001AAA");
        assert_eq!(f["CallDurationInSeconds"], 180);
        assert_eq!(f["CallType"], "Inbound");
        // The memo arrives after the end: merged into the still-queued create.
        p.handle(&[ev(r#"{"call_id":"c1","event":"memo","at":"2026-11-21T10:04:00+09:00","items":["Quote"],"comment":"wants a quote"}"#)]).unwrap();
        let items = outbox.items().unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0].fields["Description"]
            .as_str()
            .unwrap()
            .contains("wants a quote"));
        // Internal calls: nothing queued.
        p.handle(&[
            ev(r#"{"call_id":"c2","event":"dialing","at":"2026-11-21T11:00:00+09:00","direction":"internal","remote":"201"}"#),
            ev(r#"{"call_id":"c2","event":"ended","at":"2026-11-21T11:01:00+09:00","outcome":"answered"}"#),
        ])
        .unwrap();
        assert_eq!(outbox.items().unwrap().len(), 1);
    }
}
