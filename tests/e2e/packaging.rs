//! What can be checked here of the Windows and macOS packaging (no MSI or pkg can be built on
//! Linux): every file is well-formed XML; the Group Policy templates write values named after
//! real configuration keys, with every string and presentation they reference defined in both
//! languages; the MSI keeps a fixed UpgradeCode, passes its public properties securely and
//! writes them with a command that exists; the sample configuration profile maps to
//! configuration values with no problem.

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn attrs(doc: &roxmltree::Document, tag: &str, attr: &str) -> BTreeSet<String> {
    doc.descendants()
        .filter(|n| n.tag_name().name() == tag)
        .filter_map(|n| n.attribute(attr).map(str::to_owned))
        .collect()
}

#[test]
fn admx_policies_name_real_keys_and_every_string_exists_in_both_languages() {
    let admx_text = read("packaging/windows/policy/callsync.admx");
    let admx = roxmltree::Document::parse(&admx_text).unwrap();
    let schema = callsync_config::schema();
    let keys: BTreeSet<String> = admx
        .descendants()
        .filter_map(|n| n.attribute("valueName").map(str::to_owned))
        .collect();
    assert!(keys.len() >= 7, "{keys:?}");
    for k in &keys {
        assert!(
            schema.contains_key(k),
            "ADMX value {k} is not a configuration key"
        );
    }
    for n in admx.descendants().filter(|n| n.attribute("key").is_some()) {
        assert_eq!(n.attribute("key"), Some(r"Software\Policies\callsync"));
    }
    let refs = |prefix: &str| -> BTreeSet<String> {
        admx.descendants()
            .flat_map(|n| {
                n.attributes()
                    .map(|a| a.value().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter_map(|v| {
                v.strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix(')'))
                    .map(str::to_owned)
            })
            .collect()
    };
    let strings = refs("$(string.");
    let presentations = refs("$(presentation.");
    for lang in ["en-US", "ja-JP"] {
        let text = read(&format!("packaging/windows/policy/{lang}/callsync.adml"));
        let adml = roxmltree::Document::parse(&text).unwrap();
        let defined = attrs(&adml, "string", "id");
        assert!(
            strings.is_subset(&defined),
            "{lang}: missing {:?}",
            strings.difference(&defined).collect::<Vec<_>>()
        );
        let pres = attrs(&adml, "presentation", "id");
        assert!(
            presentations.is_subset(&pres),
            "{lang}: missing presentations"
        );
    }
    // A DWORD policy maps as the agent reads it.
    let (v, problems) = callsync_config::policy::to_config(&[(
        "sync.contact_retrieval".into(),
        callsync_config::policy::PolicyValue::Number(0),
    )]);
    assert!(problems.is_empty());
    assert_eq!(v["sync.contact_retrieval"].as_bool(), Some(false));
}

#[test]
fn the_msi_source_upgrades_in_place_and_writes_its_properties_with_a_real_command() {
    let text = read("packaging/windows/callsync.wxs");
    let doc = roxmltree::Document::parse(&text).unwrap();
    let node = |name: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(
        node("Product").attribute("UpgradeCode"),
        Some("6F3A6C1E-2B7D-4C44-9A55-0D1B3C2E9F10")
    );
    assert_eq!(
        node("Package").attribute("InstallScope"),
        Some("perMachine")
    );
    node("MajorUpgrade");
    for p in ["LOGINURL", "CLIENTID", "REGION", "CALLLOG"] {
        let prop = doc
            .descendants()
            .find(|n| n.tag_name().name() == "Property" && n.attribute("Id") == Some(p))
            .unwrap_or_else(|| panic!("no property {p}"));
        assert_eq!(prop.attribute("Secure"), Some("yes"), "{p}");
    }
    let config = doc
        .descendants()
        .find(|n| n.attribute("Id") == Some("ManagedConfig"))
        .unwrap();
    assert_eq!(config.attribute("NeverOverwrite"), Some("yes"));
    assert_eq!(config.attribute("Permanent"), Some("yes"));
    assert!(text.contains(r"Software\Microsoft\Windows\CurrentVersion\Run"));
    assert!(text.contains("System.AppUserModel.ID"));

    // The custom action's command line is MSI formatted text: every `[` must open a property
    // reference and nothing may hold `{ }` (the CALLLOG defect: TOML written through it came
    // out as `sources = ["' }]"]`).
    let command = node("CustomAction").attribute("ExeCommand").unwrap();
    let mut rest = command;
    while let Some(i) = rest.find('[') {
        let end = rest[i..].find(']').expect("an open bracket") + i;
        let name = &rest[i + 1..end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
            "`[{name}]` in {command}"
        );
        rest = &rest[end + 1..];
    }
    assert!(
        !command.contains('{') && !command.contains('}'),
        "{command}"
    );

    // What Windows Installer runs, with the properties substituted: the command exists and
    // writes what it is given, a call-log path full of brackets and braces included.
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("config.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/linux/config.toml"),
        &f,
    )
    .unwrap();
    let props = [
        ("PROGRAMDATA", format!("{}/", d.path().display())),
        ("LOGINURL", "https://acme.my.salesforce.com".into()),
        ("CLIENTID", String::new()),
        ("REGION", "US".into()),
        ("CALLLOG", r"C:\PBX [1]\{agents} calls.jsonl".into()),
        ("CALLLOGKIND", "native".into()),
    ];
    let mut line = command.to_owned();
    for (k, v) in &props {
        line = line.replace(&format!("[{k}]"), v);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callsync"))
        .args(split_command_line(&line))
        .output()
        .unwrap();
    assert!(out.status.success(), "{line}: {out:?}");
    let l = callsync_config::load(&callsync_config::LoadOptions {
        managed_file: Some(f.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        l.config.salesforce.login_url,
        "https://acme.my.salesforce.com"
    );
    assert_eq!(l.config.phone.default_region, "US");
    assert_eq!(
        l.config.calllog.sources[0].path,
        r"C:\PBX [1]\{agents} calls.jsonl"
    );
    assert!(std::fs::read_to_string(&f)
        .unwrap()
        .contains("# callsync — machine-wide managed configuration"));
}

/// Splits a command line at spaces outside double quotes (enough for the custom action's).
fn split_command_line(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[test]
fn the_macos_profile_and_launch_agent_are_valid_and_map_to_settings() {
    let agent: plist::Value =
        plist::from_bytes(read("packaging/macos/com.callsync.agent.plist").as_bytes()).unwrap();
    let args = agent.as_dictionary().unwrap()["ProgramArguments"]
        .as_array()
        .unwrap();
    assert_eq!(args[1].as_string(), Some("run"));
    let profile: plist::Value =
        plist::from_bytes(read("packaging/macos/callsync.mobileconfig").as_bytes()).unwrap();
    let prefs = &profile.as_dictionary().unwrap()["PayloadContent"]
        .as_array()
        .unwrap()[0]
        .as_dictionary()
        .unwrap()["PayloadContent"]
        .as_dictionary()
        .unwrap()["com.callsync.agent"]
        .as_dictionary()
        .unwrap()["Forced"]
        .as_array()
        .unwrap()[0]
        .as_dictionary()
        .unwrap()["mcx_preference_settings"];
    let mut bytes = Vec::new();
    plist::to_writer_xml(&mut bytes, prefs).unwrap();
    let raw = callsync_config::policy::from_plist(&bytes).unwrap();
    let (v, problems) = callsync_config::policy::to_config(&raw);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(v.len(), 5);
}
