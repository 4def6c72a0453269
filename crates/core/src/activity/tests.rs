use super::*;
use crate::lookup::DisplayName;
use crate::record::ObjectKind;

fn id(s: &str) -> RecordId {
    RecordId::parse(s).unwrap()
}

fn at(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn call(direction: Direction, outcome: Option<Outcome>) -> CallSummary {
    CallSummary {
        call_id: "c-1".into(),
        info: CallInfo {
            direction,
            remote: "03-1234-5678".into(),
            local: None,
            agent: Some("taro".into()),
            origin: Origin::Manual,
            record_id: None,
        },
        started: at("2026-11-21T23:58:00+09:00"),
        answered: outcome
            .filter(|o| *o == Outcome::Answered)
            .map(|_| at("2026-11-21T23:58:05+09:00")),
        ended: outcome.map(|_| at("2026-11-22T00:01:05+09:00")),
        outcome,
        duration_s: outcome.map(|o| if o == Outcome::Answered { 180 } else { 0 }),
        transfer: None,
        memo_items: vec!["Quote".into(), "Callback".into()],
        comment: Some("wants a quote".into()),
        transcript: None,
        summary: None,
    }
}

fn m(kind: ObjectKind, person: bool) -> Match {
    Match {
        kind,
        id: id(match kind {
            ObjectKind::Contact => "003000000000001AAA",
            ObjectKind::Account => "001000000000001AAA",
            ObjectKind::Lead => "00Q000000000001AAA",
            ObjectKind::User => "005000000000001AAA",
        }),
        person_account: person,
        field: "Phone".into(),
        display: DisplayName {
            company: None,
            person: None,
        },
        account_id: Some(id("001000000000009AAA")),
        person_contact_id: person.then(|| id("003000000000009AAA")),
        last_modified: 0,
    }
}

fn tokyo() -> ActivitySettings {
    ActivitySettings {
        utc_offset: FixedOffset::east_opt(9 * 3600).unwrap(),
        ..ActivitySettings::default()
    }
}

fn assignees() -> Assignees {
    Assignees {
        default_owner: Some(id("005000000000001AAA")),
        agents: [("taro".to_string(), id("005000000000002AAA"))].into(),
        missed_owner: Some(id("005000000000099AAA")),
        forward_to_destination: true,
    }
}

fn fields(d: Decision) -> Fields {
    match d {
        Decision::Create(f) | Decision::Update(f) => f,
        Decision::Skip(why) => panic!("skipped: {why}"),
    }
}

#[test]
fn who_and_what_by_match_kind() {
    let table = [
        (
            m(ObjectKind::Contact, false),
            Some("003000000000001AAA"),
            Some("001000000000009AAA"),
        ),
        (
            m(ObjectKind::Account, false),
            None,
            Some("001000000000001AAA"),
        ),
        (
            m(ObjectKind::Account, true),
            Some("003000000000009AAA"),
            Some("001000000000001AAA"),
        ),
        (m(ObjectKind::Lead, false), Some("00Q000000000001AAA"), None),
    ];
    for (mm, who, what) in table {
        let t = target_of(&mm);
        assert_eq!(t.who.as_ref().map(RecordId::as_str), who, "{:?}", mm.kind);
        assert_eq!(t.what.as_ref().map(RecordId::as_str), what, "{:?}", mm.kind);
    }
    // No match: both empty, the Task is still created.
    let f = fields(decide(
        &call(Direction::Inbound, Some(Outcome::Answered)),
        Stage::End,
        &Target::default(),
        None,
        "+81 3-1234-5678",
        &ActivitySettings::default(),
        &assignees(),
    ));
    assert!(!f.contains_key("WhoId") && !f.contains_key("WhatId"));
    // A Lead never gets a WhatId even if one is supplied.
    let t = Target {
        who: Some(id("00Q000000000001AAA")),
        what: Some(id("001000000000001AAA")),
    };
    let f = fields(decide(
        &call(Direction::Inbound, Some(Outcome::Answered)),
        Stage::End,
        &t,
        None,
        "n",
        &ActivitySettings::default(),
        &assignees(),
    ));
    assert!(!f.contains_key("WhatId"));
}

#[test]
fn timing_and_call_type_table() {
    use Direction::*;
    use Outcome::*;
    let end = ActivitySettings::default();
    let begin = ActivitySettings {
        timing: Timing::AfterBegin,
        ..ActivitySettings::default()
    };
    #[derive(Debug, PartialEq)]
    enum W {
        Create,
        Update,
        Skip,
    }
    let kind = |d: &Decision| match d {
        Decision::Create(_) => W::Create,
        Decision::Update(_) => W::Update,
        Decision::Skip(_) => W::Skip,
    };
    let mut predictive = call(Outbound, Some(Answered));
    predictive.info.origin = Origin::Predictive;
    let mut predictive_missed = call(Outbound, Some(NoAgent));
    predictive_missed.info.origin = Origin::Predictive;
    let table: Vec<(&str, CallSummary, Stage, &ActivitySettings, W)> = vec![
        (
            "after end: nothing at begin",
            call(Outbound, None),
            Stage::Begin,
            &end,
            W::Skip,
        ),
        (
            "after end: create at end",
            call(Outbound, Some(Answered)),
            Stage::End,
            &end,
            W::Create,
        ),
        (
            "after begin: create at begin",
            call(Inbound, None),
            Stage::Begin,
            &begin,
            W::Create,
        ),
        (
            "after begin: complete at end",
            call(Inbound, Some(Answered)),
            Stage::End,
            &begin,
            W::Update,
        ),
        (
            "voicemail after end",
            call(Inbound, Some(Voicemail)),
            Stage::End,
            &end,
            W::Create,
        ),
        (
            "voicemail after begin: never",
            call(Inbound, Some(Voicemail)),
            Stage::End,
            &begin,
            W::Skip,
        ),
        (
            "internal: never",
            call(Internal, Some(Answered)),
            Stage::End,
            &end,
            W::Skip,
        ),
        (
            "predictive connected after end",
            predictive.clone(),
            Stage::End,
            &end,
            W::Create,
        ),
        (
            "predictive connected after begin: never",
            predictive.clone(),
            Stage::End,
            &begin,
            W::Skip,
        ),
        (
            "predictive at begin: never",
            predictive,
            Stage::Begin,
            &begin,
            W::Skip,
        ),
        (
            "predictive no agent: missed",
            predictive_missed,
            Stage::End,
            &end,
            W::Create,
        ),
        (
            "memo update",
            call(Inbound, Some(Answered)),
            Stage::Update,
            &end,
            W::Update,
        ),
    ];
    for (name, c, stage, s, want) in table {
        let d = decide(&c, stage, &Target::default(), None, "n", s, &assignees());
        assert_eq!(kind(&d), want, "{name}: {d:?}");
    }
}

#[test]
fn fields_for_an_answered_call_after_end() {
    let s = ActivitySettings {
        utc_offset: tokyo().utc_offset,
        custom: CustomFields {
            dial_start: "Dial_Start__c".into(),
            call_start: "Call_Start__c".into(),
            call_end: "Call_End__c".into(),
            memo: "Call_Memo__c".into(),
        },
        ..ActivitySettings::default()
    };
    let f = fields(decide(
        &call(Direction::Outbound, Some(Outcome::Answered)),
        Stage::End,
        &target_of(&m(ObjectKind::Contact, false)),
        None,
        "+81 3-1234-5678",
        &s,
        &assignees(),
    ));
    assert_eq!(f["Subject"], "Outgoing call: +81 3-1234-5678");
    assert_eq!(f["Status"], "Completed");
    assert_eq!(f["TaskSubtype"], "Call");
    assert_eq!(f["CallType"], "Outbound");
    assert_eq!(f["CallObject"], "c-1");
    assert_eq!(f["CallDurationInSeconds"], 180);
    // Created after midnight in Tokyo: the agent's date.
    assert_eq!(f["ActivityDate"], "2026-11-22");
    assert_eq!(f["OwnerId"], "005000000000002AAA");
    assert_eq!(f["Call_Memo__c"], "Quote;Callback");
    assert_eq!(f["Dial_Start__c"], "2026-11-21T14:58:00.000+0000");
    assert_eq!(f["Call_Start__c"], "2026-11-21T14:58:05.000+0000");
    assert_eq!(f["Call_End__c"], "2026-11-21T15:01:05.000+0000");
    let d = f["Description"].as_str().unwrap();
    assert!(
        d.contains("3:00") && d.contains("Quote, Callback") && d.contains("wants a quote"),
        "{d}"
    );
    // Custom fields only after the call ends.
    let begin = ActivitySettings {
        timing: Timing::AfterBegin,
        ..s.clone()
    };
    let f = fields(decide(
        &call(Direction::Outbound, None),
        Stage::Begin,
        &Target::default(),
        None,
        "n",
        &begin,
        &assignees(),
    ));
    assert_eq!(f["CallDurationInSeconds"], 0);
    assert!(!f.contains_key("Call_Memo__c") && !f.contains_key("Dial_Start__c"));
}

#[test]
fn owners_by_the_assignee_settings() {
    let a = assignees();
    let s = ActivitySettings::default();
    let owner_of = |c: &CallSummary, fwd: Option<&RecordId>, a: &Assignees| {
        fields(decide(c, Stage::End, &Target::default(), fwd, "n", &s, a))
            .get("OwnerId")
            .cloned()
    };
    // Mapped agent.
    assert_eq!(
        owner_of(
            &call(Direction::Outbound, Some(Outcome::Answered)),
            None,
            &a
        ),
        Some(json!("005000000000002AAA"))
    );
    // Unmapped agent: the signed-in user.
    let mut c = call(Direction::Outbound, Some(Outcome::Answered));
    c.info.agent = Some("hanako".into());
    assert_eq!(owner_of(&c, None, &a), Some(json!("005000000000001AAA")));
    // Missed incoming and voicemail: the missed-call owner.
    assert_eq!(
        owner_of(&call(Direction::Inbound, Some(Outcome::NoAnswer)), None, &a),
        Some(json!("005000000000099AAA"))
    );
    assert_eq!(
        owner_of(
            &call(Direction::Inbound, Some(Outcome::Voicemail)),
            None,
            &a
        ),
        Some(json!("005000000000099AAA"))
    );
    // Automatic forwarding: the user whose phone is the destination, else the default.
    let mut fwd = call(Direction::Inbound, Some(Outcome::Answered));
    fwd.transfer = Some((TransferKind::AutoForward, "100".into()));
    let u = id("005000000000077AAA");
    assert_eq!(
        owner_of(&fwd, Some(&u), &a),
        Some(json!("005000000000077AAA"))
    );
    assert_eq!(owner_of(&fwd, None, &a), Some(json!("005000000000002AAA")));
    // Forwarding to the destination's user turned off: the agent's own user.
    let no_fwd = Assignees {
        forward_to_destination: false,
        ..a.clone()
    };
    assert_eq!(
        owner_of(&fwd, Some(&u), &no_fwd),
        Some(json!("005000000000002AAA"))
    );
}

/// Every call type × timing × match kind, at the end of the call.
#[test]
fn every_call_type_timing_and_match_kind() {
    use Direction::*;
    use Outcome::*;
    let types: Vec<(CallType, Direction, Outcome, Option<TransferKind>)> = vec![
        (CallType::Outgoing, Outbound, Answered, None),
        (CallType::Incoming, Inbound, Answered, None),
        (
            CallType::TransferInternal,
            Inbound,
            Answered,
            Some(TransferKind::Internal),
        ),
        (
            CallType::TransferExternal,
            Inbound,
            Answered,
            Some(TransferKind::External),
        ),
        (
            CallType::TransferAutoForward,
            Inbound,
            NoAnswer,
            Some(TransferKind::AutoForward),
        ),
        (CallType::Voicemail, Inbound, Voicemail, None),
        (CallType::OutgoingMissed, Outbound, Busy, None),
        (CallType::IncomingMissed, Inbound, NoAnswer, None),
        (CallType::Internal, Internal, Answered, None),
    ];
    type Case<'a> = (&'a str, Option<Match>, Option<&'a str>, Option<&'a str>);
    let matches: Vec<Case> = vec![
        (
            "contact",
            Some(m(ObjectKind::Contact, false)),
            Some("003000000000001AAA"),
            Some("001000000000009AAA"),
        ),
        (
            "account",
            Some(m(ObjectKind::Account, false)),
            None,
            Some("001000000000001AAA"),
        ),
        (
            "person account",
            Some(m(ObjectKind::Account, true)),
            Some("003000000000009AAA"),
            Some("001000000000001AAA"),
        ),
        (
            "lead",
            Some(m(ObjectKind::Lead, false)),
            Some("00Q000000000001AAA"),
            None,
        ),
        ("no match", None, None, None),
    ];
    let custom = CustomFields {
        dial_start: "Dial_Start__c".into(),
        call_start: String::new(),
        call_end: "Call_End__c".into(),
        memo: "Call_Memo__c".into(),
    };
    let fwd = id("005000000000077AAA");
    let mut cases = 0;
    for (t, dir, outcome, transfer) in &types {
        for timing in [Timing::AfterEnd, Timing::AfterBegin] {
            for (mname, mm, who, what) in &matches {
                let s = ActivitySettings {
                    timing,
                    custom: custom.clone(),
                    ..tokyo()
                };
                let mut c = call(*dir, Some(*outcome));
                c.transfer = transfer.map(|k| (k, "100".to_string()));
                assert_eq!(c.call_type(), Some(*t));
                let target = mm.as_ref().map(target_of).unwrap_or_default();
                let d = decide(&c, Stage::End, &target, Some(&fwd), "n", &s, &assignees());
                cases += 1;
                let name = format!("{t:?} / {timing:?} / {mname}");
                let expect_skip = *t == CallType::Internal
                    || (*t == CallType::Voicemail && timing == Timing::AfterBegin);
                let f = match (&d, expect_skip) {
                    (Decision::Skip(_), true) => continue,
                    (Decision::Create(f), false) if timing == Timing::AfterEnd => f,
                    (Decision::Update(f), false) if timing == Timing::AfterBegin => f,
                    _ => panic!("{name}: {d:?}"),
                };
                assert_eq!(f.get("WhoId").and_then(Value::as_str), *who, "{name}");
                assert_eq!(f.get("WhatId").and_then(Value::as_str), *what, "{name}");
                assert_eq!(
                    f["CallType"],
                    if *dir == Outbound {
                        "Outbound"
                    } else {
                        "Inbound"
                    },
                    "{name}"
                );
                assert_eq!(f["TaskSubtype"], "Call", "{name}");
                assert_eq!(f["CallObject"], "c-1", "{name}");
                assert!(
                    f["Subject"].as_str().unwrap().starts_with(label(*t)),
                    "{name}"
                );
                assert_eq!(
                    f.contains_key("Dial_Start__c"),
                    timing == Timing::AfterEnd,
                    "{name}"
                );
                let owner = f["OwnerId"].as_str().unwrap();
                let want_owner = match t {
                    CallType::TransferAutoForward => "005000000000077AAA",
                    CallType::IncomingMissed | CallType::Voicemail => "005000000000099AAA",
                    _ => "005000000000002AAA",
                };
                assert_eq!(owner, want_owner, "{name}");
            }
        }
    }
    assert_eq!(cases, 9 * 2 * 5);
}

#[test]
fn templates_truncate_and_updates_touch_only_owned_fields() {
    let mut c = call(Direction::Inbound, Some(Outcome::Answered));
    c.summary = Some("x".repeat(40_000));
    let f = fields(decide(
        &c,
        Stage::End,
        &Target::default(),
        None,
        "n",
        &ActivitySettings::default(),
        &assignees(),
    ));
    let d = f["Description"].as_str().unwrap();
    assert_eq!(d.chars().count(), DESCRIPTION_MAX);
    assert!(d.ends_with("…[truncated]"));
    assert_eq!(
        truncate(&"s".repeat(300), SUBJECT_MAX).chars().count(),
        SUBJECT_MAX
    );
    let s = ActivitySettings {
        custom: CustomFields {
            memo: "Call_Memo__c".into(),
            ..Default::default()
        },
        ..ActivitySettings::default()
    };
    let f = fields(decide(
        &c,
        Stage::Update,
        &Target::default(),
        None,
        "n",
        &s,
        &assignees(),
    ));
    let keys: Vec<&str> = f.keys().map(String::as_str).collect();
    assert_eq!(keys, ["Call_Memo__c", "Description"]);
    // Unknown placeholders stay visible.
    assert!(
        render("{NOPE} {CALL_TYPE}", &c, c.call_type(), "n").starts_with("{NOPE} Incoming call")
    );
}

#[test]
fn a_relink_sets_or_clears_who_and_what_only() {
    let c = "003000000000001AAA";
    let a = "001000000000001AAA";
    let l = "00Q000000000001AAA";
    let t = |who: Option<&str>, what: Option<&str>| Target {
        who: who.map(id),
        what: what.map(id),
    };
    let table = [
        (
            "contact and its account",
            t(Some(c), Some(a)),
            json!(c),
            json!(a),
        ),
        (
            "a lead clears WhatId",
            t(Some(l), Some(a)),
            json!(l),
            Value::Null,
        ),
        (
            "an account clears WhoId",
            t(None, Some(a)),
            Value::Null,
            json!(a),
        ),
        (
            "nothing clears both",
            t(None, None),
            Value::Null,
            Value::Null,
        ),
    ];
    for (name, target, who, what) in table {
        let f = link_fields(&target);
        assert_eq!(f.len(), 2, "{name}");
        assert_eq!(
            (f["WhoId"].clone(), f["WhatId"].clone()),
            (who, what),
            "{name}"
        );
    }
}

#[test]
fn the_record_for_an_unknown_caller() {
    let mut s = ActivitySettings::default();
    assert_eq!(unknown_caller_record(&s, "+81 3-1234-5678"), None);
    s.unknown_caller = UnknownCaller::CreateLead;
    let (kind, f) = unknown_caller_record(&s, "+81 3-1234-5678").unwrap();
    assert_eq!(kind, ObjectKind::Lead);
    assert_eq!(f["LastName"], json!("Unknown caller"));
    assert_eq!(f["Company"], json!("Unknown"));
    assert_eq!(f["Phone"], json!("+81 3-1234-5678"));
    s.unknown_caller = UnknownCaller::CreateContact;
    let (kind, f) = unknown_caller_record(&s, "+81 3-1234-5678").unwrap();
    assert_eq!(kind, ObjectKind::Contact);
    assert_eq!(f.keys().collect::<Vec<_>>(), vec!["LastName", "Phone"]);
}
