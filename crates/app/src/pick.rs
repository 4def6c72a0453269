//! Which record a call's Task goes on, changed after the fact: the agent's pick among several
//! matches (the pop's buttons, the tray's "Current call" menu, `callsync calls pick`), and the
//! link made once a refresh found a number the cache did not know. Both go through one rule:
//! before the Task is queued the call's record says where it goes; once queued (or written) an
//! update touching only WhoId and WhatId follows it, merged into a create still queued.

use callsync_core::activity::{self, Target};
use callsync_core::lookup::{Choice, LookupResult, LookupRules, Match};
use callsync_core::phone::Normalizer;
use callsync_core::record::RecordId;
use callsync_store::cache::{Cache, CacheError};
use callsync_store::lookup::LookupError;
use callsync_store::outbox::{Op, Outbox, OutboxError};

#[derive(Debug, thiserror::Error)]
pub enum PickError {
    #[error("no call {0} is known here (only calls this agent has read from a call log can be picked for; `callsync queue` lists the queued ones)")]
    NoSuchCall(String),
    #[error("{id} is not a match for {number}; its matches are: {matches}")]
    NotAMatch {
        id: String,
        number: String,
        matches: String,
    },
    #[error("{0:?} is not a Salesforce record Id (15 or 18 characters)")]
    BadId(String),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

/// What a pick did to the call's Task.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskLink {
    /// Not queued yet: it will be written on the chosen record.
    WhenWritten,
    /// Queued or written already: an update of WhoId/WhatId is queued (merged into the create
    /// while that is still queued).
    Updated,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Picked {
    pub call_id: String,
    pub record: Match,
    pub target: Target,
    pub task: TaskLink,
    /// The choice is remembered as the number's winner for the next calls.
    pub remembered: bool,
}

/// The stores and rules a pick reads.
pub struct Stores<'a> {
    pub outbox: &'a Outbox,
    pub cache: &'a Cache,
    pub normalizer: &'a Normalizer,
    pub rules: &'a LookupRules,
}

impl Stores<'_> {
    fn lookup(&self, number: &str) -> Result<LookupResult, LookupError> {
        callsync_store::lookup::lookup(self.cache, self.normalizer, self.rules, number)
    }

    /// Sets the call's record to `record_id` (one of its number's matches) and remembers the
    /// choice for the number.
    pub fn pick(&self, call_id: &str, record_id: &str, now_ms: i64) -> Result<Picked, PickError> {
        let id = RecordId::parse(record_id).ok_or_else(|| PickError::BadId(record_id.into()))?;
        let _call = self.outbox.lock_calls();
        let mut rec = self
            .outbox
            .call(call_id)?
            .ok_or_else(|| PickError::NoSuchCall(call_id.into()))?;
        let r = self.lookup(&rec.summary.info.remote)?;
        let Some(m) = r.all().find(|m| m.id == id).cloned() else {
            return Err(PickError::NotAMatch {
                id: id.as_str().into(),
                number: r.key.display(),
                matches: match r.all().count() {
                    0 => "none".into(),
                    _ => r
                        .all()
                        .map(|m| {
                            format!("{} {}", m.id.as_str(), callsync_core::pop::match_label(m))
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            });
        };
        let target = activity::target_of(&m);
        rec.chosen = Some((m.id.clone(), target.clone()));
        let task = self.follow(&rec, &target)?;
        self.outbox.put_call(&rec)?;
        self.outbox.flush()?;
        let remembered = self.rules.remember_choice_days > 0;
        if remembered {
            self.cache.choose(
                &r.key,
                &Choice {
                    id: m.id.clone(),
                    at_ms: now_ms,
                },
            )?;
        }
        tracing::info!(
            call = call_id,
            record = m.id.as_str(),
            ?task,
            "record picked for the call"
        );
        Ok(Picked {
            call_id: call_id.into(),
            record: m,
            target,
            task,
            remembered,
        })
    }

    /// After a refresh found a number the cache did not know: a call with no pick whose Task
    /// was queued (or written) meanwhile is moved to the number's best match now. Returns it.
    pub fn relink(&self, call_id: &str) -> Result<Option<Match>, PickError> {
        let _call = self.outbox.lock_calls();
        let Some(rec) = self.outbox.call(call_id)? else {
            return Ok(None);
        };
        if rec.chosen.is_some() {
            return Ok(None);
        }
        let Some(best) = self.lookup(&rec.summary.info.remote)?.best else {
            return Ok(None);
        };
        if rec.created {
            self.follow(&rec, &activity::target_of(&best))?;
            self.outbox.flush()?;
        }
        Ok(Some(best))
    }

    /// The Task of a call already queued follows `target`; one not queued yet needs nothing
    /// (the pipeline reads the call's record when it writes it).
    fn follow(
        &self,
        rec: &callsync_core::activity::CallRecord,
        target: &Target,
    ) -> Result<TaskLink, OutboxError> {
        if !rec.created {
            return Ok(TaskLink::WhenWritten);
        }
        self.outbox.enqueue(
            &rec.summary.call_id,
            Op::Update,
            activity::link_fields(target),
        )?;
        Ok(TaskLink::Updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Pipeline;
    use callsync_calllog::native::parse_line;
    use callsync_core::activity::{ActivitySettings, Assignees, Timing};
    use callsync_core::event::CallEvent;
    use callsync_store::cache::{CacheOptions, Change};
    use serde_json::{json, Value};

    const CONTACT: &str = "003000000000001AAA";
    const ACCOUNT: &str = "001000000000001AAA";
    const LEAD: &str = "00Q000000000001AAA";

    fn ev(call: &str, kind: &str) -> CallEvent {
        let line = match kind {
            "ringing" => format!(
                r#"{{"call_id":"{call}","event":"ringing","at":"2026-12-03T10:00:00+09:00","direction":"inbound","remote":"03-1234-5678"}}"#
            ),
            "answered" => format!(
                r#"{{"call_id":"{call}","event":"answered","at":"2026-12-03T10:00:05+09:00"}}"#
            ),
            _ => format!(
                r#"{{"call_id":"{call}","event":"ended","at":"2026-12-03T10:01:05+09:00","outcome":"answered"}}"#
            ),
        };
        parse_line("t", &line).unwrap().unwrap()
    }

    struct World {
        _dir: tempfile::TempDir,
        outbox: Outbox,
        cache: Cache,
        normalizer: Normalizer,
        rules: LookupRules,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        let (cache, _) = Cache::open(&dir.path().join("cache"), &CacheOptions::default()).unwrap();
        let normalizer = Normalizer::from_codes("JP", &[]).unwrap();
        let records = [
            json!({"attributes": {"type": "Contact"}, "Id": CONTACT, "Name": "Taro", "AccountId": ACCOUNT,
                "Phone": "03-1234-5678", "LastModifiedDate": "2026-01-01T00:00:00.000+0000"}),
            json!({"attributes": {"type": "Lead"}, "Id": LEAD, "Name": "Lee", "Company": "Initech",
                "Phone": "+81 3 1234 5678", "LastModifiedDate": "2026-06-01T00:00:00.000+0000"}),
        ];
        let changes: Vec<Change> = records
            .iter()
            .map(|r| {
                Change::Upsert(
                    callsync_core::record::from_sobject(r, None, &normalizer, &()).unwrap(),
                )
            })
            .collect();
        cache.apply(&changes, &[]).unwrap();
        World {
            _dir: dir,
            outbox,
            cache,
            normalizer,
            rules: LookupRules::default(),
        }
    }

    impl World {
        fn stores(&self) -> Stores<'_> {
            Stores {
                outbox: &self.outbox,
                cache: &self.cache,
                normalizer: &self.normalizer,
                rules: &self.rules,
            }
        }

        fn pipeline<'a>(
            &'a self,
            settings: &'a ActivitySettings,
            assignees: &'a Assignees,
        ) -> Pipeline<'a> {
            Pipeline {
                outbox: &self.outbox,
                cache: Some(&self.cache),
                normalizer: &self.normalizer,
                rules: &self.rules,
                settings: Some(settings),
                meeting: None,
                assignees,
            }
        }

        fn handle(&self, timing: Timing, events: &[CallEvent]) {
            let settings = ActivitySettings {
                timing,
                ..ActivitySettings::default()
            };
            let assignees = Assignees::default();
            self.pipeline(&settings, &assignees).handle(events).unwrap();
        }

        /// (op, WhoId, WhatId) of each queued item of the call.
        fn queued(&self, call: &str) -> Vec<(Op, Value, Value)> {
            self.outbox
                .items()
                .unwrap()
                .into_iter()
                .filter(|i| i.call_id == call)
                .map(|i| {
                    let f = |k: &str| i.fields.get(k).cloned().unwrap_or(Value::Null);
                    (i.op, f("WhoId"), f("WhatId"))
                })
                .collect()
        }
    }

    #[test]
    fn after_begin_the_pick_follows_the_queued_create_then_updates_the_written_task() {
        let w = world();
        w.handle(
            Timing::AfterBegin,
            &[ev("c1", "ringing"), ev("c1", "answered")],
        );
        assert_eq!(
            w.queued("c1"),
            vec![(Op::Create, json!(CONTACT), json!(ACCOUNT))]
        );
        // Queued, not sent: merged into the create (a Lead clears WhatId).
        let p = w.stores().pick("c1", LEAD, 1_000).unwrap();
        assert_eq!(p.task, TaskLink::Updated);
        assert_eq!(w.queued("c1"), vec![(Op::Create, json!(LEAD), Value::Null)]);
        // The end completes the Task on the chosen record, not the rule's.
        w.handle(Timing::AfterBegin, &[ev("c1", "ended")]);
        assert_eq!(w.queued("c1"), vec![(Op::Create, json!(LEAD), Value::Null)]);
        // Written: a later pick is an update of WhoId and WhatId only.
        let item = w.outbox.items().unwrap().remove(0);
        w.outbox.done(&item, Some("00T000000000001AAA")).unwrap();
        w.stores().pick("c1", CONTACT, 2_000).unwrap();
        let items = w.outbox.items().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].op, Op::Update);
        assert_eq!(
            items[0].fields.keys().collect::<Vec<_>>(),
            vec!["WhatId", "WhoId"]
        );
        assert_eq!(
            w.queued("c1"),
            vec![(Op::Update, json!(CONTACT), json!(ACCOUNT))]
        );
    }

    #[test]
    fn after_end_a_pick_before_the_end_writes_the_task_there_and_the_number_remembers() {
        let w = world();
        w.handle(
            Timing::AfterEnd,
            &[ev("c1", "ringing"), ev("c1", "answered")],
        );
        assert!(w.queued("c1").is_empty());
        let p = w
            .stores()
            .pick("c1", LEAD, chrono::Utc::now().timestamp_millis())
            .unwrap();
        assert_eq!((p.task, p.remembered), (TaskLink::WhenWritten, true));
        w.handle(Timing::AfterEnd, &[ev("c1", "ended")]);
        assert_eq!(w.queued("c1"), vec![(Op::Create, json!(LEAD), Value::Null)]);
        // The next call from the number goes to the choice.
        let r = w.stores().lookup("03-1234-5678").unwrap();
        assert_eq!(r.best.unwrap().id.as_str(), LEAD);
        assert!(r.chosen_at.is_some());
        w.handle(
            Timing::AfterEnd,
            &[ev("c2", "ringing"), ev("c2", "answered"), ev("c2", "ended")],
        );
        assert_eq!(w.queued("c2"), vec![(Op::Create, json!(LEAD), Value::Null)]);
    }

    #[test]
    fn a_pick_must_name_a_known_call_and_one_of_its_matches() {
        let w = world();
        w.handle(Timing::AfterEnd, &[ev("c1", "ringing")]);
        let e = w.stores().pick("nope", LEAD, 0).unwrap_err();
        assert!(matches!(e, PickError::NoSuchCall(_)), "{e}");
        let e = w.stores().pick("c1", "001000000000009AAA", 0).unwrap_err();
        assert!(
            e.to_string().contains(CONTACT) && e.to_string().contains(LEAD),
            "{e}"
        );
        let e = w.stores().pick("c1", "x", 0).unwrap_err();
        assert!(matches!(e, PickError::BadId(_)), "{e}");
        // Nothing changed: the rule still decides.
        assert!(w.outbox.call("c1").unwrap().unwrap().chosen.is_none());
    }

    #[test]
    fn a_relink_moves_a_task_queued_unlinked_and_leaves_a_pick_alone() {
        let w = world();
        // The call's Task was queued while the cache did not know the number yet.
        w.handle(Timing::AfterBegin, &[ev("c1", "ringing")]);
        let mut rec = w.outbox.call("c1").unwrap().unwrap();
        rec.summary.info.remote = "03-1234-5678".into();
        w.outbox.put_call(&rec).unwrap();
        w.outbox
            .enqueue(
                "c1",
                Op::Create,
                [("Subject".to_owned(), json!("x"))].into(),
            )
            .unwrap();
        let mut rec = w.outbox.call("c1").unwrap().unwrap();
        rec.created = true;
        w.outbox.put_call(&rec).unwrap();
        let found = w.stores().relink("c1").unwrap().unwrap();
        assert_eq!(found.id.as_str(), CONTACT);
        assert_eq!(
            w.queued("c1"),
            vec![(Op::Create, json!(CONTACT), json!(ACCOUNT))]
        );
        w.stores().pick("c1", LEAD, 0).unwrap();
        assert_eq!(w.stores().relink("c1").unwrap(), None);
        assert_eq!(w.queued("c1"), vec![(Op::Create, json!(LEAD), Value::Null)]);
    }

    /// Salesforce's side of the queue: what a send of the first due item does to the Task.
    fn send_first(w: &World, task: &mut Option<serde_json::Map<String, Value>>) {
        let Some(item) = w.outbox.due(i64::MAX, 1).unwrap().into_iter().next() else {
            return;
        };
        let t = task.get_or_insert_with(Default::default);
        if item.op == Op::Create {
            assert!(t.is_empty(), "a second create for the call: {item:?}");
        }
        for (k, v) in &item.fields {
            t.insert(k.clone(), v.clone());
        }
        // The lead rule Salesforce enforces on every write (see the simulated org).
        let who_lead = t
            .get("WhoId")
            .and_then(Value::as_str)
            .is_some_and(|w| w.starts_with("00Q"));
        let what = t.get("WhatId").is_some_and(|v| !v.is_null());
        assert!(!(who_lead && what), "a Lead with a WhatId: {t:?}");
        w.outbox.done(&item, Some("00T000000000001AAA")).unwrap();
    }

    #[derive(Clone, Debug)]
    enum Step {
        Event(&'static str),
        Pick(bool),
        Send,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            prop::sample::select(vec!["ringing", "answered", "ended"]).prop_map(Step::Event),
            any::<bool>().prop_map(Step::Pick),
            Just(Step::Send),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Picks racing the call's events and the sends, in any order: once everything is
        /// sent there is one Task, on the last record picked (or the rule's winner), and no
        /// write ever left a Lead with a WhatId.
        #[test]
        fn the_task_ends_on_the_last_pick_whatever_the_order(
            steps in proptest::collection::vec(step(), 1..14),
            after_begin in proptest::prelude::any::<bool>(),
        ) {
            let w = world();
            let timing = if after_begin { Timing::AfterBegin } else { Timing::AfterEnd };
            let mut task = None;
            let mut last_pick: Option<&str> = None;
            // The call exists from its first event on.
            w.handle(timing, &[ev("c1", "ringing")]);
            for s in &steps {
                match s {
                    Step::Event(kind) => w.handle(timing, &[ev("c1", kind)]),
                    Step::Pick(lead) => {
                        let id = if *lead { LEAD } else { CONTACT };
                        w.stores().pick("c1", id, 0).unwrap();
                        last_pick = Some(id);
                    }
                    Step::Send => send_first(&w, &mut task),
                }
            }
            w.handle(timing, &[ev("c1", "answered"), ev("c1", "ended")]);
            while !w.outbox.items().unwrap().is_empty() {
                send_first(&w, &mut task);
            }
            let t = task.expect("the call's Task");
            let (who, what) = match last_pick.unwrap_or(CONTACT) {
                LEAD => (json!(LEAD), Value::Null),
                _ => (json!(CONTACT), json!(ACCOUNT)),
            };
            proptest::prop_assert_eq!(&t["WhoId"], &who, "{:?}", t);
            proptest::prop_assert_eq!(t.get("WhatId").cloned().unwrap_or(Value::Null), what, "{:?}", t);
        }
    }

    #[test]
    fn an_unknown_caller_gets_one_record_per_number_and_its_tasks_wait_for_it() {
        use callsync_core::activity::UnknownCaller;
        use callsync_store::outbox::SObject;
        let w = world();
        let settings = ActivitySettings {
            unknown_caller: UnknownCaller::CreateLead,
            ..ActivitySettings::default()
        };
        let assignees = Assignees::default();
        let p = w.pipeline(&settings, &assignees);
        let call = |id: &str, remote: &str| {
            ["ringing", "answered", "ended"].map(|k| {
                let mut e = ev(id, k);
                if let Some(i) = e.info.as_mut() {
                    i.remote = remote.into();
                }
                e
            })
        };
        p.handle(&call("u1", "03-9999-0001")).unwrap();
        p.handle(&call("u2", "+81 3 9999 0001")).unwrap();
        // An extension is no full number: no record for it.
        p.handle(&call("x1", "201")).unwrap();
        let items = w.outbox.items().unwrap();
        let leads: Vec<_> = items.iter().filter(|i| i.object == SObject::Lead).collect();
        assert_eq!(leads.len(), 1, "{items:?}");
        assert_eq!(leads[0].call_id, "+81399990001");
        assert_eq!(leads[0].fields["Phone"], json!("+81 3-9999-0001"));
        assert_eq!(leads[0].fields["LastName"], json!("Unknown caller"));
        assert_eq!(leads[0].fields["Company"], json!("Unknown"));
        for call in ["u1", "u2"] {
            assert_eq!(w.queued(call)[0].1, json!("@Lead:+81399990001"), "{call}");
        }
        assert_eq!(w.queued("x1")[0].1, Value::Null);
        // Once written, the next call from the number reuses it.
        w.outbox.done(leads[0], Some("00Q000000000777AAA")).unwrap();
        p.handle(&call("u3", "03-9999-0001")).unwrap();
        assert_eq!(w.queued("u3")[0].1, json!("00Q000000000777AAA"));
        let leads = w
            .outbox
            .items()
            .unwrap()
            .into_iter()
            .filter(|i| i.object == SObject::Lead)
            .count();
        assert_eq!(leads, 0);
        // A known number never gets one.
        p.handle(&call("k1", "03-1234-5678")).unwrap();
        assert_eq!(w.queued("k1")[0].1, json!(CONTACT));

        // A refresh finds the caller after the Task was queued on a record to make: the Task
        // moves to the one found, and nothing names the record to make any more (the writer
        // then drops it unsent).
        p.handle(&call("u4", "03-7777-0042")).unwrap();
        let placeholder = SObject::Lead.placeholder("+81377770042");
        assert_eq!(w.queued("u4")[0].1, json!(placeholder));
        let found = callsync_core::record::from_sobject(
            &json!({"attributes": {"type": "Contact"}, "Id": "003000000000042AAA", "Name": "Found",
                "Phone": "03-7777-0042", "LastModifiedDate": "2026-01-01T00:00:00.000+0000"}),
            None,
            &w.normalizer,
            &(),
        )
        .unwrap();
        w.cache.apply(&[Change::Upsert(found)], &[]).unwrap();
        assert!(w.outbox.placeholders().unwrap().contains(&placeholder));
        w.stores().relink("u4").unwrap().unwrap();
        assert_eq!(w.queued("u4")[0].1, json!("003000000000042AAA"));
        assert!(!w.outbox.placeholders().unwrap().contains(&placeholder));
    }
}
