//! `callsync settings …`: the integration settings groups (rules in `callsync_config::settings`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use callsync_app::app::App;
use callsync_config::settings::{self, Backup, Group, Store, CONTACT_RETRIEVAL};
use callsync_config::{self, Layered, LoadOptions, Source};
use callsync_store::paths::DataDir;

use crate::cli::exit;

#[derive(Subcommand, Debug)]
pub enum SettingsCmd {
    /// The three groups (activity history, meeting history, assignee) and contact retrieval:
    /// each value, where it comes from, whether IT locked it; the backup, if any.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Change one setting (validated first; locked settings cannot be changed).
    Set {
        /// e.g. activity.timing, meeting.enabled, assignee.agents, sync.contact_retrieval
        key: String,
        /// Text, true/false, a number, `a,b` for lists, `{taro = "005…"}` for maps.
        value: String,
    },
    /// Drop a value set here (the user's file, or the default, applies again).
    Unset { key: String },
    /// Write every integration setting to a TOML file (to copy to other PCs).
    Export { file: PathBuf },
    /// Read settings from a TOML file (all checked first: nothing changes if one is bad).
    Import { file: PathBuf },
    /// Apply the backup taken at `callsync disconnect`, by MiiTel's rules, then check it
    /// against the org.
    Restore {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(
    cmd: SettingsCmd,
    app: &App,
    layered: &Layered,
    data: &DataDir,
    opts: &LoadOptions,
) -> anyhow::Result<u8> {
    let store_path = data.settings();
    match cmd {
        SettingsCmd::Show { json } => show(app, layered, data, json),
        SettingsCmd::Set { key, value } => {
            let key = key.trim().to_owned();
            if let Some(code) = refuse(layered, &key) {
                return Ok(code);
            }
            let v = match callsync_config::parse_value(&key, &value) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("callsync: `{key}`: {e}");
                    return Ok(exit::USAGE);
                }
            };
            let before = layered.values().get(&key).cloned();
            let mut values = Store::load(&store_path)?.values;
            values.insert(key.clone(), v.clone());
            save(opts, &store_path, values).map(|r| match r {
                Some((rev, _)) => {
                    let was = before.map(|b| format!(" (was {b})")).unwrap_or_default();
                    outln!("{key} = {v}{was}; settings revision {rev}");
                    overridden(layered, &key);
                    exit::OK
                }
                None => exit::USAGE,
            })
        }
        SettingsCmd::Unset { key } => {
            if let Some(code) = refuse(layered, &key) {
                return Ok(code);
            }
            let mut values = Store::load(&store_path)?.values;
            if values.remove(&key).is_none() {
                outln!("{key} was not set here; nothing to do");
                return Ok(exit::OK);
            }
            save(opts, &store_path, values).map(|r| match r {
                Some((rev, _)) => {
                    outln!("{key} unset; settings revision {rev}");
                    exit::OK
                }
                None => exit::USAGE,
            })
        }
        SettingsCmd::Export { file } => {
            let values: BTreeMap<String, toml::Value> = layered
                .values()
                .into_iter()
                .filter(|(k, _)| settings::is_setting(k))
                .collect();
            let mut doc = toml::Table::new();
            doc.insert(
                "format".into(),
                toml::Value::Integer(settings::FORMAT.into()),
            );
            if let toml::Value::Table(t) = callsync_config::document(&values) {
                doc.extend(t);
            }
            let text = format!(
                "# callsync integration settings, exported {}\n# Apply on another PC with `callsync settings import {}`.\n{}",
                chrono::Local::now().format("%Y-%m-%d %H:%M"),
                file.display(),
                toml::to_string_pretty(&doc)?
            );
            std::fs::write(&file, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
            outln!("{} settings written to {}", values.len(), file.display());
            Ok(exit::OK)
        }
        SettingsCmd::Import { file } => import(layered, opts, &store_path, &file),
        SettingsCmd::Restore { json } => restore(app, layered, data, opts, json),
    }
}

/// Why `key` cannot be changed here (an exit code), after saying so.
fn refuse(layered: &Layered, key: &str) -> Option<u8> {
    if !settings::is_setting(key) {
        let hint = callsync_config::known_key(key)
            .err()
            .unwrap_or_else(|| format!("`{key}` is not an integration setting"));
        eprintln!("callsync: {hint}; `callsync settings` manages activity.*, meeting.*, assignee.* and {CONTACT_RETRIEVAL} (other keys belong in the configuration file: `callsync config show`)");
        return Some(exit::USAGE);
    }
    if layered.is_locked(key) {
        let by = layered
            .managed_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the managed file".into());
        eprintln!("callsync: `{key}` is locked by your IT department ({by}); it cannot be changed on this PC");
        return Some(exit::USAGE);
    }
    None
}

/// Tells the user when the environment or the command line hides the stored value.
fn overridden(layered: &Layered, key: &str) {
    if let Some(s @ (Source::Env(_) | Source::CommandLine)) = layered.origins.get(key) {
        eprintln!("callsync: note: {s} sets `{key}` too and wins over the stored value");
    }
}

/// Validates the whole configuration with `values` as the store, then saves them: the new
/// revision and the configuration now in effect. None: the change was refused (and why was said).
fn save(
    opts: &LoadOptions,
    path: &Path,
    values: BTreeMap<String, toml::Value>,
) -> anyhow::Result<Option<(u64, Layered)>> {
    let mut check = opts.clone();
    check.settings_values = Some(values.clone());
    let layered = match callsync_config::load(&check) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("callsync: not saved: {e}");
            return Ok(None);
        }
    };
    let store = Store::save(path, values)?;
    // The running agent reads its settings at start: it restarts itself to apply them.
    let data = DataDir::new(path.parent().unwrap_or(Path::new(".")));
    let restart = callsync_agent::control::Request::Restart;
    if callsync_agent::control::call(&data, &restart, std::time::Duration::from_secs(3)).is_ok() {
        eprintln!("callsync: the running agent restarts to apply the new settings");
    }
    Ok(Some((store.revision, layered)))
}

fn import(
    layered: &Layered,
    opts: &LoadOptions,
    store_path: &Path,
    file: &Path,
) -> anyhow::Result<u8> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("callsync: cannot read {}: {e}", file.display());
            return Ok(exit::USAGE);
        }
    };
    let mut doc: toml::Table = match toml::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("callsync: {} is not valid TOML: {e}", file.display());
            return Ok(exit::USAGE);
        }
    };
    let format = doc
        .remove("format")
        .and_then(|v| v.as_integer())
        .unwrap_or(1);
    if format > i64::from(settings::FORMAT) {
        eprintln!(
            "callsync: {} has format {format}, from a newer callsync; upgrade callsync first",
            file.display()
        );
        return Ok(exit::USAGE);
    }
    let flat = match callsync_config::flatten_document(doc) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("callsync: {}: {e}", file.display());
            return Ok(exit::USAGE);
        }
    };
    if let Some(k) = flat.keys().find(|k| !settings::is_setting(k)) {
        eprintln!("callsync: {}: `{k}` is not an integration setting (only activity.*, meeting.*, assignee.* and {CONTACT_RETRIEVAL} can be imported); nothing was changed", file.display());
        return Ok(exit::USAGE);
    }
    let effective = layered.values();
    let mut values = Store::load(store_path)?.values;
    let (mut changed, mut locked) = (0, Vec::new());
    for (k, v) in flat {
        if layered.is_locked(&k) {
            if effective.get(&k) != Some(&v) {
                locked.push(k);
            }
            continue;
        }
        if effective.get(&k) != Some(&v) {
            changed += 1;
        }
        values.insert(k, v);
    }
    let Some((rev, _)) = save(opts, store_path, values)? else {
        eprintln!("callsync: nothing was changed");
        return Ok(exit::USAGE);
    };
    outln!(
        "imported {}: {changed} setting(s) changed; settings revision {rev}",
        file.display()
    );
    for k in &locked {
        eprintln!("callsync: note: `{k}` is locked by your IT department; the file's value was not applied");
    }
    Ok(exit::OK)
}

fn show(app: &App, layered: &Layered, data: &DataDir, json: bool) -> anyhow::Result<u8> {
    let values = layered.values();
    let connected = app.auth_store().load().ok().flatten();
    let store = Store::load(&data.settings())?;
    let backup = Backup::load(&data.settings_backup())?;
    let entry = |k: &str| {
        let v = values
            .get(k)
            .cloned()
            .unwrap_or(toml::Value::Boolean(false));
        (
            v,
            layered
                .origins
                .get(k)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "default".into()),
            layered.is_locked(k),
        )
    };
    let keys_of = |g: Group| -> Vec<&String> {
        values
            .keys()
            .filter(|k| Group::of_key(k) == Some(g))
            .collect()
    };
    if json {
        let groups: serde_json::Map<String, serde_json::Value> = Group::ALL
            .into_iter()
            .map(|g| {
                let items: Vec<serde_json::Value> = keys_of(g)
                    .into_iter()
                    .map(|k| {
                        let (v, source, locked) = entry(k);
                        serde_json::json!({"key": k, "value": v, "source": source, "locked": locked})
                    })
                    .collect();
                (
                    g.section().to_owned(),
                    serde_json::json!({"title": g.title(), "enabled": g.enabled_in(&values), "settings": items}),
                )
            })
            .collect();
        let (cr, source, locked) = entry(CONTACT_RETRIEVAL);
        let out = serde_json::json!({
            "connected": connected.as_ref().map(|a| serde_json::json!({
                "org_id": a.org_id, "user_id": a.user_id, "username": a.username,
                "instance_url": a.instance_url, "since": a.connected_at,
            })),
            "groups": groups,
            "contact_retrieval": {"value": cr, "source": source, "locked": locked},
            "store": {"path": data.settings(), "revision": store.revision, "updated_at": store.updated_at},
            "backup": backup.as_ref().map(|b| serde_json::json!({
                "taken_at": b.taken_at, "org_id": b.org_id, "username": b.username,
                "enabled": b.groups.iter().map(|(g, gb)| (g.section(), gb.enabled)).collect::<BTreeMap<_, _>>(),
            })),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit::OK);
    }
    match &connected {
        Some(a) => outln!(
            "integrated with org {} as {} ({}) at {}, since {}",
            a.org_id,
            a.username,
            a.user_id,
            a.instance_url,
            a.connected_at
        ),
        None => outln!("not integrated: `callsync connect` signs in"),
    }
    for g in Group::ALL {
        outln!(
            "{}: {}",
            g.title(),
            if g.enabled_in(&values) {
                "enabled"
            } else {
                "disabled"
            }
        );
        for k in keys_of(g) {
            let (v, source, locked) = entry(k);
            outln!(
                "  {k} = {v}  # {source}{}",
                if locked { " [locked]" } else { "" }
            );
        }
    }
    let (cr, source, locked) = entry(CONTACT_RETRIEVAL);
    outln!(
        "contact retrieval: {}  # {CONTACT_RETRIEVAL}, {source}{}",
        if cr.as_bool() == Some(true) {
            "on"
        } else {
            "off"
        },
        if locked { " [locked]" } else { "" }
    );
    outln!(
        "settings store: {} (revision {}{})",
        data.settings().display(),
        store.revision,
        if store.updated_at.is_empty() {
            String::new()
        } else {
            format!(", {}", store.updated_at)
        }
    );
    match backup {
        Some(b) => outln!(
            "backup: taken {} for org {} ({}); `callsync settings restore` applies it",
            b.taken_at,
            b.org_id,
            b.username
        ),
        None => outln!("backup: none (one is taken at `callsync disconnect`)"),
    }
    Ok(exit::OK)
}

fn restore(
    app: &App,
    layered: &Layered,
    data: &DataDir,
    opts: &LoadOptions,
    json: bool,
) -> anyhow::Result<u8> {
    let Some(backup) = Backup::load(&data.settings_backup())? else {
        eprintln!("callsync: there is no settings backup to restore (one is taken at `callsync disconnect`). Configure the activity history, meeting history and assignee settings with `callsync settings set` (see `callsync settings show`).");
        return Ok(exit::FAILURE);
    };
    let signed_in = app.auth_store().load().ok().flatten();
    if let Some(a) = signed_in.as_ref().filter(|a| a.org_id != backup.org_id) {
        eprintln!(
            "callsync: warning: the backup is from org {} ({}), you are signed in to org {}: field names and users may not exist here (checked below)",
            backup.org_id, backup.username, a.org_id
        );
    }
    let plan = settings::restore_plan(&backup);
    let store_path = data.settings();
    let values = settings::apply_plan(&Store::load(&store_path)?.values, &plan);
    // `now`: what is in effect after the restore, for the check against the org.
    let Some((rev, now)) = save(opts, &store_path, values)? else {
        eprintln!("callsync: the backup was not restored");
        return Ok(exit::FAILURE);
    };
    let before = layered.values();
    let locked: Vec<&String> = plan
        .iter()
        .filter(|(k, v)| layered.is_locked(k) && before.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    let mut lines = Vec::new();
    for g in Group::ALL {
        let enabled = backup.groups.get(&g).is_some_and(|b| b.enabled);
        let what = match (g, enabled) {
            (_, true) => "restored, enabled, with the backed-up settings".to_owned(),
            (Group::Activity, false) => "restored disabled; its Task-object settings (status, templates, custom fields, external id) reset to the defaults".to_owned(),
            (Group::Meeting, false) => "restored disabled; its settings reset to the defaults".to_owned(),
            (Group::Assignee, false) => "restored disabled, with the backed-up settings".to_owned(),
        };
        lines.push(format!("{}: {what}", g.title()));
    }
    lines.push(format!(
        "contact retrieval: not restored (stays {})",
        if now.config.sync.contact_retrieval {
            "on"
        } else {
            "off"
        }
    ));
    let findings = match (&signed_in, app.client()) {
        (Some(_), Ok(client)) => crate::cli::runtime()?.block_on(async {
            callsync_app::checks::check_against_org(&client, &now.config)
                .await
                .map_err(|e| e.to_string())
        }),
        _ => Err("not signed in: run `callsync connect`, then `callsync doctor`".into()),
    };
    if json {
        let out = serde_json::json!({
            "restored_from": {"taken_at": backup.taken_at, "org_id": backup.org_id, "username": backup.username},
            "revision": rev,
            "summary": lines,
            "locked_kept": locked,
            "checked": findings.is_ok(),
            "not_checked_because": findings.as_ref().err(),
            "errors": findings.as_ref().ok(),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "Restored the settings backed up {} (org {}, {}); settings revision {rev}",
            backup.taken_at,
            backup.org_id,
            backup.username
        );
        for l in &lines {
            outln!("  {l}");
        }
        for k in &locked {
            outln!("  {k}: locked by your IT department; the locked value stays");
        }
        match &findings {
            Ok(f) if f.is_empty() => {
                outln!("Checked against the org: every setting can be used.")
            }
            Ok(f) => {
                outln!("Checked against the org: {} problem(s) to fix:", f.len());
                for x in f {
                    outln!("  {}: {}\n      fix: {}", x.item, x.problem, x.fix);
                }
            }
            Err(why) => outln!("Not checked against the org: {why}"),
        }
    }
    Ok(match findings {
        Ok(f) if !f.is_empty() => exit::PARTIAL,
        _ => exit::OK,
    })
}
