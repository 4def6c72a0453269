//! The layers and how they merge: sources, locks, the key schema, `--set` and environment
//! values, and writing keys into a file with its comments kept.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::*;

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum Source {
    Default,
    Managed(PathBuf),
    User(PathBuf),
    /// The integration settings store (`callsync settings set|import|restore`).
    Settings(PathBuf),
    Env(String),
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Managed(p) => write!(f, "managed file {}", p.display()),
            Source::User(p) => write!(f, "user file {}", p.display()),
            Source::Settings(p) => write!(f, "settings store {}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::CommandLine => f.write_str("command line"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: unknown key `{key}`{hint}")]
    UnknownKey {
        origin: Source,
        key: String,
        hint: String,
    },
    #[error("{origin}: bad value for `{key}`: {reason}")]
    BadValue {
        origin: Source,
        key: String,
        reason: String,
    },
    #[error("{origin}: `policy.locked` may only be set in the machine-wide managed file")]
    PolicyOutsideManaged { origin: Source },
    #[error("--set {0:?}: expected KEY=VALUE")]
    BadSet(String),
}

/// Where to look for the two files, and what the environment and command line say.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub managed_file: Option<PathBuf>,
    pub user_file: Option<PathBuf>,
    /// The user named the file (`--config`): it must exist.
    pub user_file_required: bool,
    /// Values from the OS policy store (Group Policy, managed preferences): applied after the
    /// managed file, and locked.
    pub policy: BTreeMap<String, toml::Value>,
    /// The integration settings store (`<data>/settings.json`).
    pub settings_file: Option<PathBuf>,
    /// Values to use instead of the store's (checking a change before it is saved).
    pub settings_values: Option<BTreeMap<String, toml::Value>>,
    pub env: Vec<(String, String)>,
    pub cli: Vec<(String, String)>,
}

/// The machine-wide managed file's standard place on this OS (`CALLSYNC_MANAGED_CONFIG`
/// overrides it, for tests and odd setups).
pub fn default_managed_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CALLSYNC_MANAGED_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if cfg!(windows) {
        std::env::var_os("ProgramData").map(|d| PathBuf::from(d).join("callsync\\config.toml"))
    } else if cfg!(target_os = "macos") {
        Some(PathBuf::from(
            "/Library/Application Support/callsync/config.toml",
        ))
    } else {
        Some(PathBuf::from("/etc/xdg/callsync/config.toml"))
    }
}

/// Effective configuration with each value's origin.
#[derive(Clone, Debug)]
pub struct Layered {
    pub config: Config,
    /// Leaf key → where its effective value came from.
    pub origins: BTreeMap<String, Source>,
    /// Keys the managed file locked.
    pub locked: BTreeSet<String>,
    /// Things to tell the user that are not errors (ignored overrides of locked keys).
    pub warnings: Vec<String>,
    pub managed_file: Option<PathBuf>,
    pub user_file: Option<PathBuf>,
}

impl Layered {
    pub fn is_locked(&self, key: &str) -> bool {
        is_locked_by(&self.locked, key)
    }

    /// Leaf keys with their effective values, in schema order.
    pub fn entries(&self) -> Vec<(String, toml::Value)> {
        flatten(&to_value(&self.config)).into_iter().collect()
    }

    /// Effective values by schema key (maps such as `assignee.agents` whole).
    pub fn values(&self) -> BTreeMap<String, toml::Value> {
        flatten_with(&to_value(&self.config), schema())
    }
}

static SCHEMA: std::sync::LazyLock<BTreeMap<String, toml::Value>> =
    std::sync::LazyLock::new(|| flatten(&to_value(&Config::default())));

/// Every key with its default value (maps such as `assignee.agents` as one key).
pub fn schema() -> &'static BTreeMap<String, toml::Value> {
    &SCHEMA
}

/// `key`'s default, or why there is no such key (with a "did you mean" hint).
pub fn known_key(key: &str) -> Result<&'static toml::Value, String> {
    schema()
        .get(key)
        .ok_or_else(|| format!("unknown key `{key}`{}", hint_for(schema(), key)))
}

/// Parses a value given on the command line for `key` (by the type of its default): strings
/// as they are, booleans, numbers, lists as `a,b` or TOML, maps as an inline TOML table.
pub fn parse_value(key: &str, raw: &str) -> Result<toml::Value, String> {
    parse_scalar(known_key(key)?, raw)
}

/// Flattens a TOML document to schema keys (for imports); unknown keys are errors.
pub fn flatten_document(table: toml::Table) -> Result<BTreeMap<String, toml::Value>, String> {
    let flat = flatten_with(&toml::Value::Table(table), schema());
    for k in flat.keys() {
        known_key(k)?;
    }
    Ok(flat)
}

/// Nests schema keys back into a TOML document (for exports).
pub fn document(values: &BTreeMap<String, toml::Value>) -> toml::Value {
    unflatten(values)
}

fn is_locked_by(locked: &BTreeSet<String>, key: &str) -> bool {
    locked
        .iter()
        .any(|l| key == l || key.starts_with(&format!("{l}.")))
}

fn to_value(c: &Config) -> toml::Value {
    toml::Value::try_from(c).unwrap_or(toml::Value::Table(Default::default()))
}

/// `a.b.c` → value for every non-table leaf. Empty tables (maps with keys of the user's
/// choosing, like `assignee.agents`) are leaves too.
fn flatten(v: &toml::Value) -> BTreeMap<String, toml::Value> {
    flatten_with(v, &BTreeMap::new())
}

/// As [`flatten`], keeping any table at a path the schema knows as a map leaf whole.
fn flatten_with(
    v: &toml::Value,
    schema: &BTreeMap<String, toml::Value>,
) -> BTreeMap<String, toml::Value> {
    fn walk(
        prefix: &str,
        v: &toml::Value,
        schema: &BTreeMap<String, toml::Value>,
        out: &mut BTreeMap<String, toml::Value>,
    ) {
        let map_leaf =
            !prefix.is_empty() && matches!(schema.get(prefix), Some(toml::Value::Table(_)));
        match v {
            toml::Value::Table(t) if (prefix.is_empty() || !t.is_empty()) && !map_leaf => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, schema, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, schema, &mut out);
    out
}

fn unflatten(flat: &BTreeMap<String, toml::Value>) -> toml::Value {
    fn insert(t: &mut toml::Table, parts: &[&str], v: toml::Value) {
        match parts {
            [] => {}
            [last] => {
                t.insert((*last).to_owned(), v);
            }
            [first, rest @ ..] => {
                let entry = t
                    .entry((*first).to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                if let toml::Value::Table(next) = entry {
                    insert(next, rest, v);
                }
            }
        }
    }
    let mut root = toml::Table::new();
    for (key, v) in flat {
        let parts: Vec<&str> = key.split('.').collect();
        insert(&mut root, &parts, v.clone());
    }
    toml::Value::Table(root)
}

/// Parses an environment or command-line value by the type the key has in the defaults.
fn parse_scalar(template: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    match template {
        toml::Value::String(_) => Ok(toml::Value::String(raw.to_owned())),
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("{raw:?} is not true or false")),
        },
        toml::Value::Integer(_) => raw
            .trim()
            .parse()
            .map(toml::Value::Integer)
            .map_err(|_| format!("{raw:?} is not a whole number")),
        toml::Value::Float(_) => raw
            .trim()
            .parse()
            .map(toml::Value::Float)
            .map_err(|_| format!("{raw:?} is not a number")),
        toml::Value::Array(_) => {
            // `["a", "b"]` as TOML, or the friendlier `a,b`.
            if raw.trim_start().starts_with('[') {
                let doc: toml::Table = toml::from_str(&format!("v = {raw}"))
                    .map_err(|e| format!("not a TOML array: {e}"))?;
                doc.get("v").cloned().ok_or_else(|| "empty".to_owned())
            } else {
                Ok(toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ))
            }
        }
        toml::Value::Table(_) => {
            // `{taro = "005…", hanako = "005…"}`.
            let doc: toml::Table = toml::from_str(&format!("v = {raw}"))
                .map_err(|e| format!("not a TOML inline table ({{key = \"value\"}}): {e}"))?;
            match doc.get("v") {
                Some(t @ toml::Value::Table(_)) => Ok(t.clone()),
                _ => Err("not a TOML inline table".into()),
            }
        }
        _ => Err("this key cannot be set this way".into()),
    }
}

fn hint_for(schema: &BTreeMap<String, toml::Value>, key: &str) -> String {
    schema
        .keys()
        .map(|k| {
            (
                strsim::normalized_damerau_levenshtein(
                    &k.to_ascii_lowercase(),
                    &key.to_ascii_lowercase(),
                ),
                k,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

struct Merger {
    schema: BTreeMap<String, toml::Value>,
    values: BTreeMap<String, toml::Value>,
    origins: BTreeMap<String, Source>,
    locked: BTreeSet<String>,
    warnings: Vec<String>,
}

impl Merger {
    fn known(&self, key: &str) -> Option<String> {
        self.schema
            .keys()
            .find(|k| k.eq_ignore_ascii_case(key))
            .cloned()
    }

    fn set(&mut self, key: String, value: toml::Value, source: Source) {
        if !matches!(source, Source::Managed(_)) && is_locked_by(&self.locked, &key) {
            let managed = self
                .origins
                .values()
                .find_map(|s| matches!(s, Source::Managed(_)).then(|| s.to_string()))
                .unwrap_or_else(|| "the managed file".into());
            self.warnings.push(format!(
                "{source} sets `{key}`, which is locked by {managed}; the locked value is kept"
            ));
            return;
        }
        self.values.insert(key.clone(), value);
        self.origins.insert(key, source);
    }

    fn file(&mut self, path: &Path, source: Source) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let flat = flatten_with(&toml::Value::Table(table), &self.schema);
        for (key, value) in flat {
            if !self.schema.contains_key(&key) {
                return Err(ConfigError::UnknownKey {
                    hint: hint_for(&self.schema, &key),
                    origin: source,
                    key,
                });
            }
            if key.starts_with("policy.") {
                if !matches!(source, Source::Managed(_)) {
                    return Err(ConfigError::PolicyOutsideManaged { origin: source });
                }
                if let toml::Value::Array(items) = &value {
                    for item in items {
                        let Some(lock) = item.as_str() else { continue };
                        let ok = self
                            .schema
                            .keys()
                            .any(|k| k == lock || k.starts_with(&format!("{lock}.")));
                        if !ok || lock.starts_with("policy") {
                            return Err(ConfigError::BadValue {
                                origin: source,
                                key,
                                reason: format!("{lock:?} is not a configuration key or section"),
                            });
                        }
                        self.locked.insert(lock.to_owned());
                    }
                }
            }
            self.set(key, value, source.clone());
        }
        Ok(())
    }

    /// A layer of values already keyed by schema keys (the settings store).
    fn values(
        &mut self,
        values: &BTreeMap<String, toml::Value>,
        source: Source,
    ) -> Result<(), ConfigError> {
        for (key, value) in values {
            if !self.schema.contains_key(key) || key.starts_with("policy.") {
                return Err(ConfigError::UnknownKey {
                    hint: hint_for(&self.schema, key),
                    origin: source,
                    key: key.clone(),
                });
            }
            self.set(key.clone(), value.clone(), source.clone());
        }
        Ok(())
    }

    fn scalar(&mut self, key: &str, raw: &str, source: Source) -> Result<(), ConfigError> {
        let Some(known) = self.known(key) else {
            return Err(ConfigError::UnknownKey {
                hint: hint_for(&self.schema, key),
                origin: source,
                key: key.to_owned(),
            });
        };
        if known.starts_with("policy.") {
            return Err(ConfigError::PolicyOutsideManaged { origin: source });
        }
        let template = &self.schema[&known];
        let value = parse_scalar(template, raw).map_err(|reason| ConfigError::BadValue {
            origin: source.clone(),
            key: known.clone(),
            reason,
        })?;
        self.set(known, value, source);
        Ok(())
    }
}

/// Environment variables that configure callsync: `CALLSYNC_<SECTION>__<KEY>` (double underscore
/// between levels), e.g. `CALLSYNC_PHONE__DEFAULT_REGION=US`.
pub fn env_overrides() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("CALLSYNC_") && k.contains("__"))
        .collect()
}

/// Builds the effective configuration.
pub fn load(opts: &LoadOptions) -> Result<Layered, ConfigError> {
    let defaults = schema().clone();
    let mut m = Merger {
        origins: defaults
            .keys()
            .map(|k| (k.clone(), Source::Default))
            .collect(),
        values: defaults.clone(),
        schema: defaults,
        locked: BTreeSet::new(),
        warnings: Vec::new(),
    };
    let mut managed_used = None;
    if let Some(p) = &opts.managed_file {
        if p.exists() {
            m.file(p, Source::Managed(p.clone()))?;
            managed_used = Some(p.clone());
        }
    }
    if !opts.policy.is_empty() {
        let source = Source::Managed(PathBuf::from(crate::policy::SOURCE));
        for (key, value) in &opts.policy {
            m.locked.insert(key.clone());
            m.set(key.clone(), value.clone(), source.clone());
        }
    }
    let mut user_used = None;
    if let Some(p) = &opts.user_file {
        if p.exists() || opts.user_file_required {
            m.file(p, Source::User(p.clone()))?;
            user_used = Some(p.clone());
        }
    }
    if let Some(p) = &opts.settings_file {
        let values = match &opts.settings_values {
            Some(v) => v.clone(),
            None => {
                crate::settings::Store::load(p)
                    .map_err(|e| ConfigError::Read {
                        path: p.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })?
                    .values
            }
        };
        m.values(&values, Source::Settings(p.clone()))?;
    }
    for (var, raw) in &opts.env {
        let key = var
            .trim_start_matches("CALLSYNC_")
            .to_ascii_lowercase()
            .replace("__", ".");
        m.scalar(&key, raw, Source::Env(var.clone()))?;
    }
    for (key, raw) in &opts.cli {
        m.scalar(key, raw, Source::CommandLine)?;
    }

    let merged = unflatten(&m.values);
    let config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::BadValue {
            origin: m.origins.get(&key).cloned().unwrap_or(Source::Default),
            reason: e.into_inner().to_string(),
            key,
        }
    })?;
    if let Some((key, reason)) = config.problems().into_iter().next() {
        return Err(ConfigError::BadValue {
            origin: m.origins.get(&key).cloned().unwrap_or(Source::Default),
            key,
            reason,
        });
    }
    Ok(Layered {
        config,
        origins: m.origins,
        locked: m.locked,
        warnings: m.warnings,
        managed_file: managed_used,
        user_file: user_used,
    })
}

/// A call log named by an installer: see [`set_in_file`].
#[derive(Clone, Copy, Debug)]
pub struct InstallerCallLog<'a> {
    pub kind: &'a str,
    pub path: &'a str,
}

/// Parses `KEY=VALUE` from `--set`.
pub fn parse_set(s: &str) -> Result<(String, String), ConfigError> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| ConfigError::BadSet(s.to_owned()))
}

/// Sets `KEY=VALUE` pairs in the TOML file `path` (created if missing), keeping its comments and
/// layout; values are typed and checked like `--set`. Empty values are skipped. Returns how many
/// were written.
///
/// `call_log` is the one call log an installer names (the MSI's `CALLLOG` and `CALLLOGKIND`),
/// written as `calllog.sources = [{ kind, path }]`. It comes as a plain path, never as TOML: an
/// installer then has nothing to quote or escape (MSI formatted text treats `[ ]` and `{ }` as
/// its own, and a path may hold quotes, brackets or non-ASCII). An empty path changes nothing.
pub fn set_in_file(
    path: &Path,
    pairs: &[String],
    call_log: Option<InstallerCallLog<'_>>,
) -> Result<usize, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let mut n = 0;
    for pair in pairs {
        let (key, raw) = parse_set(pair).map_err(|e| e.to_string())?;
        if raw.trim().is_empty() {
            continue;
        }
        let v = parse_value(&key, &raw).map_err(|e| format!("{key}: {e}"))?;
        let value: toml_edit::Value = v.to_string().parse().map_err(|e| format!("{key}: {e}"))?;
        let parts: Vec<&str> = key.split('.').collect();
        let (last, sections) = parts.split_last().ok_or("empty key")?;
        let mut table = doc.as_table_mut();
        for s in sections {
            let entry = table
                .entry(s)
                .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
            table = entry
                .as_table_mut()
                .ok_or_else(|| format!("{key}: `{s}` is not a table in {}", path.display()))?;
        }
        // Indexing keeps the key, and the comments above it.
        table[last] = toml_edit::value(value);
        n += 1;
    }
    if let Some(log) = call_log.filter(|l| !l.path.trim().is_empty()) {
        if !callsync_calllog::SOURCE_KINDS.contains(&log.kind) {
            return Err(format!(
                "call log kind `{}`: expected one of {}",
                log.kind,
                callsync_calllog::SOURCE_KINDS.join(", ")
            ));
        }
        let mut source = toml_edit::InlineTable::new();
        source.insert("kind", log.kind.into());
        source.insert("path", log.path.into());
        let mut sources = toml_edit::Array::new();
        sources.push(source);
        let calllog = doc
            .as_table_mut()
            .entry("calllog")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("calllog: not a table in {}", path.display()))?;
        calllog["sources"] = toml_edit::value(sources);
        n += 1;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, doc.to_string())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(n)
}
