//! Who is calling, end to end: the agent (`callsync run --headless`) against the simulated org,
//! its screen pops read on a private D-Bus session bus from a test notification server
//! (`tests/common/notifications.rs`). A number created in the org after the last sync pops
//! "Looking up…", replaced by the caller's name within the wait, for one extra API call, and
//! the Task goes on it; the agent picks another match from the pop's button and with `calls
//! pick`, before and after the Task is written, and the next call pops the choice; twenty
//! unknown numbers within seconds share two cycles; an unreachable org pops "Unknown caller"
//! at once; an unknown caller's Lead is made once (answers lost, a kill mid-create) and only
//! after the number's refresh.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use callsync_sim::{Sim, SimOptions};
use serde_json::{json, Value};

use crate::common;
use crate::notifications::{Notifications, Shown};

fn start_agent(d: &Path, bus: &Notifications) -> Child {
    common::command(d)
        .args(["run", "--headless"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn status(d: &Path) -> Value {
    let out = common::command(d)
        .args(["status", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// What `callsync lookup NUMBER` prints (the cache's answer; the agent's when it runs).
fn lookup(d: &Path, number: &str) -> String {
    let out = common::command(d)
        .args(["lookup", number])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn end(call_id: &str) -> String {
    let at = chrono::Utc::now().fixed_offset().to_rfc3339();
    format!(
        "{{\"call_id\":\"{call_id}\",\"event\":\"answered\",\"at\":\"{at}\"}}\n\
         {{\"call_id\":\"{call_id}\",\"event\":\"ended\",\"at\":\"{at}\",\"outcome\":\"answered\",\"duration_s\":3}}\n"
    )
}

fn task(sim: &Sim, call: &str) -> Option<Value> {
    sim.org()
        .rows("Task")
        .into_iter()
        .find(|t| t["CallObject"] == call)
}

/// The pops whose body names `number`, in order.
fn pops_for(bus: &Notifications, number: &str) -> Vec<Shown> {
    bus.shown()
        .into_iter()
        .filter(|s| s.body.contains(number))
        .collect()
}

/// A record added straight into the org (not through the API), as another user's edit.
fn add(sim: &Sim, object: &str, fields: &[(&str, &str)]) -> String {
    let f = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    sim.org().admin_upsert(object, f)
}

/// The org's Leads with this Phone (as Salesforce stores it).
fn leads_with(sim: &Sim, phone: &str) -> Vec<Value> {
    sim.org()
        .rows("Lead")
        .into_iter()
        .filter(|l| l["Phone"] == phone)
        .collect()
}

/// The next Lead create is carried out and never answered: the connection closes after
/// `hold_ms`.
fn lead_create_unanswered(hold_ms: u64) -> callsync_sim::Fault {
    callsync_sim::Fault {
        kind: callsync_sim::FaultKind::CommitThenDrop,
        method: Some("POST".into()),
        path_contains: Some("sobjects/Lead".into()),
        skip: 0,
        times: Some(1),
        latency_ms: hold_ms,
        probability: None,
    }
}

/// One test's world: a notification bus, the simulated org, and an agent signed in to it and
/// synced, following `calls.jsonl` in its folder.
struct Run {
    bus: Notifications,
    sim: Sim,
    dir: tempfile::TempDir,
    agent: Child,
}

impl Run {
    /// `None` without dbus-daemon. `edits`: (a section header in the settings, lines added
    /// under it); `before` changes the org before the agent's first sync.
    async fn start<T>(
        seed: u64,
        records: usize,
        edits: &[(&str, &str)],
        before: impl FnOnce(&Sim) -> T,
    ) -> Option<(Run, T)> {
        let Some(bus) = Notifications::start() else {
            eprintln!("skipped: no dbus-daemon");
            return None;
        };
        let sim = Sim::start(
            SimOptions {
                records,
                seed,
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
        let made = before(&sim);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = d.join("calls.jsonl");
        common::agent_setup(&sim, d, &log, 3600, "[ui]\nlanguage = \"en\"\n").await;
        let user = d.join("user.toml");
        let mut cfg = std::fs::read_to_string(&user).unwrap();
        for (section, lines) in edits {
            cfg = cfg.replace(&format!("{section}\n"), &format!("{section}\n{lines}\n"));
        }
        std::fs::write(&user, cfg).unwrap();
        let agent = start_agent(d, &bus);
        common::wait_until(30, "the first sync", || {
            status(d)["agent"]["contacts"].as_u64().unwrap_or(0) > 0
        })
        .await;
        Some((
            Run {
                bus,
                sim,
                dir,
                agent,
            },
            made,
        ))
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> std::path::PathBuf {
        self.d().join("calls.jsonl")
    }

    fn stop(mut self) {
        common::terminate(&self.agent);
        let _ = self.agent.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_caller_is_found_at_ring_time_and_the_agent_picks_among_matches() {
    // One refresh a second at most (30 s by default), so that each step below has its own.
    let edits = [("[sync]", "refresh_on_miss_every_secs = 1")];
    // Two records on one number: the rule's winner is the Contact.
    let Some((run, (account, contact, lead))) = Run::start(21, 60, &edits, |sim| {
        let account = sim
            .org()
            .rows("Account")
            .into_iter()
            .find(|a| a["IsPersonAccount"] != true)
            .unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let contact = add(
            sim,
            "Contact",
            &[
                ("LastName", "Dup Contact"),
                ("Name", "Dup Contact"),
                ("Phone", "03-7777-0002"),
                ("AccountId", &account),
            ],
        );
        let lead = add(
            sim,
            "Lead",
            &[
                ("LastName", "Dup Lead"),
                ("Name", "Dup Lead"),
                ("Company", "LeadCo"),
                ("Phone", "03-7777-0002"),
            ],
        );
        (account, contact, lead)
    })
    .await
    else {
        return;
    };
    let (bus, sim, d, log) = (&run.bus, &run.sim, run.d(), run.log());

    // Fresh on a miss: a Contact created after the last sync rings.
    let fresh = add(
        sim,
        "Contact",
        &[
            ("LastName", "Fresh Caller"),
            ("Name", "Fresh Caller"),
            ("Phone", "03-7777-0001"),
        ],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls_before = sim.org().api_calls;
    common::append(&log, &common::ringing("fresh-1", "03-7777-0001"));
    common::wait_until(20, "the pop replaced by the answer", || {
        pops_for(bus, "03-7777-0001").len() >= 2
    })
    .await;
    let pops = pops_for(bus, "03-7777-0001");
    assert_eq!(pops[0].summary, "Looking up…", "{pops:?}");
    assert_eq!(
        pops[1].replaces, pops[0].id,
        "the answer replaces the pop: {pops:?}"
    );
    assert_eq!(pops[1].summary, "Fresh Caller", "{pops:?}");
    let took = pops[1].at - pops[0].at;
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sim.org().api_calls - calls_before,
        1,
        "one extra API call for the refresh"
    );
    common::append(&log, &end("fresh-1"));
    common::wait_until(20, "the fresh caller's Task", || {
        task(sim, "fresh-1").is_some()
    })
    .await;
    assert_eq!(task(sim, "fresh-1").unwrap()["WhoId"], json!(fresh));

    // The picker, from the pop's button while the call rings (Task not written yet).
    common::append(&log, &common::ringing("pick-1", "03-7777-0002"));
    common::wait_until(20, "the pop with choices", || {
        !pops_for(bus, "03-7777-0002").is_empty()
    })
    .await;
    let pop = pops_for(bus, "03-7777-0002").remove(0);
    assert_eq!(pop.summary, "Dup Contact");
    let button = format!("pick:{lead}");
    let i = pop
        .actions
        .iter()
        .position(|a| *a == button)
        .unwrap_or_else(|| panic!("no button for the lead: {pop:?}"));
    assert_eq!(pop.labels[i], "It's LeadCo / Dup Lead (Lead)");
    // The tray's "Current call" menu has both, the contact first.
    let st = status(d);
    let matches = st["agent"]["current_call"]["matches"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(matches.len(), 2, "{st}");
    assert_eq!(matches[0]["record_id"], json!(contact));
    bus.press(pop.id, &button);
    common::wait_until(10, "the choice ticked in the tray's menu", || {
        status(d)["agent"]["current_call"]["chosen"] == json!(lead)
    })
    .await;
    common::append(&log, &end("pick-1"));
    common::wait_until(20, "the picked call's Task", || {
        task(sim, "pick-1").is_some()
    })
    .await;
    let t = task(sim, "pick-1").unwrap();
    assert_eq!(
        (t["WhoId"].clone(), t["WhatId"].clone()),
        (json!(lead), Value::Null),
        "{t}"
    );

    // The next call from the number pops the chosen record, and its Task goes there.
    common::append(&log, &common::ringing("pick-2", "03-7777-0002"));
    common::wait_until(20, "the second pop", || {
        pops_for(bus, "03-7777-0002").len() >= 2
    })
    .await;
    let pop = pops_for(bus, "03-7777-0002").remove(1);
    assert_eq!(pop.summary, "Dup Lead", "{pop:?}");
    assert!(pop.body.contains("your choice"), "{pop:?}");
    common::append(&log, &end("pick-2"));
    common::wait_until(20, "the second Task", || task(sim, "pick-2").is_some()).await;
    assert_eq!(task(sim, "pick-2").unwrap()["WhoId"], json!(lead));

    // After the Task was written: `calls pick` moves it (WhoId and WhatId only).
    let out = common::command(d)
        .args(["calls", "pick", "pick-2", &contact])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Dup Contact") && text.contains("update is queued"),
        "{text}"
    );
    common::wait_until(20, "the Task moved to the contact", || {
        task(sim, "pick-2").is_some_and(|t| t["WhoId"] == json!(contact))
    })
    .await;
    let t = task(sim, "pick-2").unwrap();
    assert_eq!(t["WhatId"], json!(account), "{t}");
    assert_eq!(t["Subject"], task(sim, "pick-2").unwrap()["Subject"]);
    // `lookup` says whose choice the winner is; a record that is no match is refused.
    let text = lookup(d, "03-7777-0002");
    assert!(
        text.contains("Dup Contact") && text.contains("chosen by the agent"),
        "{text}"
    );
    let out = common::command(d)
        .args(["calls", "pick", "pick-2", &fresh])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a match for"), "{err}");
    let out = common::command(d)
        .args(["calls", "pick", "no-such-call", &contact])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no call no-such-call"),
        "{out:?}"
    );

    // A number dialled out, created after the last sync: no pop, but the same refresh, and
    // the Task (written at once, unlinked, since the call ended in the same batch) is linked.
    let dialled = add(
        sim,
        "Contact",
        &[
            ("LastName", "Dialled Person"),
            ("Name", "Dialled Person"),
            ("Phone", "03-7777-0003"),
        ],
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let at = chrono::Utc::now().fixed_offset().to_rfc3339();
    common::append(
        &log,
        &format!(
            "{{\"call_id\":\"out-1\",\"event\":\"dialing\",\"at\":\"{at}\",\"direction\":\"outbound\",\"remote\":\"03-7777-0003\"}}\n{}",
            end("out-1")
        ),
    );
    common::wait_until(20, "the dialled call's Task linked", || {
        task(sim, "out-1").is_some_and(|t| t["WhoId"] == json!(dialled))
    })
    .await;
    assert!(
        pops_for(bus, "03-7777-0003").is_empty(),
        "outbound calls do not pop"
    );

    // Nothing parked, one Task per call.
    let st = status(d);
    assert_eq!(st["agent"]["parked"], 0, "{st}");
    for call in ["fresh-1", "pick-1", "pick-2", "out-1"] {
        let n = sim
            .org()
            .rows("Task")
            .iter()
            .filter(|t| t["CallObject"] == call)
            .count();
        assert_eq!(n, 1, "{call}");
    }
    run.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_numbers_share_cycles_and_an_unreachable_org_pops_unknown_at_once() {
    let Some((run, ())) = Run::start(22, 40, &[], |_| ()).await else {
        return;
    };
    let log = run.log();
    // The org is stopped below: the run is taken apart.
    let Run {
        bus,
        sim,
        dir: _dir,
        mut agent,
    } = run;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = sim.org().api_calls;
    let start = Instant::now();
    for i in 0..20 {
        common::append(
            &log,
            &common::ringing(&format!("u{i}"), &format!("03-6000-{i:04}")),
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Every number popped; the ones past the first cycle's slot at once as unknown.
    common::wait_until(20, "twenty pops", || {
        (0..20).all(|i| !pops_for(&bus, &format!("03-6000-{i:04}")).is_empty())
    })
    .await;
    // The second slot opens 30 s after the first cycle.
    let wait = Duration::from_secs(33).saturating_sub(start.elapsed());
    tokio::time::sleep(wait).await;
    let extra = sim.org().api_calls - before;
    assert_eq!(
        extra,
        2,
        "20 unknown numbers within {:?}: one cycle at the first, one 30 s later for the rest",
        start.elapsed()
    );
    // The first asked Salesforce and was answered "unknown" in place; the others, past the
    // rate limit's next slot, popped unknown at once.
    let first: Vec<(String, u32)> = pops_for(&bus, "03-6000-0000")
        .into_iter()
        .map(|p| (p.summary, p.replaces))
        .collect();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0], ("Looking up…".into(), 0));
    assert_eq!(first[1].0, "Unknown caller");
    assert_ne!(first[1].1, 0, "replaced in place");
    for i in 1..20 {
        let pops = pops_for(&bus, &format!("03-6000-{i:04}"));
        assert_eq!(pops.len(), 1, "{pops:?}");
        assert_eq!(pops[0].summary, "Unknown caller", "{pops:?}");
    }

    // The org unreachable: the pop is unknown at once, nothing waits for it.
    sim.stop().await;
    let rang = Instant::now();
    common::append(&log, &common::ringing("down-1", "03-6100-0001"));
    common::wait_until(10, "the pop with the org down", || {
        pops_for(&bus, "03-6100-0001")
            .last()
            .is_some_and(|p| p.summary == "Unknown caller")
    })
    .await;
    let first = pops_for(&bus, "03-6100-0001").remove(0);
    assert!(
        first.at - rang < Duration::from_secs(3),
        "popped {:?} after the ring",
        first.at - rang
    );
    common::terminate(&agent);
    let _ = agent.wait();
}

/// `activity.unknown_caller = "create_lead"`: two calls from one unknown number make one Lead
/// (its first create's answer lost: the retry finds it instead of making a second), both Tasks
/// go on it, and it enters the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_caller_gets_one_lead_even_when_its_create_answer_is_lost() {
    let edits = [
        (
            "[activity]",
            "unknown_caller = \"create_lead\"\nunknown_caller_company = \"Walk-in\"",
        ),
        // No pops at all: a ringing miss still refreshes.
        ("[ui]", "screen_pop = \"off\""),
        ("[sync]", "refresh_on_miss_every_secs = 1"),
    ];
    let Some((run, ())) = Run::start(23, 30, &edits, |_| ()).await else {
        return;
    };
    let (sim, d, log) = (&run.sim, run.d(), run.log());
    // The Lead's create is carried out, and its answer never arrives.
    sim.org().faults.push(lead_create_unanswered(0));
    common::append(&log, &common::call_lines("walkin-1", "03-8888-0001"));
    common::append(&log, &common::call_lines("walkin-2", "+81 3 8888 0001"));
    let leads = || leads_with(sim, "+81 3-8888-0001");
    common::wait_until(60, "both Tasks on the Lead", || {
        let Some(lead) = leads().first().map(|l| l["Id"].clone()) else {
            return false;
        };
        ["walkin-1", "walkin-2"]
            .iter()
            .all(|c| task(sim, c).is_some_and(|t| t["WhoId"] == lead))
    })
    .await;
    let all = leads();
    assert_eq!(all.len(), 1, "one Lead for the number: {all:?}");
    assert_eq!(all[0]["LastName"], "Unknown caller");
    assert_eq!(all[0]["Company"], "Walk-in");
    assert!(
        sim.org().faults.iter().all(|f| f.times == Some(0)),
        "the fault fired"
    );
    // The Lead enters the cache: the next call from the number pops it.
    common::wait_until(20, "the Lead in the cache", || {
        let text = lookup(d, "03-8888-0001");
        text.contains("Unknown caller") && text.contains("Lead")
    })
    .await;

    // A caller created after the last sync rings (pops off): the refresh finds them before
    // the call ends, the Task goes on them, and no Lead is made.
    let quiet = add(
        sim,
        "Contact",
        &[
            ("LastName", "Quiet Caller"),
            ("Name", "Quiet Caller"),
            ("Phone", "03-8888-0002"),
        ],
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let lines = common::call_lines("quiet-1", "03-8888-0002");
    let (ring, rest) = lines.split_once('\n').unwrap();
    common::append(&log, &format!("{ring}\n"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::append(&log, rest);
    common::wait_until(20, "the quiet caller's Task", || {
        task(sim, "quiet-1").is_some_and(|t| t["WhoId"] == json!(quiet))
    })
    .await;
    let made = leads_with(sim, "+81 3-8888-0002").len();
    assert_eq!(made, 0, "no Lead for a caller the refresh found");
    let st = status(d);
    assert_eq!(st["agent"]["parked"], 0, "{st}");
    assert_eq!(st["agent"]["pending"], 0, "{st}");
    run.stop();
}

/// The agent killed (SIGKILL; TerminateProcess on Windows) while an unknown caller's Lead is
/// created: the org has carried the create out and not answered yet. The restarted agent finds
/// that Lead instead of making a second, and the call's Task goes on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_callers_lead_is_made_once_when_the_agent_is_killed_mid_create() {
    let edits = [
        ("[activity]", "unknown_caller = \"create_lead\""),
        ("[ui]", "screen_pop = \"off\""),
    ];
    let Some((mut run, ())) = Run::start(29, 30, &edits, |_| ()).await else {
        return;
    };
    // The create is carried out, then its answer is held for 20 s (within the agent's 30 s
    // request timeout): the kill lands while the agent waits for it.
    run.sim.org().faults.push(lead_create_unanswered(20_000));
    let leads = |sim: &Sim| leads_with(sim, "+81 3-8888-0003");
    common::append(&run.log(), &common::call_lines("walkin-k", "03-8888-0003"));
    common::wait_until(30, "the Lead's create carried out", || {
        !leads(&run.sim).is_empty()
    })
    .await;
    assert!(
        task(&run.sim, "walkin-k").is_none(),
        "the Task waits for the Lead's Id"
    );
    let _ = run.agent.kill();
    let _ = run.agent.wait();
    let agent = start_agent(run.dir.path(), &run.bus);
    run.agent = agent;
    common::wait_until(60, "the call's Task, linked", || {
        task(&run.sim, "walkin-k").is_some_and(|t| !t["WhoId"].is_null())
    })
    .await;
    let all = leads(&run.sim);
    assert_eq!(all.len(), 1, "one Lead for the number: {all:?}");
    let t = task(&run.sim, "walkin-k").unwrap();
    assert_eq!(t["WhoId"], all[0]["Id"], "the Task on the Lead");
    let st = status(run.d());
    assert_eq!(st["agent"]["parked"], 0, "{st}");
    assert_eq!(st["agent"]["pending"], 0, "{st}");
    run.stop();
}

/// A short call from a caller created after the last sync, while the rate limit holds its
/// refresh back (another miss just had its cycle): the call ends before the refresh can run.
/// The Lead for the number waits for that refresh, which finds the caller, so the Task goes on
/// them and no Lead is made (one was made at once, and stayed as a stray duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_call_waits_for_its_refresh_before_a_lead_is_made() {
    let edits = [
        ("[activity]", "unknown_caller = \"create_lead\""),
        ("[ui]", "screen_pop = \"off\""),
        ("[sync]", "refresh_on_miss_every_secs = 15"),
    ];
    let Some((run, ())) = Run::start(31, 30, &edits, |_| ()).await else {
        return;
    };
    let (sim, d, log) = (&run.sim, run.d(), run.log());
    // A first unknown caller takes the refresh slot (and gets its Lead, which enters the cache
    // with the cycle its creation starts).
    common::append(&log, &common::call_lines("walkin-s", "03-8888-0004"));
    common::wait_until(30, "the first caller's Lead in the cache", || {
        lookup(d, "03-8888-0004").contains("Unknown caller")
    })
    .await;
    // Within the next 15 s: a caller created since then calls, briefly.
    let quick = add(
        sim,
        "Contact",
        &[
            ("LastName", "Quick Caller"),
            ("Name", "Quick Caller"),
            ("Phone", "03-8888-0005"),
        ],
    );
    let asked = Instant::now();
    common::append(&log, &common::call_lines("quick-1", "03-8888-0005"));
    common::wait_until(60, "the quick caller's Task", || {
        task(sim, "quick-1").is_some_and(|t| t["WhoId"] == json!(quick))
    })
    .await;
    assert!(
        asked.elapsed() > Duration::from_secs(3),
        "the refresh was held back by the rate limit ({:?}): the test tests nothing",
        asked.elapsed()
    );
    let made = leads_with(sim, "+81 3-8888-0005");
    assert!(
        made.is_empty(),
        "no Lead for a caller the refresh found: {made:?}"
    );
    assert_eq!(leads_with(sim, "+81 3-8888-0004").len(), 1);
    let st = status(d);
    assert_eq!(st["agent"]["parked"], 0, "{st}");
    assert_eq!(st["agent"]["pending"], 0, "{st}");
    run.stop();
}
