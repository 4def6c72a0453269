use super::*;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn installers_set_keys_in_a_file_keeping_its_comments() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "config.toml",
        "# IT notes\n[phone]\n# region\ndefault_region = \"JP\"\n",
    );
    let n = set_in_file(
        &f,
        &[
            "salesforce.login_url=https://acme.my.salesforce.com".into(),
            "phone.default_region=US".into(),
            "salesforce.client_id=".into(),
            "calllog.poll_secs=5".into(),
        ],
        None,
    )
    .unwrap();
    assert_eq!(n, 3);
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(
        text.contains("# IT notes") && text.contains("# region"),
        "{text}"
    );
    let l = load(&LoadOptions {
        managed_file: Some(f.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        l.config.salesforce.login_url,
        "https://acme.my.salesforce.com"
    );
    assert_eq!(l.config.phone.default_region, "US");
    assert_eq!(l.config.calllog.poll_secs, 5);
    assert!(set_in_file(&f, &["calllog.poll_secs=soon".into()], None).is_err());
}

/// Defect: the MSI wrote `calllog.sources=[{ kind = …, path = '[CALLLOG]' }]` through MSI
/// formatted text, where `[ ]` and `{ }` are special: the installed file had
/// `sources = ["' }]"]`. The call log now comes as a plain path and the TOML is built here, so
/// any path survives: backslashes, spaces, quotes, brackets, braces, Japanese.
#[test]
fn an_installer_call_log_path_is_written_exactly() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("config.toml");
    let paths = [
        r"C:\PBX\calls.jsonl",
        r#"\\fileserver\pbx share\[2026] {a}\it's "here".csv"#,
        "C:\\Users\\山田\\AppData\\Roaming\\linphone\\call-history.db",
    ];
    for (kind, path) in ["native", "csv", "linphone"].into_iter().zip(paths) {
        let path = path.to_owned();
        let log = InstallerCallLog { kind, path: &path };
        assert_eq!(set_in_file(&f, &[], Some(log)).unwrap(), 1);
        let l = load(&LoadOptions {
            managed_file: Some(f.clone()),
            ..Default::default()
        })
        .unwrap();
        let s = &l.config.calllog.sources;
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(
            (s[0].kind.as_str(), s[0].path.as_str()),
            (kind, path.as_str())
        );
    }
    // Unset installer property: nothing changes. Unknown kind: refused, the file untouched.
    let before = std::fs::read_to_string(&f).unwrap();
    let none = InstallerCallLog {
        kind: "native",
        path: "",
    };
    assert_eq!(set_in_file(&f, &[], Some(none)).unwrap(), 0);
    let bad = InstallerCallLog {
        kind: "skype",
        path: r"C:\x",
    };
    assert!(set_in_file(&f, &[], Some(bad))
        .unwrap_err()
        .contains("skype"));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), before);
}

#[test]
fn os_policies_win_over_the_managed_file_and_are_locked() {
    let d = tempfile::tempdir().unwrap();
    let managed = write(d.path(), "m.toml", "[sync]\ninterval_secs = 900\n");
    let user = write(
        d.path(),
        "u.toml",
        "[sync]\ninterval_secs = 60\ncontact_retrieval = true\n",
    );
    let (policy, problems) = crate::policy::to_config(&[
        (
            "sync.interval_secs".into(),
            crate::policy::PolicyValue::Number(600),
        ),
        (
            "sync.contact_retrieval".into(),
            crate::policy::PolicyValue::Number(0),
        ),
    ]);
    assert!(problems.is_empty());
    let l = load(&LoadOptions {
        managed_file: Some(managed),
        user_file: Some(user),
        policy,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(l.config.sync.interval_secs, 600);
    assert!(!l.config.sync.contact_retrieval);
    assert!(l.is_locked("sync.interval_secs") && l.is_locked("sync.contact_retrieval"));
    assert!(matches!(
        l.origins["sync.interval_secs"],
        Source::Managed(_)
    ));
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
}

#[test]
fn layers_apply_in_order_and_remember_their_source() {
    let d = tempfile::tempdir().unwrap();
    let managed = write(
        d.path(),
        "m.toml",
        "[phone]\ndefault_region = \"US\"\n[logging]\nkeep_files = 30\n",
    );
    let user = write(
        d.path(),
        "u.toml",
        "[phone]\ndefault_region = \"GB\"\n[logging]\nlevel = \"debug\"\n",
    );
    let l = load(&LoadOptions {
        managed_file: Some(managed.clone()),
        user_file: Some(user.clone()),
        env: vec![("CALLSYNC_LOGGING__LEVEL".into(), "warn".into())],
        cli: vec![("logging.keep_files".into(), "7".into())],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(l.config.phone.default_region, "GB");
    assert_eq!(l.origins["phone.default_region"], Source::User(user));
    assert_eq!(l.config.logging.level, "warn");
    assert_eq!(
        l.origins["logging.level"],
        Source::Env("CALLSYNC_LOGGING__LEVEL".into())
    );
    assert_eq!(l.config.logging.keep_files, 7);
    assert_eq!(l.origins["logging.keep_files"], Source::CommandLine);
    assert_eq!(l.origins["cache.memory_mb"], Source::Default);
}

#[test]
fn locked_keys_resist_every_later_layer() {
    let d = tempfile::tempdir().unwrap();
    let managed = write(
        d.path(),
        "m.toml",
        "[salesforce]\nlogin_url = \"https://acme.my.salesforce.com\"\n[policy]\nlocked = [\"salesforce\", \"phone.default_region\"]\n",
    );
    let user = write(
        d.path(),
        "u.toml",
        "[salesforce]\nlogin_url = \"https://evil.example.com\"\n",
    );
    let l = load(&LoadOptions {
        managed_file: Some(managed),
        user_file: Some(user),
        env: vec![("CALLSYNC_PHONE__DEFAULT_REGION".into(), "US".into())],
        cli: vec![("salesforce.api_version".into(), "55.0".into())],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        l.config.salesforce.login_url,
        "https://acme.my.salesforce.com"
    );
    assert_eq!(l.config.phone.default_region, "JP");
    assert_eq!(l.config.salesforce.api_version, "62.0");
    assert!(l.is_locked("salesforce.client_id"));
    assert!(!l.is_locked("logging.level"));
    assert_eq!(l.warnings.len(), 3, "{:?}", l.warnings);
}

#[test]
fn errors_name_the_file_the_key_and_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[phone]\ndefault_regon = \"JP\"\n",
            "unknown key `phone.default_regon` (did you mean `phone.default_region`?)",
        ),
        (
            "[phone]\ndefault_region = \"XX\"\n",
            "bad value for `phone.default_region`: unknown region code",
        ),
        (
            "[logging]\nkeep_files = \"many\"\n",
            "bad value for `logging.keep_files`: invalid type",
        ),
        (
            "[lookup]\norder = [\"Contact\", \"Case\"]\n",
            "bad value for `lookup.order`: \"Case\" is not one of",
        ),
        (
            "[lookup.fields]\nContact = [\"Phone\", \"bad field\"]\n",
            "bad value for `lookup.fields.Contact`",
        ),
        (
            "[salesforce]\nlogin_url = \"http://login.salesforce.com\"\n",
            "must start with https://",
        ),
        (
            "[policy]\nlocked = [\"phone\"]\n",
            "may only be set in the machine-wide managed file",
        ),
        ("[phone\n", "is not valid TOML"),
        ("surprise = 1\n", "unknown key `surprise`"),
    ];
    for (text, want) in cases {
        let user = write(d.path(), "u.toml", text);
        let e = load(&LoadOptions {
            user_file: Some(user.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains(want), "{text:?}: {e}");
        assert!(e.contains(&user.display().to_string()), "{e}");
    }
}

#[test]
fn env_and_cli_values_are_typed_by_the_key() {
    let l = load(&LoadOptions {
        env: vec![
            ("CALLSYNC_LOGGING__MASK_NUMBERS".into(), "off".into()),
            ("CALLSYNC_PHONE__FALLBACK_REGIONS".into(), "US, GB".into()),
            (
                "CALLSYNC_LOOKUP__FIELDS__CONTACT".into(),
                "[\"Phone\", \"Direct__c\"]".into(),
            ),
        ],
        ..Default::default()
    })
    .unwrap();
    assert!(!l.config.logging.mask_numbers);
    assert_eq!(l.config.phone.fallback_regions, ["US", "GB"]);
    assert_eq!(l.config.lookup.fields.contact, ["Phone", "Direct__c"]);

    for (k, v, want) in [
        ("CALLSYNC_CACHE__MEMORY_MB", "lots", "is not a whole number"),
        ("CALLSYNC_NOPE__X", "1", "unknown key `nope.x`"),
        ("CALLSYNC_CACHE__MEMORY_MB", "1", "between 4 and 4096"),
    ] {
        let e = load(&LoadOptions {
            env: vec![(k.into(), v.into())],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains(want) && e.contains(k), "{k}={v}: {e}");
    }
    assert!(parse_set("novalue").is_err());
    assert_eq!(parse_set("a.b=c=d").unwrap(), ("a.b".into(), "c=d".into()));
}

#[test]
fn maps_with_user_keys_are_one_setting() {
    let d = tempfile::tempdir().unwrap();
    let user = write(
        d.path(),
        "u.toml",
        "[assignee.agents]\ntaro = \"005000000000001AAA\"\nhanako = \"005000000000002AAA\"\n",
    );
    let l = load(&LoadOptions {
        user_file: Some(user.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(l.config.assignee.agents.len(), 2);
    assert_eq!(l.origins["assignee.agents"], Source::User(user));
    let bad = write(
        d.path(),
        "b.toml",
        "[assignee.agents]\ntaro = \"003000000000001AAA\"\n",
    );
    let e = load(&LoadOptions {
        user_file: Some(bad),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a User Id"), "{e}");
}

#[test]
fn every_call_log_kind_is_accepted_and_opens() {
    let d = tempfile::tempdir().unwrap();
    for kind in callsync_calllog::SOURCE_KINDS {
        let user = write(
            d.path(),
            "u.toml",
            &format!("[calllog]\nsources = [{{ kind = \"{kind}\", path = \"/tmp/calls\" }}]\n"),
        );
        let l = load(&LoadOptions {
            user_file: Some(user),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let src = l.config.calllog.sources[0].open().unwrap();
        assert_eq!(src.name(), kind);
    }
    let user = write(
        d.path(),
        "u.toml",
        "[calllog]\nsources = [{ kind = \"skype\", path = \"/tmp/calls\" }]\n",
    );
    let e = load(&LoadOptions {
        user_file: Some(user),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("csv"), "{e}");
}

#[test]
fn a_named_config_file_must_exist() {
    let e = load(&LoadOptions {
        user_file: Some("/nonexistent/callsync.toml".into()),
        user_file_required: true,
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
}

#[test]
fn the_example_is_complete_and_loads() {
    let d = tempfile::tempdir().unwrap();
    // The example documents the managed-only policy section too; as a user file it must
    // load without it.
    let user_part: String = EXAMPLE.split("[policy]").next().unwrap().to_owned();
    let p = write(d.path(), "example.toml", &user_part);
    let l = load(&LoadOptions {
        user_file: Some(p),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        l.config,
        Config::default(),
        "the example must show the defaults"
    );
    for (key, _) in l.entries() {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            EXAMPLE.contains(&format!("{leaf} =")),
            "config example lacks `{key}`"
        );
    }
    let managed = write(d.path(), "m.toml", EXAMPLE);
    assert!(load(&LoadOptions {
        managed_file: Some(managed),
        ..Default::default()
    })
    .is_ok());
}
