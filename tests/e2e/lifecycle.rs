//! The integration lifecycle with real processes against the simulated org: settings groups
//! (set, locks, export/import), disconnect with a backup, restore by the seed's rules and its
//! check against the org, and `callsync doctor` with each failure it explains.

use std::path::Path;

use callsync_sim::{Fault, FaultKind, Sim, SimOptions};
use serde_json::{json, Value};

use crate::common;
use common::{command as cmd, connect_cli, free_port};

fn run(d: &Path, args: &[&str]) -> (i32, String, String) {
    let out = cmd(d).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(d: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(d, args);
    assert_eq!(code, 0, "{args:?}: {out}\n{err}");
    out
}

fn settings(d: &Path) -> Value {
    serde_json::from_str(&ok(d, &["settings", "show", "--json"])).unwrap()
}

/// The effective value of `key` in `settings show --json`.
fn value(s: &Value, key: &str) -> Value {
    if key == "sync.contact_retrieval" {
        return s["contact_retrieval"]["value"].clone();
    }
    let group = key.split('.').next().unwrap();
    s["groups"][group]["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .map(|e| e["value"].clone())
        .unwrap_or_else(|| panic!("{key} not shown"))
}

fn user_file(d: &Path, sim: &Sim, port: u16, extra: &str) {
    std::fs::write(
        d.join("user.toml"),
        format!(
            "[salesforce]\nlogin_url = \"{}\"\nclient_id = \"callsync-sim-client\"\nredirect_port = {port}\n[auth]\nstore = \"file\"\n{extra}",
            sim.url()
        ),
    )
    .unwrap();
}

async fn sim() -> Sim {
    Sim::start(
        SimOptions {
            records: 60,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_groups_backup_and_restore_by_the_seeds_rules() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let port = free_port();
    user_file(&d, &sim, port, "");
    let user = sim.org().rows("User")[0]["Id"].as_str().unwrap().to_owned();
    let agents = format!("{{taro = \"{user}\"}}");
    // IT locks the Task status.
    std::fs::write(
        d.join("managed.toml"),
        "[activity]\nstatus = \"Completed\"\n[policy]\nlocked = [\"activity.status\"]\n",
    )
    .unwrap();

    // No backup yet: restore says so and changes nothing.
    let (code, _, err) = run(&d, &["settings", "restore"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("no settings backup"), "{err}");
    assert!(!d.join("data/settings.json").exists());

    // Set, validated; locked and unknown keys refused.
    for (k, v) in [
        ("activity.subject", "Call {REMOTE_NUMBER}"),
        ("activity.memo_field", "Call_Memo__c"),
        ("activity.timing", "after_begin"),
        ("meeting.enabled", "true"),
        ("meeting.recording_url_field", "Recording_URL__c"),
        ("assignee.agents", &agents),
        ("sync.contact_retrieval", "false"),
    ] {
        ok(&d, &["settings", "set", k, v]);
    }
    let (code, _, err) = run(&d, &["settings", "set", "activity.status", "Open"]);
    assert_eq!(code, 2);
    assert!(err.contains("locked by your IT department"), "{err}");
    let (code, _, err) = run(&d, &["settings", "set", "activity.timing", "sometimes"]);
    assert_eq!(code, 2);
    assert!(err.contains("after_end"), "{err}");
    let (code, _, err) = run(&d, &["settings", "set", "meeting.enabeld", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `meeting.enabled`"), "{err}");
    let (code, _, err) = run(&d, &["settings", "set", "phone.default_region", "US"]);
    assert_eq!(code, 2);
    assert!(err.contains("not an integration setting"), "{err}");
    let s = settings(&d);
    assert_eq!(value(&s, "activity.timing"), "after_begin");
    assert_eq!(s["groups"]["meeting"]["enabled"], true);
    let status = s["groups"]["activity"]["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "activity.status")
        .unwrap()
        .clone();
    assert_eq!(status["locked"], true);
    assert!(s["store"]["revision"].as_u64().unwrap() >= 7);
    // The store is a real configuration layer: `config show` sees it too.
    assert!(ok(&d, &["config", "show"]).contains("activity.timing = \"after_begin\""));

    // Export → import on a "second PC" reproduces the settings.
    let exported = d.join("settings-export.toml");
    ok(&d, &["settings", "export", exported.to_str().unwrap()]);
    let pc2 = tempfile::tempdir().unwrap();
    user_file(pc2.path(), &sim, port, "");
    ok(
        pc2.path(),
        &["settings", "import", exported.to_str().unwrap()],
    );
    let s2 = settings(pc2.path());
    for k in [
        "activity.subject",
        "activity.timing",
        "meeting.enabled",
        "assignee.agents",
        "sync.contact_retrieval",
    ] {
        assert_eq!(value(&s2, k), value(&s, k), "{k}");
    }
    // A bad file changes nothing.
    std::fs::write(
        d.join("bad.toml"),
        "[activity]\ntiming = \"never\"\nsubject = \"x\"\n",
    )
    .unwrap();
    let before = settings(pc2.path())["store"]["revision"].clone();
    let (code, _, err) = run(
        pc2.path(),
        &["settings", "import", d.join("bad.toml").to_str().unwrap()],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(settings(pc2.path())["store"]["revision"], before);

    // Disconnect: backup (with the enabled states) and the token revoked.
    connect_cli(&d, &[]).await;
    let out = ok(&d, &["disconnect"]);
    assert!(out.contains("settings backed up"), "{out}");
    let backup: Value =
        serde_json::from_slice(&std::fs::read(d.join("data/settings-backup.json")).unwrap())
            .unwrap();
    assert_eq!(backup["org_id"], "00DSIM000000001AAA");
    assert_eq!(backup["groups"]["meeting"]["enabled"], true);
    assert_eq!(backup["contact_retrieval"], false);

    // Everything changes after the disconnect…
    for (k, v) in [
        ("activity.subject", "changed"),
        ("activity.timing", "after_end"),
        ("meeting.recording_url_field", ""),
        ("meeting.enabled", "false"),
        ("assignee.agents", "{}"),
        ("sync.contact_retrieval", "true"),
    ] {
        ok(&d, &["settings", "set", k, v]);
    }
    // …and the restore puts back every group (enabled) but not contact retrieval.
    connect_cli(&d, &[]).await;
    let (code, out, err) = run(&d, &["settings", "restore"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Checked against the org: every setting can be used"),
        "{out}"
    );
    let s = settings(&d);
    assert_eq!(value(&s, "activity.subject"), "Call {REMOTE_NUMBER}");
    assert_eq!(value(&s, "activity.timing"), "after_begin");
    assert_eq!(value(&s, "meeting.enabled"), true);
    assert_eq!(value(&s, "meeting.recording_url_field"), "Recording_URL__c");
    assert_eq!(value(&s, "assignee.agents")["taro"], user.as_str());
    assert_eq!(
        value(&s, "sync.contact_retrieval"),
        true,
        "contact retrieval must not be restored"
    );

    // Second backup, with both integration groups disabled: it replaces the first.
    ok(&d, &["settings", "set", "activity.enabled", "false"]);
    ok(&d, &["settings", "set", "meeting.enabled", "false"]);
    ok(&d, &["settings", "set", "assignee.enabled", "false"]);
    let out = ok(&d, &["disconnect"]);
    assert!(out.contains("replacing the backup of"), "{out}");
    ok(&d, &["settings", "set", "activity.enabled", "true"]);
    ok(&d, &["settings", "set", "meeting.enabled", "true"]);
    ok(&d, &["settings", "set", "assignee.enabled", "true"]);
    let (code, out, err) = run(&d, &["settings", "restore"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Not checked against the org: not signed in"),
        "{out}"
    );
    let s = settings(&d);
    // Disabled groups come back disabled; the Task-object and meeting settings reset; the rest
    // of the activity group and the assignee settings as backed up.
    assert_eq!(value(&s, "activity.enabled"), false);
    assert_eq!(
        value(&s, "activity.subject"),
        "{CALL_TYPE}: {REMOTE_NUMBER}"
    );
    assert_eq!(value(&s, "activity.memo_field"), "");
    assert_eq!(value(&s, "activity.timing"), "after_begin");
    assert_eq!(value(&s, "meeting.enabled"), false);
    assert_eq!(value(&s, "meeting.recording_url_field"), "");
    assert_eq!(value(&s, "assignee.enabled"), false);
    assert_eq!(value(&s, "assignee.agents")["taro"], user.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_is_checked_against_the_org_and_another_orgs_backup_is_flagged() {
    let a = sim().await;
    let b = common::other_org(60).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let port = free_port();
    user_file(&d, &a, port, "");
    // Settings that hold in org A but not in org B.
    a.org().add_custom_field(
        "Task",
        "Org_A_Memo__c",
        callsync_sim::FieldType::Multipicklist,
    );
    ok(
        &d,
        &["settings", "set", "activity.memo_field", "Org_A_Memo__c"],
    );
    ok(
        &d,
        &[
            "settings",
            "set",
            "assignee.agents",
            "{taro = \"005000000000999AAA\"}",
        ],
    );
    connect_cli(&d, &[]).await;
    ok(&d, &["disconnect"]);
    user_file(&d, &b, port, "");
    connect_cli(&d, &[]).await;
    let (code, out, err) = run(&d, &["settings", "restore"]);
    assert!(
        err.contains("the backup is from org 00DSIM000000001AAA"),
        "{err}"
    );
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        out.contains("activity.memo_field: Task has no field Org_A_Memo__c"),
        "{out}"
    );
    assert!(
        out.contains("fix: Create the custom field on Task"),
        "{out}"
    );
    assert!(
        out.contains("assignee.agents.taro: no User 005000000000999AAA"),
        "{out}"
    );
    let (_, out, _) = run(&d, &["settings", "restore", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errors"].as_array().unwrap().len(), 2, "{v}");
}

fn doctor(d: &Path) -> (bool, Vec<Value>) {
    let (code, out, err) = run(d, &["doctor", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(code == 0, v["ok"] == true, "exit code and verdict agree");
    (v["ok"] == true, v["checks"].as_array().unwrap().clone())
}

fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
}

fn failing(checks: &[Value]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn admin(sim: &Sim, path: &str, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_explains_every_failure_with_its_fix() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let log = d.join("calls.jsonl");
    std::fs::write(&log, "").unwrap();
    let extra = format!(
        "[calllog]\nsources = [{{ kind = \"native\", path = {} }}]\n[activity]\nmemo_field = \"Call_Memo__c\"\nexternal_id_field = \"Call_Id__c\"\n",
        common::toml_str(&log)
    );
    let port = free_port();
    user_file(&d, &sim, port, &extra);

    // Not signed in.
    let (ok_, checks) = doctor(&d);
    assert!(!ok_);
    assert!(find(&checks, "sign-in")["fix"]
        .as_str()
        .unwrap()
        .contains("callsync connect"));

    // Signed in, but the cache was never filled.
    connect_cli(&d, &[]).await;
    let (_, checks) = doctor(&d);
    assert_eq!(failing(&checks), ["cache"], "{checks:#?}");
    ok(&d, &["sync"]);
    let (healthy, checks) = doctor(&d);
    assert!(healthy, "{checks:#?}");
    for name in [
        "proxy",
        "trust roots",
        "route to Salesforce",
        "clock",
        "sign-in",
        "API access",
        "API budget",
        "read access",
        "person accounts",
        "integration settings",
        "call log native",
        "disk space",
        "cache",
        "Task queue",
    ] {
        assert_eq!(find(&checks, name)["ok"], true, "{name}");
    }
    assert!(find(&checks, "person accounts")["detail"]
        .as_str()
        .unwrap()
        .starts_with("enabled"));
    assert!(find(&checks, "read access")["detail"]
        .as_str()
        .unwrap()
        .contains("Contact, Account, Lead, User"));

    // A configured field the org lacks, one the user cannot write, a non-external-id key.
    sim.org().remove_custom_field("Task", "Call_Memo__c");
    let (_, checks) = doctor(&d);
    assert_eq!(failing(&checks), ["activity.memo_field"]);
    assert!(find(&checks, "activity.memo_field")["fix"]
        .as_str()
        .unwrap()
        .contains("Create the custom field on Task"));
    sim.org().add_custom_field(
        "Task",
        "Call_Memo__c",
        callsync_sim::FieldType::Multipicklist,
    );
    admin(
        &sim,
        "/__sim/config",
        json!({"readonly_fields": ["Task.Call_Memo__c"]}),
    )
    .await;
    let (_, checks) = doctor(&d);
    assert_eq!(failing(&checks), ["activity.memo_field"]);
    assert!(find(&checks, "activity.memo_field")["detail"]
        .as_str()
        .unwrap()
        .contains("read-only"));
    assert!(find(&checks, "activity.memo_field")["fix"]
        .as_str()
        .unwrap()
        .contains("Field-Level Security"));
    admin(&sim, "/__sim/config", json!({"readonly_fields": []})).await;

    // No access: Contacts cannot be read, Tasks cannot be created.
    admin(
        &sim,
        "/__sim/config",
        json!({"denied": {"Contact": ["read"], "Task": ["create"]}}),
    )
    .await;
    let (_, checks) = doctor(&d);
    assert_eq!(failing(&checks), ["read access", "Task"], "{checks:#?}");
    assert!(find(&checks, "read access")["detail"]
        .as_str()
        .unwrap()
        .contains("cannot read Contact"));
    assert!(find(&checks, "Task")["fix"]
        .as_str()
        .unwrap()
        .contains("Create permission on Task"));
    admin(&sim, "/__sim/config", json!({"denied": {}})).await;

    // The Salesforce clock disagrees with ours.
    admin(&sim, "/__sim/clock", json!({"advance_secs": 600})).await;
    let (_, checks) = doctor(&d);
    assert_eq!(failing(&checks), ["clock"]);
    assert!(find(&checks, "clock")["detail"]
        .as_str()
        .unwrap()
        .contains("behind Salesforce"));
    assert!(find(&checks, "clock")["fix"]
        .as_str()
        .unwrap()
        .contains("NTP"));
    admin(&sim, "/__sim/clock", json!({"advance_secs": -600})).await;

    // API disabled for the user.
    sim.org().faults = vec![Fault {
        kind: FaultKind::ApiDisabled,
        method: None,
        path_contains: Some("/limits".into()),
        skip: 0,
        times: None,
        latency_ms: 0,
        probability: None,
    }];
    let (_, checks) = doctor(&d);
    assert_eq!(failing(&checks), ["API access"]);
    assert!(find(&checks, "API access")["fix"]
        .as_str()
        .unwrap()
        .contains("API Enabled"));
    sim.org().faults.clear();

    // The connected app is blocked (seed step 3-2-1), then not installed (steps 4–6).
    admin(
        &sim,
        "/__sim/config",
        json!({"authorize_error": ["OAUTH_APP_BLOCKED", "this app is blocked by admin"]}),
    )
    .await;
    let (_, checks) = doctor(&d);
    let signin = find(&checks, "sign-in");
    assert_eq!(signin["ok"], false);
    assert!(
        signin["fix"].as_str().unwrap().contains("Unblock"),
        "{signin}"
    );
    admin(
        &sim,
        "/__sim/config",
        json!({"authorize_error": ["invalid_client", "app must be installed into org"]}),
    )
    .await;
    let (_, checks) = doctor(&d);
    assert!(find(&checks, "sign-in")["fix"]
        .as_str()
        .unwrap()
        .contains("Approve Uninstalled Connected Apps"));
    admin(&sim, "/__sim/config", json!({"authorize_error": []})).await;

    // A call log whose folder is gone; a Task parked on a permanent error.
    let extra2 = extra.replace(log.to_str().unwrap(), "/nonexistent/dir/calls.jsonl");
    user_file(&d, &sim, port, &extra2);
    let outbox = callsync_store::outbox::Outbox::open(&d.join("data/outbox")).unwrap();
    let seq = outbox
        .enqueue(
            "c1",
            callsync_store::outbox::Op::Create,
            [("Subject".to_string(), json!("x"))].into(),
        )
        .unwrap();
    let mut item = outbox
        .items()
        .unwrap()
        .into_iter()
        .find(|i| i.seq == seq)
        .unwrap();
    item.state = callsync_store::outbox::State::Parked {
        code: "FIELD_CUSTOM_VALIDATION_EXCEPTION".into(),
        message: "m".into(),
        explanation: "e".into(),
        fix: "f".into(),
    };
    outbox.put(&item).unwrap();
    outbox.flush().unwrap();
    drop(outbox);
    let (_, checks) = doctor(&d);
    assert_eq!(
        failing(&checks),
        ["call log native", "Task queue"],
        "{checks:#?}"
    );
    assert!(find(&checks, "Task queue")["fix"]
        .as_str()
        .unwrap()
        .contains("callsync queue retry"));
    // People read it too.
    let (code, out, _) = run(&d, &["doctor"]);
    assert_eq!(code, 4);
    assert!(out.contains("FAIL Task queue"), "{out}");

    // The refresh token revoked (a password reset, or the user's "Connected Apps" page): the
    // doctor names Salesforce's code and says to sign in again.
    sim.org().revoke_refresh_tokens();
    let (_, checks) = doctor(&d);
    let signin = find(&checks, "sign-in");
    assert_eq!(signin["ok"], false);
    assert!(
        signin["detail"]
            .as_str()
            .unwrap()
            .contains("sign-in needed: invalid_grant: expired access/refresh token"),
        "{signin}"
    );
    assert!(
        signin["fix"]
            .as_str()
            .unwrap()
            .contains("expired or already used"),
        "{signin}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_become_events_exactly_once() {
    use callsync_salesforce::writer::Sender;
    use callsync_store::outbox::Outbox;
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cfg, store) = common::sign_in(&sim, &d.join("auth.json")).await;
    let client = callsync_salesforce::client::Client::from_store(cfg, store).unwrap();
    let (cache, _) =
        callsync_store::cache::Cache::open(&d.join("cache"), &Default::default()).unwrap();
    let n = callsync_core::phone::Normalizer::from_codes("JP", &[]).unwrap();
    let rules = callsync_core::lookup::LookupRules::default();
    callsync_salesforce::sync::SyncEngine {
        client: &client,
        cache: &cache,
        normalizer: &n,
        rules: &rules,
        settings: Default::default(),
    }
    .run(false, &mut |_, _, _| {})
    .await
    .unwrap();
    let contact = sim
        .org()
        .rows("Contact")
        .into_iter()
        .find(|c| c["Phone"].is_string())
        .unwrap();
    let user = sim.org().rows("User")[0]["Id"].as_str().unwrap().to_owned();

    let outbox = Outbox::open(&d.join("outbox")).unwrap();
    let meeting = callsync_config::MeetingConfig {
        enabled: true,
        recording_url_field: "Recording_URL__c".into(),
        tags_field: "Meeting_Tags__c".into(),
        ..Default::default()
    };
    let mut assignee = callsync_config::AssigneeConfig::default();
    assignee.agents.insert("taro".into(), user.clone());
    let assignees = assignee.assignees(None);
    let line = |id: &str, title: &str| {
        callsync_calllog::native::parse_line(
            "t",
            &json!({"call_id": id, "event": "meeting", "at": "2026-11-21T10:00:00+09:00",
                "end": "2026-11-21T10:30:00+09:00", "title": title, "agent": "taro",
                "remote": contact["Phone"], "recording_url": "https://rec.example/m1",
                "transcript": "we agreed", "tags": ["demo", "pricing"]})
            .to_string(),
        )
        .unwrap()
        .unwrap()
    };
    let ms = meeting.settings();
    let activity = callsync_core::activity::ActivitySettings::default();
    let on = callsync_app::pipeline::Pipeline {
        outbox: &outbox,
        cache: Some(&cache),
        normalizer: &n,
        rules: &rules,
        settings: Some(&activity),
        meeting: Some(&ms),
        assignees: &assignees,
    };
    let off = callsync_app::pipeline::Pipeline {
        meeting: None,
        ..on
    };
    // The meeting integration off: nothing is written.
    off.handle(&[line("m0", "Off")]).unwrap();
    assert!(outbox.items().unwrap().is_empty());
    // On: one Event, even when the line comes twice.
    let m1 = line("m1", "Quarterly review");
    on.handle(&[m1.clone(), m1]).unwrap();
    assert_eq!(outbox.items().unwrap().len(), 1);

    // The first create lands but its answer is lost; the retry finds it (no external id).
    sim.org().faults = vec![Fault {
        kind: FaultKind::CommitThenDrop,
        method: Some("POST".into()),
        path_contains: Some("/sobjects/Event".into()),
        skip: 0,
        times: Some(1),
        latency_ms: 0,
        probability: None,
    }];
    let sender = |ext: Option<&str>| Sender {
        client: &client,
        outbox: &outbox,
        external_id: None,
        event_external_id: ext.map(str::to_owned),
        errors: None,
        awaiting_refresh: Default::default(),
    };
    let r = sender(None).send_due().await.unwrap();
    assert_eq!((r.sent, r.retried_later), (0, 1));
    for mut i in outbox.items().unwrap() {
        i.not_before = 0;
        outbox.put(&i).unwrap();
    }
    assert_eq!(sender(None).send_due().await.unwrap().sent, 1);
    let events = sim.org().rows("Event");
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["Subject"], "Meeting: Quarterly review");
    assert_eq!(e["StartDateTime"], "2026-11-21T01:00:00.000+0000");
    assert_eq!(e["EndDateTime"], "2026-11-21T01:30:00.000+0000");
    assert_eq!(e["WhoId"], contact["Id"]);
    assert_eq!(e["OwnerId"], user.as_str());
    assert_eq!(e["Recording_URL__c"], "https://rec.example/m1");
    assert_eq!(e["Meeting_Tags__c"], "demo;pricing");
    assert!(e["Description"].as_str().unwrap().contains("we agreed"));

    // With the external-id field: upserts on the meeting id, so a second delivery is harmless.
    let m2 = line("m2", "Kick-off");
    on.handle(&[m2]).unwrap();
    assert_eq!(
        sender(Some("Meeting_Id__c")).send_due().await.unwrap().sent,
        1
    );
    let events = sim.org().rows("Event");
    assert_eq!(events.len(), 2);
    assert!(events.iter().any(|e| e["Meeting_Id__c"] == "m2"));
}

#[test]
fn a_support_bundle_has_what_explains_a_problem_and_no_secret_or_number() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("user.toml"), "[auth]\nstore = \"file\"\n").unwrap();
    std::fs::create_dir_all(d.join("data/logs")).unwrap();
    std::fs::write(
        d.join("data/logs/callsync.2026-11-21.log"),
        "2026-11-21T10:00:00Z INFO ringing from 03-1234-5678\nrefresh_token=5Aep861abcdefghijklmnop\n",
    )
    .unwrap();
    std::fs::write(
        d.join("data/errors.jsonl"),
        "{\"at\":\"2026-11-21T10:00:00Z\",\"what\":\"bad number 090-1111-2222\"}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("data/auth.json"),
        "{\"refresh_token\":\"5Aep-secret\"}",
    )
    .unwrap();
    // One Task waiting: the status and the queue in the bundle both show it.
    let outbox = callsync_store::outbox::Outbox::open(&d.join("data/outbox")).unwrap();
    outbox
        .enqueue(
            "c1",
            callsync_store::outbox::Op::Create,
            [("Subject".to_string(), json!("Call"))].into(),
        )
        .unwrap();
    outbox.flush().unwrap();
    drop(outbox);
    let zip_path = d.join("bundle.zip");
    let out = ok(
        d,
        &["support-bundle", "--output", zip_path.to_str().unwrap()],
    );
    assert!(out.contains("phone numbers masked"), "{out}");
    let mut z = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let names: Vec<String> = z.file_names().map(|n| n.unwrap().into_owned()).collect();
    for want in [
        "system.txt",
        "config.json",
        "status.json",
        "queue.json",
        "errors.jsonl",
        "logs/callsync.2026-11-21.log",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.contains("auth.json")), "{names:?}");
    let read = |z: &mut zip::ZipArchive<std::fs::File>, name: &str| -> Value {
        let mut s = String::new();
        z.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        serde_json::from_str(&s).unwrap()
    };
    assert_eq!(read(&mut z, "status.json")["pending_tasks"], 1);
    assert_eq!(read(&mut z, "queue.json").as_array().unwrap().len(), 1);
    let mut all = String::new();
    for i in 0..z.len() {
        z.by_index(i).unwrap().read_to_string(&mut all).unwrap();
    }
    assert!(!all.contains("5Aep"), "a token left in the bundle");
    assert!(
        !all.contains("1234-5678") && all.contains("**-****-5678"),
        "a number left unmasked"
    );
    assert!(!all.contains("1111-2222") && all.contains("2222"));
    assert!(
        all.contains("2026-11-21T10:00:00Z"),
        "timestamps must stay readable"
    );
}
