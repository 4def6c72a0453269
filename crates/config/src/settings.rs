//! Integration settings, as MiiTel's admin screen has them: three groups, each with an enabled
//! flag — **activity history integration** (`activity.*`: Tasks), **meeting history
//! integration** (`meeting.*`: Events), **activity history assignee** (`assignee.*`: owners) —
//! plus **contact retrieval** (`sync.contact_retrieval`).
//!
//! `callsync settings set|import|restore` write them to a versioned store in the data folder
//! (`settings.json`), read as a configuration layer above the user's file: a value set here wins
//! over the user's file, and a value the managed file locks wins over everything.
//! `callsync disconnect` saves a backup of the three groups (one backup, overwritten each time);
//! `callsync settings restore` applies it by the seed's rules ([`restore_plan`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Layered;

/// The store's and the backup's format; a newer one is refused, never misread.
pub const FORMAT: u32 = 1;

/// The contact-retrieval switch (not part of a backup's restore).
pub const CONTACT_RETRIEVAL: &str = "sync.contact_retrieval";

/// The three groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Activity,
    Meeting,
    Assignee,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Activity, Group::Meeting, Group::Assignee];

    /// The configuration section holding the group.
    pub fn section(self) -> &'static str {
        match self {
            Group::Activity => "activity",
            Group::Meeting => "meeting",
            Group::Assignee => "assignee",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Group::Activity => "activity history integration (Tasks)",
            Group::Meeting => "meeting history integration (Events)",
            Group::Assignee => "activity history assignee (owners)",
        }
    }

    pub(crate) fn enabled_key(self) -> String {
        format!("{}.enabled", self.section())
    }

    /// The group's enabled flag in `values` (keyed like [`Layered::values`]).
    pub fn enabled_in(self, values: &BTreeMap<String, toml::Value>) -> bool {
        values
            .get(&self.enabled_key())
            .and_then(toml::Value::as_bool)
            .unwrap_or(false)
    }

    pub fn of_key(key: &str) -> Option<Group> {
        let section = key.split('.').next()?;
        Group::ALL.into_iter().find(|g| g.section() == section)
    }
}

/// The activity group's settings of the Task object itself: a group restored disabled gets
/// these back at their defaults (the seed: "the ToDo object … reset to the default state").
pub(crate) const TASK_OBJECT_KEYS: &[&str] = &[
    "activity.status",
    "activity.subject",
    "activity.description",
    "activity.external_id_field",
    "activity.dial_start_field",
    "activity.call_start_field",
    "activity.call_end_field",
    "activity.memo_field",
];

/// Whether `key` is an integration setting (`callsync settings` manages only these).
pub fn is_setting(key: &str) -> bool {
    key == CONTACT_RETRIEVAL || Group::of_key(key).is_some()
}

/// Every integration-setting key with its default.
pub fn defaults() -> BTreeMap<String, toml::Value> {
    crate::schema()
        .iter()
        .filter(|(k, _)| is_setting(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged ({reason}); move it aside to start from the defaults")]
    Damaged { path: PathBuf, reason: String },
    #[error("{path} was written by a newer callsync (format {found}; this one reads {FORMAT}); upgrade callsync")]
    Newer { path: PathBuf, found: u32 },
}

/// The settings store: values set through `callsync settings`, by key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    pub format: u32,
    /// Incremented by every change (tells IT tools and the agent that something changed).
    pub revision: u64,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub values: BTreeMap<String, toml::Value>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, SettingsError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SettingsError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| SettingsError::Damaged {
            path: path.into(),
            reason: e.to_string(),
        })?;
    let found = v["format"].as_u64().unwrap_or(0) as u32;
    if found > FORMAT {
        return Err(SettingsError::Newer {
            path: path.into(),
            found,
        });
    }
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| SettingsError::Damaged {
            path: path.into(),
            reason: e.to_string(),
        })
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), SettingsError> {
    let err = |source| SettingsError::Write {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        callsync_fs::create_private_dir(dir).map_err(err)?;
    }
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| err(std::io::Error::other(e)))?;
    callsync_fs::write_private_atomic(path, &bytes).map_err(err)
}

impl Store {
    /// The store at `path` (empty when there is none yet).
    pub fn load(path: &Path) -> Result<Store, SettingsError> {
        Ok(read_json(path)?.unwrap_or(Store {
            format: FORMAT,
            ..Store::default()
        }))
    }

    /// Writes `values` as the next revision, atomically.
    pub fn save(
        path: &Path,
        values: BTreeMap<String, toml::Value>,
    ) -> Result<Store, SettingsError> {
        let old = Store::load(path)?;
        let store = Store {
            format: FORMAT,
            revision: old.revision + 1,
            updated_at: now(),
            values,
        };
        write_json(path, &store)?;
        Ok(store)
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One group as it was backed up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupBackup {
    pub enabled: bool,
    /// Every key of the group (its effective value at the time).
    pub values: BTreeMap<String, toml::Value>,
}

/// The backup `callsync disconnect` takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub format: u32,
    pub taken_at: String,
    /// The org and user signed in when it was taken (a restore into another org is flagged).
    pub org_id: String,
    pub username: String,
    pub groups: BTreeMap<Group, GroupBackup>,
    /// Recorded for reference; a restore never applies it (the seed's rule).
    pub contact_retrieval: bool,
}

impl Backup {
    /// The three groups as they are in effect now.
    pub fn of(layered: &Layered, org_id: &str, username: &str) -> Backup {
        let values = layered.values();
        let groups = Group::ALL
            .into_iter()
            .map(|g| {
                let values: BTreeMap<String, toml::Value> = values
                    .iter()
                    .filter(|(k, _)| Group::of_key(k) == Some(g))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (
                    g,
                    GroupBackup {
                        enabled: g.enabled_in(&values),
                        values,
                    },
                )
            })
            .collect();
        Backup {
            format: FORMAT,
            taken_at: now(),
            org_id: org_id.into(),
            username: username.into(),
            groups,
            contact_retrieval: layered.config.sync.contact_retrieval,
        }
    }

    pub fn load(path: &Path) -> Result<Option<Backup>, SettingsError> {
        read_json(path)
    }

    /// Saves it, replacing any previous backup (the seed: one backup, overwritten).
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        write_json(path, self)
    }
}

/// What a restore writes: every key of the three groups, by the seed's rules.
///
/// - A group enabled at backup: its backed-up settings, enabled.
/// - The activity group disabled at backup: disabled; its Task-object settings
///   ([`TASK_OBJECT_KEYS`]) at their defaults, the rest as backed up.
/// - The meeting group disabled at backup: disabled, every setting at its default.
/// - The assignee group: its backed-up settings and enabled state.
/// - Contact retrieval: not touched. Keys the backup lacks (an older callsync): defaults.
pub fn restore_plan(b: &Backup) -> BTreeMap<String, toml::Value> {
    let defaults = defaults();
    let mut out = BTreeMap::new();
    for g in Group::ALL {
        let backup = b.groups.get(&g);
        let enabled = backup.is_some_and(|gb| gb.enabled);
        for (key, default) in defaults.iter().filter(|(k, _)| Group::of_key(k) == Some(g)) {
            let backed_up = backup.and_then(|gb| gb.values.get(key));
            let reset = !enabled
                && match g {
                    Group::Activity => TASK_OBJECT_KEYS.contains(&key.as_str()),
                    Group::Meeting => true,
                    Group::Assignee => false,
                };
            let v = if *key == g.enabled_key() {
                toml::Value::Boolean(enabled)
            } else if reset {
                default.clone()
            } else {
                backed_up.unwrap_or(default).clone()
            };
            out.insert(key.clone(), v);
        }
    }
    out
}

/// The store's values after a restore: every group key from the plan, everything else (contact
/// retrieval) as it was.
pub fn apply_plan(
    store: &BTreeMap<String, toml::Value>,
    plan: &BTreeMap<String, toml::Value>,
) -> BTreeMap<String, toml::Value> {
    let mut out: BTreeMap<String, toml::Value> = store
        .iter()
        .filter(|(k, _)| Group::of_key(k).is_none())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(plan.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> toml::Value {
        toml::Value::String(v.into())
    }

    fn backup(activity: bool, meeting: bool, assignee: bool) -> Backup {
        let mut groups = BTreeMap::new();
        let mut vals = |g: Group, enabled: bool, extra: &[(&str, toml::Value)]| {
            let mut values: BTreeMap<String, toml::Value> = defaults()
                .into_iter()
                .filter(|(k, _)| Group::of_key(k) == Some(g))
                .collect();
            values.insert(g.enabled_key(), toml::Value::Boolean(enabled));
            for (k, v) in extra {
                values.insert((*k).into(), v.clone());
            }
            groups.insert(g, GroupBackup { enabled, values });
        };
        vals(
            Group::Activity,
            activity,
            &[
                ("activity.subject", s("Call {REMOTE_NUMBER}")),
                ("activity.memo_field", s("Call_Memo__c")),
                ("activity.timing", s("after_begin")),
            ],
        );
        vals(
            Group::Meeting,
            meeting,
            &[("meeting.recording_url_field", s("Recording_URL__c"))],
        );
        let agents: toml::Table = [("taro".to_string(), s("005000000000002AAA"))]
            .into_iter()
            .collect();
        vals(
            Group::Assignee,
            assignee,
            &[("assignee.agents", toml::Value::Table(agents))],
        );
        Backup {
            format: FORMAT,
            taken_at: now(),
            org_id: "00D".into(),
            username: "u".into(),
            groups,
            contact_retrieval: false,
        }
    }

    #[test]
    fn restore_rules_by_the_seed() {
        let d = defaults();
        // (activity, meeting, assignee enabled at backup) → expectations.
        for (act, mtg, asg) in [
            (true, true, true),
            (false, false, false),
            (true, false, true),
            (false, true, false),
        ] {
            let plan = restore_plan(&backup(act, mtg, asg));
            let case = format!("{act}/{mtg}/{asg}");
            // Enabled flags as backed up.
            assert_eq!(plan["activity.enabled"].as_bool(), Some(act), "{case}");
            assert_eq!(plan["meeting.enabled"].as_bool(), Some(mtg), "{case}");
            assert_eq!(plan["assignee.enabled"].as_bool(), Some(asg), "{case}");
            // Activity: Task-object settings kept when enabled, reset when disabled; the rest kept.
            let subject = if act {
                s("Call {REMOTE_NUMBER}")
            } else {
                d["activity.subject"].clone()
            };
            assert_eq!(plan["activity.subject"], subject, "{case}");
            let memo = if act { s("Call_Memo__c") } else { s("") };
            assert_eq!(plan["activity.memo_field"], memo, "{case}");
            assert_eq!(plan["activity.timing"], s("after_begin"), "{case}");
            // Meeting: everything reset when disabled.
            let rec = if mtg { s("Recording_URL__c") } else { s("") };
            assert_eq!(plan["meeting.recording_url_field"], rec, "{case}");
            // Assignee: restored whatever its state.
            assert_eq!(
                plan["assignee.agents"]["taro"],
                s("005000000000002AAA"),
                "{case}"
            );
            // Contact retrieval: never part of a restore.
            assert!(!plan.contains_key(CONTACT_RETRIEVAL), "{case}");
            // Every group key is written (every current setting is overwritten).
            for k in d.keys().filter(|k| Group::of_key(k).is_some()) {
                assert!(plan.contains_key(k), "{case}: {k}");
            }
        }
    }

    #[test]
    fn a_restore_keeps_contact_retrieval_and_replaces_every_group_key() {
        let mut store = BTreeMap::new();
        store.insert(CONTACT_RETRIEVAL.to_string(), toml::Value::Boolean(false));
        store.insert("activity.status".to_string(), s("In Progress"));
        let plan = restore_plan(&backup(true, false, true));
        let after = apply_plan(&store, &plan);
        assert_eq!(after[CONTACT_RETRIEVAL], toml::Value::Boolean(false));
        assert_eq!(after["activity.status"], defaults()["activity.status"]);
    }

    #[test]
    fn stores_are_versioned_and_newer_formats_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("settings.json");
        assert_eq!(Store::load(&p).unwrap().revision, 0);
        let mut v = BTreeMap::new();
        v.insert("activity.status".to_string(), s("Completed"));
        assert_eq!(Store::save(&p, v.clone()).unwrap().revision, 1);
        assert_eq!(Store::save(&p, v).unwrap().revision, 2);
        std::fs::write(&p, r#"{"format": 9, "revision": 1, "values": {}}"#).unwrap();
        assert!(matches!(
            Store::load(&p),
            Err(SettingsError::Newer { found: 9, .. })
        ));
        std::fs::write(&p, "{").unwrap();
        assert!(matches!(
            Store::load(&p),
            Err(SettingsError::Damaged { .. })
        ));
    }
}
