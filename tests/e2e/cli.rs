//! End-to-end tests of the `callsync` binary: real sled files, real config files, real processes.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{json, Value};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("user.toml"), "").unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("callsync").unwrap();
        for (k, _) in std::env::vars() {
            if k.starts_with("CALLSYNC_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env("CALLSYNC_DATA_DIR", self.path("data"))
            .env("CALLSYNC_CONFIG", self.path("user.toml"))
            .env("CALLSYNC_MANAGED_CONFIG", self.path("managed.toml"));
        c
    }

    fn write_jsonl(&self, name: &str, records: &[Value]) -> PathBuf {
        let p = self.path(name);
        let text: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        std::fs::write(&p, text.join("\n") + "\n").unwrap();
        p
    }

    fn import(&self, file: &Path) {
        self.cmd()
            .args(["cache", "import"])
            .arg(file)
            .assert()
            .success();
    }

    fn lookup_json(&self, number: &str) -> Value {
        let out = self
            .cmd()
            .args(["lookup", "--json", number])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn contact(id: &str, name: &str, account: &str, field: &str, phone: &str, modified: &str) -> Value {
    json!({
        "attributes": {"type": "Contact", "url": format!("/services/data/v62.0/sobjects/Contact/{id}")},
        "Id": id, "Name": name, "AccountId": "001000000000001AAA",
        "Account": {"attributes": {"type": "Account"}, "Name": account},
        field: phone, "LastModifiedDate": modified, "IsPersonAccount": false,
    })
}

const C1: &str = "003000000000001AAA";
const C2: &str = "003000000000002AAA";

fn sample() -> Vec<Value> {
    vec![
        contact(
            C1,
            "山田 太郎",
            "株式会社アクメ",
            "Phone",
            "+81 3-1234-5678",
            "2024-05-01T10:00:00.000+0000",
        ),
        contact(
            C2,
            "佐藤 花子",
            "株式会社アクメ",
            "MobilePhone",
            "０３－１２３４－５６７８",
            "2023-01-01T10:00:00.000+0000",
        ),
        json!({"attributes": {"type": "Account"}, "Id": "001000000000001AAA", "Name": "株式会社アクメ",
               "Phone": "03(1234)5678", "IsPersonAccount": false, "LastModifiedDate": "2025-01-01T10:00:00.000+0000"}),
        json!({"attributes": {"type": "Lead"}, "Id": "00Q000000000001AAA", "Name": "鈴木 一郎", "Company": "ベータ商事",
               "Phone": "0312345678", "IsConverted": false, "LastModifiedDate": "2025-06-01T10:00:00.000+0000"}),
        json!({"attributes": {"type": "Lead"}, "Id": "00Q000000000002AAA", "Name": "Converted", "Company": "Gone",
               "Phone": "03-1234-5678", "IsConverted": true, "LastModifiedDate": "2026-01-01T10:00:00.000+0000"}),
        // A person account: the Account row and its hidden Contact row, one person.
        json!({"attributes": {"type": "Account"}, "Id": "001000000000009AAA", "Name": "高橋 美咲",
               "IsPersonAccount": true, "PersonContactId": "003000000000009AAA",
               "PersonMobilePhone": "090-1111-2222", "LastModifiedDate": "2025-01-01T10:00:00.000+0000"}),
        json!({"attributes": {"type": "Contact"}, "Id": "003000000000009AAA", "Name": "高橋 美咲",
               "AccountId": "001000000000009AAA", "IsPersonAccount": true,
               "MobilePhone": "090-1111-2222", "LastModifiedDate": "2025-01-01T10:00:00.000+0000"}),
    ]
}

#[test]
fn import_then_lookup_identifies_the_caller_by_the_seed_rules() {
    let env = Env::new();
    env.import(&env.write_jsonl("records.jsonl", &sample()));

    env.cmd()
        .args(["lookup", "03(1234)5678"])
        .assert()
        .success()
        .stdout(predicate::str::contains("+81 3-1234-5678"))
        .stdout(predicate::str::contains("株式会社アクメ / 山田 太郎"))
        .stdout(predicate::str::contains("also on 3 other record(s)"));

    let r = env.lookup_json("03(1234)5678");
    assert_eq!(r["best"]["id"], C1, "{r:#}");
    let others: Vec<&str> = r["others"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    // Contact (older) → Account → Lead; the converted lead is gone.
    assert_eq!(others, [C2, "001000000000001AAA", "00Q000000000001AAA"]);
    assert_eq!(r["best"]["display"]["company"], "株式会社アクメ");
    assert_eq!(r["best"]["display"]["person"], "山田 太郎");

    // Recency: the other contact is edited in Salesforce and re-imported; it now wins.
    let newer = contact(
        C2,
        "佐藤 花子",
        "株式会社アクメ",
        "MobilePhone",
        "03-1234-5678",
        "2026-02-01T10:00:00.000+0000",
    );
    env.import(&env.write_jsonl("update.jsonl", &[newer]));
    assert_eq!(env.lookup_json("+81312345678")["best"]["id"], C2);

    // A number change: C1 moves away and no longer matches its old number.
    let moved = contact(
        C1,
        "山田 太郎",
        "株式会社アクメ",
        "Phone",
        "06-6123-4567",
        "2026-03-01T10:00:00.000+0000",
    );
    env.import(&env.write_jsonl("moved.jsonl", &[moved]));
    let r = env.lookup_json("0312345678");
    let ids: Vec<&str> = std::iter::once(&r["best"])
        .chain(r["others"].as_array().unwrap())
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&C1), "{ids:?}");
    assert_eq!(env.lookup_json("06-6123-4567")["best"]["id"], C1);

    // The person account matches once, as a person account, with its hidden contact for Tasks.
    let r = env.lookup_json("09011112222");
    assert_eq!(r["best"]["id"], "001000000000009AAA");
    assert_eq!(r["best"]["person_account"], true);
    assert_eq!(r["best"]["person_contact_id"], "003000000000009AAA");
    assert_eq!(r["others"].as_array().unwrap().len(), 0, "{r:#}");
}

#[test]
fn unknown_callers_and_bad_numbers_have_their_own_exit_codes() {
    let env = Env::new();
    env.cmd()
        .args(["lookup", "03-9999-0000"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("the cache is empty"));
    env.import(&env.write_jsonl("r.jsonl", &sample()));
    env.cmd()
        .args(["lookup", "03-9999-0000"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("unknown caller"));
    env.cmd()
        .args(["lookup", "no digits here"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no digits"));
}

#[test]
fn bad_lines_are_reported_with_their_number_and_the_rest_loads() {
    let env = Env::new();
    let p = env.path("mixed.jsonl");
    let good = sample()[0].to_string();
    std::fs::write(&p, format!("{good}\n{{oops\n{{\"attributes\":{{\"type\":\"Case\"}},\"Id\":\"500000000000001AAA\"}}\n{}\n", sample()[3])).unwrap();
    env.cmd()
        .args(["cache", "import"])
        .arg(&p)
        .assert()
        .code(3)
        .stderr(predicate::str::contains("mixed.jsonl:2: malformed JSON"))
        .stderr(predicate::str::contains(
            "mixed.jsonl:3: object type \"Case\" is not cached",
        ))
        .stdout(predicate::str::contains("imported 2 records from 4 lines"));
    let out = env
        .cmd()
        .args(["cache", "stats", "--json"])
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["records"]["Contact"], 1);
    assert_eq!(stats["records"]["Lead"], 1);

    env.cmd()
        .args(["cache", "import"])
        .arg(env.path("missing.jsonl"))
        .assert()
        .code(4)
        .stderr(predicate::str::contains("cannot read"));
}

#[test]
fn lookups_say_when_contact_retrieval_is_off() {
    let env = Env::new();
    env.import(&env.write_jsonl("r.jsonl", &sample()));
    env.cmd()
        .args([
            "lookup",
            "0312345678",
            "--set",
            "sync.contact_retrieval=false",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("contact retrieval is off"));
}

#[test]
fn clear_empties_the_cache() {
    let env = Env::new();
    env.import(&env.write_jsonl("r.jsonl", &sample()));
    env.cmd()
        .args(["cache", "clear"])
        .assert()
        .success()
        .stdout(predicate::str::contains("cleared 7 cached records"));
    env.cmd().args(["lookup", "0312345678"]).assert().code(1);
}

#[test]
fn managed_settings_are_locked_and_show_where_values_come_from() {
    let env = Env::new();
    std::fs::write(
        env.path("managed.toml"),
        "[salesforce]\nlogin_url = \"https://acme.my.salesforce.com\"\n[phone]\ndefault_region = \"JP\"\n[policy]\nlocked = [\"salesforce.login_url\", \"phone\"]\n",
    )
    .unwrap();
    std::fs::write(
        env.path("user.toml"),
        "[salesforce]\nlogin_url = \"https://other.my.salesforce.com\"\n[logging]\nlevel = \"debug\"\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .env("CALLSYNC_PHONE__DEFAULT_REGION", "US")
        .args(["config", "show", "--set", "logging.keep_files=3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("salesforce.login_url").contains("acme.my.salesforce.com"),
        "{text}"
    );
    assert!(
        line("salesforce.login_url").contains("managed file")
            && line("salesforce.login_url").contains("[locked]"),
        "{text}"
    );
    assert!(line("phone.default_region").contains("\"JP\""), "{text}");
    assert!(line("logging.level").contains("user file"), "{text}");
    assert!(
        line("logging.keep_files").contains("command line"),
        "{text}"
    );
    assert!(line("cache.memory_mb").contains("default"), "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("locked by managed file"), "{err}");
    assert!(err.contains("CALLSYNC_PHONE__DEFAULT_REGION"), "{err}");

    // --json for IT tools.
    let out = env
        .cmd()
        .args(["config", "show", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "salesforce.login_url")
        .unwrap()
        .clone();
    assert_eq!(key["locked"], true);
    assert_eq!(key["source"]["kind"], "managed");
}

#[test]
fn configuration_errors_name_the_file_and_the_key() {
    let env = Env::new();
    std::fs::write(
        env.path("user.toml"),
        "[phone]\ndefault_region = \"Japan\"\n",
    )
    .unwrap();
    env.cmd()
        .args(["lookup", "0312345678"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("user.toml"))
        .stderr(predicate::str::contains("phone.default_region"))
        .stderr(predicate::str::contains("unknown region code"));
    std::fs::write(env.path("user.toml"), "").unwrap();
    env.cmd()
        .env("CALLSYNC_LOOKUP__ORDER", "Lead,Opportunity")
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("CALLSYNC_LOOKUP__ORDER"))
        .stderr(predicate::str::contains("\"Opportunity\" is not one of"));
    env.cmd()
        .args(["--config"])
        .arg(env.path("nope.toml"))
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read configuration file"));
}

#[test]
fn the_example_configuration_is_usable_as_is() {
    let env = Env::new();
    let out = env.cmd().args(["config", "example"]).output().unwrap();
    assert!(out.status.success());
    // The example includes the managed-only [policy] section: valid as a managed file.
    std::fs::write(env.path("managed.toml"), &out.stdout).unwrap();
    env.cmd().args(["config", "show"]).assert().success();
}

#[test]
fn logs_mask_numbers_unless_told_not_to() {
    let env = Env::new();
    env.import(&env.write_jsonl("r.jsonl", &sample()));
    env.cmd()
        .args(["lookup", "03-1234-5678"])
        .assert()
        .success();
    let logs = read_logs(&env.path("data/logs"));
    assert!(logs.contains("**-****-5678"), "{logs}");
    assert!(!logs.contains("03-1234-5678"), "{logs}");
    env.cmd()
        .args([
            "lookup",
            "06-6123-4567",
            "--set",
            "logging.mask_numbers=false",
        ])
        .assert()
        .code(1);
    assert!(read_logs(&env.path("data/logs")).contains("06-6123-4567"));
}

fn read_logs(dir: &Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        s.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    s
}

#[test]
fn a_cache_in_use_by_another_process_is_reported_as_busy() {
    let env = Env::new();
    env.import(&env.write_jsonl("r.jsonl", &sample()));
    // This test process holds the sled lock, as a running agent would.
    let (_held, _) =
        callsync_store::cache::Cache::open(&env.path("data/cache"), &Default::default()).unwrap();
    env.cmd()
        .args(["lookup", "0312345678"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains(
            "in use by another callsync process",
        ));
}

#[test]
fn a_damaged_cache_is_rebuilt_not_fatal() {
    let env = Env::new();
    let cache = env.path("data/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("conf"), b"\xff\xfe not sled").unwrap();
    std::fs::write(cache.join("db"), vec![0x5A; 8192]).unwrap();
    env.cmd()
        .args(["lookup", "0312345678"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("damaged"));
    // And it works afterwards.
    env.import(&env.write_jsonl("r.jsonl", &sample()));
    env.cmd().args(["lookup", "0312345678"]).assert().success();
}

#[test]
fn version_and_help() {
    let env = Env::new();
    env.cmd()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    env.cmd()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("lookup"));
    env.cmd().arg("frobnicate").assert().code(2);
}

#[cfg(unix)]
#[test]
fn calls_tail_pops_known_callers_and_logs_bad_lines() {
    use std::io::{BufRead, BufReader, Write};
    let env = Env::new();
    env.import(&env.write_jsonl("r.jsonl", &sample()));
    let log = env.path("calls/calls.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callsync"))
        .env_remove("RUST_LOG")
        .env("CALLSYNC_DATA_DIR", env.path("data"))
        .env("CALLSYNC_CONFIG", env.path("user.toml"))
        .env("CALLSYNC_MANAGED_CONFIG", env.path("managed.toml"))
        .args(["calls", "tail", "--source"])
        .arg(format!("native={}", log.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(&log).unwrap();
    writeln!(f, r#"{{"call_id":"c1","event":"ringing","at":"2026-11-21T10:00:00+09:00","direction":"inbound","remote":"+81 3 1234 5678"}}"#).unwrap();
    writeln!(f, "{{broken").unwrap();
    writeln!(f, r#"{{"call_id":"c1","event":"ended","at":"2026-11-21T10:00:30+09:00","outcome":"no_answer"}}"#).unwrap();
    f.sync_all().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) => {
                let done = l.contains("IncomingMissed");
                seen.push(l);
                if done {
                    break;
                }
            }
            _ => break,
        }
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = seen.join("\n");
    // The agent's pop, as text: the person, the company, the kind, the number, the others.
    let pop = text
        .lines()
        .find(|l| l.contains("screen pop:"))
        .unwrap_or_else(|| panic!("no screen pop:\n{text}"));
    assert!(
        pop.contains("screen pop: 山田 太郎 · 株式会社アクメ · Contact · ")
            && pop.ends_with(" · 3 more"),
        "{pop}"
    );
    assert!(text.contains("IncomingMissed"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("calls.jsonl:2: malformed JSON"), "{err}");
    env.cmd()
        .args(["errors"])
        .assert()
        .success()
        .stdout(predicate::str::contains("calls.jsonl:2: malformed JSON"));
}

/// Defects: `calls import` dropped a final line without a newline (a file being imported is
/// complete), and every bad line cost one fsynced append to the error log (200,000 lines took
/// 132 s and 16.8 MB). The last line counts; a flood of one kind is summarised in one write.
#[test]
fn calls_import_reads_the_last_line_and_summarises_a_flood_of_bad_lines() {
    let env = Env::new();
    let file = env.path("calls.jsonl");
    std::fs::write(
        &file,
        "{\"call_id\":\"c1\",\"event\":\"ringing\",\"at\":\"2026-11-21T10:00:00+09:00\",\"direction\":\"inbound\",\"remote\":\"0312345678\"}\n\
         {\"call_id\":\"c1\",\"event\":\"ended\",\"at\":\"2026-11-21T10:01:00+09:00\",\"outcome\":\"answered\"}",
    )
    .unwrap();
    let out = env
        .cmd()
        .args(["calls", "import", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    let bad = env.path("bad.jsonl");
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("{{not json {i}\n"));
    }
    std::fs::write(&bad, text).unwrap();
    let out = env
        .cmd()
        .args(["calls", "import"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 20_000);
    let log = std::fs::read_to_string(env.path("data/errors.jsonl")).unwrap();
    assert!(log.lines().count() <= 25, "{} entries", log.lines().count());
    assert!(
        log.contains("19,980 more like this (malformed JSON)"),
        "{log}"
    );
}
