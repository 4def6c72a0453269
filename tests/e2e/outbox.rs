//! The outbox against the simulated org: exact fields, exactly once through dropped
//! connections (with and without an external-id field), retries, parking.

use crate::common;

use callsync_salesforce::client::Client;
use callsync_salesforce::writer::Sender;
use callsync_sim::{Fault, FaultKind, Sim, SimOptions};
use callsync_store::outbox::{Op, Outbox, State};
use serde_json::{json, Value};

struct Rig {
    sim: Sim,
    client: Client,
    outbox: Outbox,
    errors: callsync_store::errorlog::ErrorLog,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let sim = Sim::start(
        SimOptions {
            records: 300,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, store) = common::sign_in(&sim, &dir.path().join("auth.json")).await;
    Rig {
        client: Client::from_store(cfg, store).unwrap(),
        outbox: Outbox::open(&dir.path().join("outbox")).unwrap(),
        errors: callsync_store::errorlog::ErrorLog::new(dir.path().join("errors.jsonl")),
        sim,
        _dir: dir,
    }
}

fn task(call: &str) -> callsync_core::activity::Fields {
    [
        ("Subject", json!(format!("Incoming call: {call}"))),
        ("Status", json!("Completed")),
        ("TaskSubtype", json!("Call")),
        ("CallType", json!("Inbound")),
        ("CallObject", json!(call)),
        ("CallDurationInSeconds", json!(42)),
        ("ActivityDate", json!("2026-11-21")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn tasks_for(sim: &Sim, call: &str) -> Vec<Value> {
    sim.org()
        .rows("Task")
        .into_iter()
        .filter(|t| t["CallObject"] == json!(call))
        .collect()
}

/// Sends until the outbox is empty (or gives up), ignoring backoff waits.
async fn drain(r: &Rig, ext: Option<&str>) {
    let sender = Sender {
        client: &r.client,
        outbox: &r.outbox,
        external_id: ext.map(str::to_owned),
        event_external_id: None,
        errors: Some(&r.errors),
        awaiting_refresh: Default::default(),
    };
    for _ in 0..20 {
        sender.send_due().await.unwrap();
        // Make everything due again (tests do not wait for the backoff).
        for mut i in r.outbox.items().unwrap() {
            if i.state == State::Pending {
                i.not_before = 0;
                r.outbox.put(&i).unwrap();
            }
        }
        if r.outbox.counts().unwrap().0 == 0 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_through_dropped_connections_with_and_without_an_external_id() {
    let r = rig().await;
    for (ext, call) in [(Some("Call_Id__c"), "call-ext"), (None, "call-plain")] {
        r.sim.org().faults = vec![Fault {
            kind: FaultKind::CommitThenDrop,
            method: Some(if ext.is_some() { "PATCH" } else { "POST" }.into()),
            path_contains: Some("/sobjects/Task".into()),
            skip: 0,
            times: Some(2),
            latency_ms: 0,
            probability: None,
        }];
        r.outbox.enqueue(call, Op::Create, task(call)).unwrap();
        drain(&r, ext).await;
        let t = tasks_for(&r.sim, call);
        assert_eq!(t.len(), 1, "{call}: {t:#?}");
        assert_eq!(t[0]["CallDurationInSeconds"], 42);
        assert_eq!(t[0]["TaskSubtype"], "Call");
        if ext.is_some() {
            assert_eq!(t[0]["Call_Id__c"], call);
        }
        // An update later goes to the same Task.
        r.sim.org().faults.clear();
        r.outbox
            .enqueue(
                call,
                Op::Update,
                [("Description".to_string(), json!("memo saved"))].into(),
            )
            .unwrap();
        drain(&r, ext).await;
        let t = tasks_for(&r.sim, call);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0]["Description"], "memo saved");
        assert_eq!(
            t[0]["Subject"],
            format!("Incoming call: {call}"),
            "the update touched only its fields"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_errors_retry_and_permanent_errors_park_with_the_fix() {
    let r = rig().await;
    r.sim.org().faults = vec![Fault {
        kind: FaultKind::UnableToLockRow,
        method: Some("PATCH".into()),
        path_contains: Some("/sobjects/Task".into()),
        skip: 0,
        times: Some(2),
        latency_ms: 0,
        probability: None,
    }];
    r.outbox
        .enqueue("locked", Op::Create, task("locked"))
        .unwrap();
    let sender = Sender {
        client: &r.client,
        outbox: &r.outbox,
        external_id: Some("Call_Id__c".into()),
        event_external_id: None,
        errors: Some(&r.errors),
        awaiting_refresh: Default::default(),
    };
    let rep = sender.send_due().await.unwrap();
    assert_eq!(rep.retried_later, 1);
    let item = &r.outbox.items().unwrap()[0];
    assert!(
        item.not_before > chrono::Utc::now().timestamp_millis(),
        "backs off"
    );
    drain(&r, Some("Call_Id__c")).await;
    assert_eq!(tasks_for(&r.sim, "locked").len(), 1);

    // A value Salesforce refuses: parked, explained, kept.
    let mut bad = task("bad");
    bad.insert("CallType".into(), json!("Sideways"));
    r.outbox.enqueue("bad", Op::Create, bad).unwrap();
    drain(&r, Some("Call_Id__c")).await;
    assert_eq!(r.outbox.counts().unwrap(), (0, 1));
    let parked = &r.outbox.items().unwrap()[0];
    match &parked.state {
        State::Parked { code, fix, .. } => {
            assert_eq!(code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
            assert!(fix.contains("queue retry"));
        }
        s => panic!("{s:?}"),
    }
    let log = r.errors.read().unwrap();
    assert!(
        log.iter()
            .any(|e| e.reason.contains("picklist") && e.source.contains("bad")),
        "{log:?}"
    );
    // The admin fixes it (here: the value), and retry sends it.
    let mut fixed = parked.clone();
    fixed.fields.insert("CallType".into(), json!("Inbound"));
    r.outbox.put(&fixed).unwrap();
    r.outbox.retry(None).unwrap();
    drain(&r, Some("Call_Id__c")).await;
    assert_eq!(tasks_for(&r.sim, "bad").len(), 1);

    // Sign-in gone: the pass stops and keeps the work.
    r.outbox
        .enqueue("later", Op::Create, task("later"))
        .unwrap();
    r.sim.org().revoke_refresh_tokens();
    let rep = sender.send_due().await.unwrap();
    assert!(rep.stopped.unwrap().contains("sign-in"));
    assert_eq!(r.outbox.counts().unwrap(), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_send_200_per_call_and_park_only_the_bad_record() {
    for ext in [Some("Call_Id__c"), None] {
        let r = rig().await;
        for i in 0..450 {
            let call = format!("bulk-{i}");
            let mut t = task(&call);
            if i == 77 {
                t.insert("CallType".into(), json!("Sideways"));
            }
            r.outbox.enqueue(&call, Op::Create, t).unwrap();
        }
        let before = r.sim.org().api_calls;
        let sender = Sender {
            client: &r.client,
            outbox: &r.outbox,
            external_id: ext.map(str::to_owned),
            event_external_id: None,
            errors: Some(&r.errors),
            awaiting_refresh: Default::default(),
        };
        let rep = sender.send_due().await.unwrap();
        assert_eq!((rep.sent, rep.parked), (449, 1), "{ext:?}: {rep:?}");
        assert_eq!(
            r.sim.org().api_calls - before,
            3,
            "{ext:?}: 450 records in 3 Collections calls"
        );
        assert_eq!(r.sim.org().rows("Task").len(), 449);
        assert!(tasks_for(&r.sim, "bulk-77").is_empty());

        // A whole Collections request dropped after it committed: no duplicates afterwards.
        for i in 0..30 {
            let call = format!("drop-{i}");
            r.outbox.enqueue(&call, Op::Create, task(&call)).unwrap();
        }
        r.sim.org().faults = vec![Fault {
            kind: FaultKind::CommitThenDrop,
            method: None,
            path_contains: Some("/composite/sobjects".into()),
            skip: 0,
            times: Some(1),
            latency_ms: 0,
            probability: None,
        }];
        drain(&r, ext).await;
        for i in 0..30 {
            assert_eq!(
                tasks_for(&r.sim, &format!("drop-{i}")).len(),
                1,
                "{ext:?} drop-{i}"
            );
        }
    }
}

fn fault(kind: FaultKind, method: &str, path: &str, times: u32, latency_ms: u64) -> Fault {
    Fault {
        kind,
        method: Some(method.into()),
        path_contains: Some(path.into()),
        skip: 0,
        times: Some(times),
        latency_ms,
        probability: None,
    }
}

/// Defect: a create that committed but whose answer was lost was retried as an upsert that
/// matched the Task — an update — still carrying the create-only TaskSubtype; Salesforce
/// refused it and the item was parked for ever, with later memos stuck behind it. Alone and in
/// Collections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_completed_not_parked() {
    let r = rig().await;
    let ext = Some("Call_Id__c");
    for (calls, path) in [
        (vec!["lost-alone"], "/sobjects/Task/Call_Id__c/"),
        (
            vec!["lost-a", "lost-b", "lost-c"],
            "/composite/sobjects/Task/Call_Id__c",
        ),
    ] {
        r.sim.org().faults = vec![fault(FaultKind::CommitThenDrop, "PATCH", path, 1, 0)];
        for c in &calls {
            r.outbox.enqueue(c, Op::Create, task(c)).unwrap();
        }
        drain(&r, ext).await;
        r.sim.org().faults.clear();
        assert_eq!(
            r.outbox.counts().unwrap(),
            (0, 0),
            "{calls:?}: nothing parked"
        );
        for c in &calls {
            let t = tasks_for(&r.sim, c);
            assert_eq!(t.len(), 1, "{c}");
            assert_eq!(t[0]["TaskSubtype"], "Call", "{c}");
            // The memo that follows reaches the same Task.
            r.outbox
                .enqueue(
                    c,
                    Op::Update,
                    [("Description".to_string(), json!("memo"))].into(),
                )
                .unwrap();
        }
        drain(&r, ext).await;
        for c in &calls {
            assert_eq!(tasks_for(&r.sim, c)[0]["Description"], "memo", "{c}");
        }
    }
    assert!(
        r.errors.read().unwrap().is_empty(),
        "{:?}",
        r.errors.read().unwrap()
    );
}

/// Defect: a memo arriving while the create was being sent was merged into the stored item,
/// then the sender settled from its stale copy and deleted (or overwrote) it: the memo never
/// reached Salesforce. Deterministic with a slow org; with and without the external id, alone
/// and in Collections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memo_arriving_during_the_send_is_not_lost() {
    let r = rig().await;
    for ext in [Some("Call_Id__c"), None] {
        for n in [1usize, 3] {
            let calls: Vec<String> = (0..n).map(|i| format!("race-{ext:?}-{n}-{i}")).collect();
            for c in &calls {
                r.outbox.enqueue(c, Op::Create, task(c)).unwrap();
            }
            let (method, path) = match (ext, n) {
                (Some(_), 1) => ("PATCH", "/sobjects/Task/Call_Id__c/"),
                (Some(_), _) => ("PATCH", "/composite/sobjects/Task"),
                (None, 1) => ("POST", "/sobjects/Task"),
                (None, _) => ("POST", "/composite/sobjects"),
            };
            r.sim.org().faults = vec![fault(FaultKind::Latency, method, path, 1, 600)];
            let sender = Sender {
                client: &r.client,
                outbox: &r.outbox,
                external_id: ext.map(str::to_owned),
                event_external_id: None,
                errors: Some(&r.errors),
                awaiting_refresh: Default::default(),
            };
            let memo = async {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                r.outbox
                    .enqueue(
                        &calls[0],
                        Op::Update,
                        [("Description".to_string(), json!("late memo"))].into(),
                    )
                    .unwrap();
            };
            let (rep, ()) = tokio::join!(sender.send_due(), memo);
            let rep = rep.unwrap();
            assert_eq!(rep.sent, n, "{ext:?} {n}: {rep:?}");
            // The memo stays queued as an update of the Task just created.
            let left = r.outbox.items().unwrap();
            assert_eq!(left.len(), 1, "{ext:?} {n}: {left:?}");
            assert_eq!((left[0].op, left[0].fields.len()), (Op::Update, 1));
            r.sim.org().faults.clear();
            drain(&r, ext).await;
            let t = tasks_for(&r.sim, &calls[0]);
            assert_eq!(t.len(), 1);
            assert_eq!(t[0]["Description"], "late memo", "{ext:?} {n}");
            assert_eq!(r.outbox.counts().unwrap(), (0, 0));
        }
    }
}

/// A second create queued for a call whose Task is already written, as an enqueue torn by a
/// kill could leave one behind (the item stored, its entry in the create index not: the
/// call's re-delivered events then queued another create): it goes as an update of that Task,
/// alone or in a Collections batch, never as a second Task. Before the fix, without an
/// external id, the org got two Tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_create_for_a_written_task_is_an_update_not_a_second_task() {
    let r = rig().await;
    for (ext, call, batch) in [
        (None, "torn-plain", false),
        (None, "torn-batch", true),
        (Some("Call_Id__c"), "torn-ext", false),
    ] {
        r.outbox.enqueue(call, Op::Create, task(call)).unwrap();
        drain(&r, ext).await;
        assert_eq!(tasks_for(&r.sim, call).len(), 1);
        // What the torn enqueue left: a create item for the call that the index never knew.
        let seq = r
            .outbox
            .enqueue(call, Op::Update, Default::default())
            .unwrap();
        let mut fields = task(call);
        fields.insert("Description".into(), json!("memo after a kill"));
        let mut torn = r
            .outbox
            .items()
            .unwrap()
            .into_iter()
            .find(|i| i.seq == seq)
            .unwrap();
        torn.op = Op::Create;
        torn.fields = fields;
        r.outbox.put(&torn).unwrap();
        if batch {
            // Another call's create beside it: the Collections path.
            r.outbox
                .enqueue("torn-other", Op::Create, task("torn-other"))
                .unwrap();
        }
        drain(&r, ext).await;
        let t = tasks_for(&r.sim, call);
        assert_eq!(t.len(), 1, "{call}: {t:#?}");
        assert_eq!(t[0]["Description"], "memo after a kill", "{call}");
        assert_eq!(r.outbox.counts().unwrap(), (0, 0), "{call}");
    }
    assert_eq!(tasks_for(&r.sim, "torn-other").len(), 1);
}
