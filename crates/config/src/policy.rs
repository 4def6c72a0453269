//! Centrally managed settings from the operating system's policy channels, on top of the managed
//! file: Windows Group Policy (values under `HKLM\Software\Policies\callsync`, written by the
//! ADMX templates in `packaging/windows/policy/`) and macOS managed preferences (configuration
//! profiles for the domain `com.callsync.agent`, `packaging/macos/callsync.mobileconfig`).
//!
//! Each value's name is a configuration key (`salesforce.login_url`); every value set through a
//! policy is locked, as if listed in the managed file's `policy.locked`. The mapping is pure and
//! tested on every OS; only the reading is behind `cfg(windows)` / `cfg(target_os = "macos")`.

use std::collections::BTreeMap;

/// A value as a policy store holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyValue {
    /// REG_SZ / plist string.
    Text(String),
    /// REG_DWORD, REG_QWORD / plist integer or boolean.
    Number(i64),
    /// REG_MULTI_SZ / plist array of strings.
    List(Vec<String>),
}

/// Where the policies came from, for `config show`.
#[cfg(windows)]
pub const SOURCE: &str = r"HKLM\Software\Policies\callsync, HKCU\Software\Policies\callsync";
#[cfg(target_os = "macos")]
pub const SOURCE: &str = "/Library/Managed Preferences/com.callsync.agent.plist";
#[cfg(not(any(windows, target_os = "macos")))]
pub const SOURCE: &str = "(no OS policy store on this platform: use the managed file)";

/// Policy values as configuration values, typed by the key's default. Unknown keys and values
/// of the wrong type are reported (key, reason) and left out: one bad policy must not stop a
/// fleet's agents.
pub fn to_config(
    raw: &[(String, PolicyValue)],
) -> (BTreeMap<String, toml::Value>, Vec<(String, String)>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, v) in raw {
        let template = match crate::known_key(key) {
            Ok(t) => t,
            Err(e) => {
                problems.push((key.clone(), e));
                continue;
            }
        };
        if key.starts_with("policy.") {
            problems.push((key.clone(), "policy keys cannot be set by policy".into()));
            continue;
        }
        let value = match (template, v) {
            (toml::Value::Boolean(_), PolicyValue::Number(n)) => Ok(toml::Value::Boolean(*n != 0)),
            (toml::Value::Integer(_), PolicyValue::Number(n)) => Ok(toml::Value::Integer(*n)),
            (toml::Value::Array(_), PolicyValue::List(items)) => Ok(toml::Value::Array(
                items.iter().cloned().map(toml::Value::String).collect(),
            )),
            (toml::Value::String(_), PolicyValue::List(items)) => {
                Ok(toml::Value::String(items.join(",")))
            }
            (_, PolicyValue::Text(s)) => crate::parse_value(key, s),
            (_, PolicyValue::Number(n)) => crate::parse_value(key, &n.to_string()),
            (_, PolicyValue::List(_)) => Err("a list is not allowed here".into()),
        };
        match value {
            Ok(v) => {
                out.insert(key.clone(), v);
            }
            Err(e) => problems.push((key.clone(), e)),
        }
    }
    (out, problems)
}

/// A managed-preferences plist (what a configuration profile installs) as policy values.
pub fn from_plist(bytes: &[u8]) -> Result<Vec<(String, PolicyValue)>, String> {
    let v: plist::Value = plist::from_bytes(bytes).map_err(|e| e.to_string())?;
    let dict = v.into_dictionary().ok_or("not a dictionary")?;
    Ok(dict
        .into_iter()
        .filter_map(|(k, v)| {
            let pv = match v {
                plist::Value::String(s) => PolicyValue::Text(s),
                plist::Value::Boolean(b) => PolicyValue::Number(i64::from(b)),
                plist::Value::Integer(i) => PolicyValue::Number(i.as_signed()?),
                plist::Value::Array(a) => {
                    PolicyValue::List(a.into_iter().filter_map(|x| x.into_string()).collect())
                }
                _ => return None,
            };
            Some((k, pv))
        })
        .collect())
}

/// Machine and user policies as one set: a key set in both takes the machine's value, as
/// Group Policy's computer configuration wins over the user configuration.
pub fn merge_scopes(
    machine: Vec<(String, PolicyValue)>,
    user: Vec<(String, PolicyValue)>,
) -> Vec<(String, PolicyValue)> {
    let mut out: BTreeMap<String, PolicyValue> = user.into_iter().collect();
    out.extend(machine);
    out.into_iter().collect()
}

/// The policies set on this machine and for this user (empty where there are none or the OS has
/// no store). Windows: Group Policy's computer configuration (HKLM) and user configuration
/// (HKCU; only administrators can write under `Software\Policies`), the machine's winning.
#[cfg(windows)]
pub fn read() -> Vec<(String, PolicyValue)> {
    use winreg::enums::{HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE};
    merge_scopes(read_hive(HKEY_LOCAL_MACHINE), read_hive(HKEY_CURRENT_USER))
}

#[cfg(windows)]
fn read_hive(hive: winreg::HKEY) -> Vec<(String, PolicyValue)> {
    use winreg::enums::RegType;
    let Ok(key) = winreg::RegKey::predef(hive).open_subkey(r"Software\Policies\callsync") else {
        return Vec::new();
    };
    key.enum_values()
        .filter_map(Result::ok)
        .filter_map(|(name, v)| {
            let pv = match v.vtype {
                RegType::REG_SZ | RegType::REG_EXPAND_SZ => PolicyValue::Text(
                    <String as winreg::types::FromRegValue>::from_reg_value(&v).ok()?,
                ),
                RegType::REG_DWORD => PolicyValue::Number(
                    <u32 as winreg::types::FromRegValue>::from_reg_value(&v)
                        .ok()?
                        .into(),
                ),
                RegType::REG_QWORD => PolicyValue::Number(
                    <u64 as winreg::types::FromRegValue>::from_reg_value(&v).ok()? as i64,
                ),
                RegType::REG_MULTI_SZ => PolicyValue::List(
                    <Vec<String> as winreg::types::FromRegValue>::from_reg_value(&v).ok()?,
                ),
                _ => return None,
            };
            Some((name, pv))
        })
        .collect()
}

#[cfg(target_os = "macos")]
pub fn read() -> Vec<(String, PolicyValue)> {
    // Device profiles land here; user-channel profiles under `…/<user>/`, which win.
    let mut out = Vec::new();
    let base = std::path::Path::new("/Library/Managed Preferences");
    let user = std::env::var("USER").unwrap_or_default();
    for p in [
        base.join("com.callsync.agent.plist"),
        base.join(&user).join("com.callsync.agent.plist"),
    ] {
        if let Ok(bytes) = std::fs::read(&p) {
            match from_plist(&bytes) {
                Ok(v) => out.extend(v),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "unreadable managed preferences")
                }
            }
        }
    }
    out
}

#[cfg(not(any(windows, target_os = "macos")))]
pub fn read() -> Vec<(String, PolicyValue)> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_policy_wins_over_the_user_policy() {
        let t = |s: &str| PolicyValue::Text(s.into());
        let machine = vec![("phone.default_region".into(), t("JP"))];
        let user = vec![
            ("phone.default_region".into(), t("US")),
            ("ui.language".into(), t("ja")),
        ];
        assert_eq!(
            merge_scopes(machine, user),
            vec![
                ("phone.default_region".into(), t("JP")),
                ("ui.language".into(), t("ja")),
            ]
        );
    }

    #[test]
    fn policy_values_map_to_typed_configuration_values() {
        let raw = vec![
            (
                "salesforce.login_url".to_string(),
                PolicyValue::Text("https://acme.my.salesforce.com".into()),
            ),
            ("sync.contact_retrieval".to_string(), PolicyValue::Number(0)),
            ("sync.interval_secs".to_string(), PolicyValue::Number(600)),
            (
                "phone.fallback_regions".to_string(),
                PolicyValue::List(vec!["US".into(), "GB".into()]),
            ),
            (
                "lookup.order".to_string(),
                PolicyValue::Text("Lead,Contact".into()),
            ),
            (
                "activity.enabled".to_string(),
                PolicyValue::Text("true".into()),
            ),
            (
                "assignee.agents".to_string(),
                PolicyValue::Text("{taro = \"005000000000002AAA\"}".into()),
            ),
            ("nope.key".to_string(), PolicyValue::Text("x".into())),
            ("sync.interval_secs2".to_string(), PolicyValue::Number(1)),
            (
                "logging.keep_files".to_string(),
                PolicyValue::Text("many".into()),
            ),
            ("policy.locked".to_string(), PolicyValue::List(vec![])),
        ];
        let (v, problems) = to_config(&raw);
        assert_eq!(
            v["salesforce.login_url"].as_str(),
            Some("https://acme.my.salesforce.com")
        );
        assert_eq!(v["sync.contact_retrieval"].as_bool(), Some(false));
        assert_eq!(v["sync.interval_secs"].as_integer(), Some(600));
        assert_eq!(
            v["phone.fallback_regions"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(v["lookup.order"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["activity.enabled"].as_bool(), Some(true));
        assert_eq!(
            v["assignee.agents"]["taro"].as_str(),
            Some("005000000000002AAA")
        );
        let bad: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            bad,
            [
                "nope.key",
                "sync.interval_secs2",
                "logging.keep_files",
                "policy.locked"
            ]
        );
    }

    #[test]
    fn the_sample_configuration_profile_reads_as_policies() {
        // The payload of packaging/macos/callsync.mobileconfig, as macOS installs it.
        let plist = br#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>salesforce.login_url</key><string>https://acme.my.salesforce.com</string>
  <key>sync.contact_retrieval</key><true/>
  <key>sync.interval_secs</key><integer>600</integer>
  <key>phone.fallback_regions</key><array><string>US</string></array>
</dict></plist>"#;
        let raw = from_plist(plist).unwrap();
        let (v, problems) = to_config(&raw);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(v.len(), 4);
        assert_eq!(v["sync.contact_retrieval"].as_bool(), Some(true));
    }
}
