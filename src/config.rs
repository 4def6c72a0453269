//! Layered configuration. Lowest first: built-in defaults → the machine-wide managed file →
//! the user's file → the integration settings store (`callsync settings`, see [`crate::settings`])
//! → `CALLSYNC_*` environment variables → command-line `--set`. The managed file
//! may lock keys (`[policy] locked = [...]`); later layers then cannot change them, and the agent
//! says so instead of failing, because a user's stale file must never stop a fleet's agents.
//!
//! Every effective value remembers where it came from, for `callsync config show` and for error
//! messages that name the file (or variable) and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::CacheOptions;
use crate::lookup::LookupRules;
use crate::phone::{parse_region, Normalizer, PhoneError};
use crate::record::ObjectKind;

/// The complete configuration. Every field has a default; see `assets/config.example.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    pub phone: PhoneConfig,
    pub lookup: LookupConfig,
    pub cache: CacheConfig,
    pub logging: LoggingConfig,
    pub salesforce: SalesforceConfig,
    pub auth: AuthConfig,
    pub sync: SyncConfig,
    pub calllog: CallLogConfig,
    pub activity: ActivityConfig,
    pub meeting: MeetingConfig,
    pub assignee: AssigneeConfig,
    pub tls: TlsConfig,
    pub proxy: ProxyConfig,
    pub ui: UiConfig,
    pub policy: PolicyConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhoneConfig {
    /// ISO 3166 region for numbers written without a country code.
    pub default_region: String,
    /// Regions tried for national numbers that are not valid in the default region.
    pub fallback_regions: Vec<String>,
}

impl Default for PhoneConfig {
    fn default() -> Self {
        PhoneConfig {
            default_region: "JP".into(),
            fallback_regions: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LookupConfig {
    /// Object priority when a number is on several objects.
    pub order: Vec<String>,
    pub fields: LookupFields,
}

impl Default for LookupConfig {
    fn default() -> Self {
        let rules = LookupRules::default();
        LookupConfig {
            order: rules
                .order
                .iter()
                .map(|k| k.api_name().to_owned())
                .collect(),
            fields: LookupFields {
                contact: rules.contact_fields,
                account: rules.account_fields,
                lead: rules.lead_fields,
            },
        }
    }
}

/// Phone fields matched per object (standard or custom API names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupFields {
    #[serde(rename = "Contact", default)]
    pub contact: Vec<String>,
    #[serde(rename = "Account", default)]
    pub account: Vec<String>,
    #[serde(rename = "Lead", default)]
    pub lead: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// sled page cache in MiB. Larger is faster for huge orgs and costs memory.
    pub memory_mb: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_mb: CacheOptions::default().cache_capacity / (1024 * 1024),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a filter such as `info,callsync::sync=debug`.
    /// `RUST_LOG` overrides it.
    pub level: String,
    /// Mask phone numbers in logs except their last four digits.
    pub mask_numbers: bool,
    /// Daily log files to keep.
    pub keep_files: u32,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            mask_numbers: true,
            keep_files: 14,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceConfig {
    /// `https://login.salesforce.com`, `https://test.salesforce.com` or a My Domain URL.
    pub login_url: String,
    /// The connected app's consumer key.
    pub client_id: String,
    /// REST API version, e.g. `62.0`.
    pub api_version: String,
    /// Loopback port of the sign-in redirect (`http://localhost:PORT/callback`); the connected
    /// app's callback URL must match it exactly.
    pub redirect_port: u16,
    /// JWT bearer sign-in (IT-managed, no browser): the Salesforce username…
    pub jwt_username: String,
    /// …and the RSA private key (PEM) whose certificate the connected app holds.
    pub jwt_key_file: String,
    /// Seconds before a request to Salesforce is given up.
    pub timeout_secs: u64,
}

impl Default for SalesforceConfig {
    fn default() -> Self {
        SalesforceConfig {
            login_url: "https://login.salesforce.com".into(),
            client_id: String::new(),
            api_version: "62.0".into(),
            redirect_port: 1717,
            jwt_username: String::new(),
            jwt_key_file: String::new(),
            timeout_secs: 30,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Where the refresh token is kept: `auto` (the OS credential store, else a file readable
    /// only by the user), `keyring` or `file`.
    pub store: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            store: "auto".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Retrieve Contacts, Accounts and Leads (off: lookups say retrieval is off).
    pub contact_retrieval: bool,
    /// Seconds between incremental syncs (the agent adapts around it).
    pub interval_secs: u64,
    /// Seconds re-read before the watermark on each cycle.
    pub overlap_secs: u64,
    /// Above this share of the org's daily API limit (percent), sync slows down.
    pub api_usage_limit_percent: u8,
    /// First loads of objects larger than this use Bulk API 2.0 (0: never).
    pub bulk_threshold: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            contact_retrieval: true,
            interval_secs: 300,
            overlap_secs: 120,
            api_usage_limit_percent: 50,
            bulk_threshold: 20_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallLogConfig {
    /// The call logs to follow: `{ kind = "native" | "linphone" | "twinkle" | "csv", path = "…" }`
    /// (linphone and twinkle have default paths).
    pub sources: Vec<CallLogSource>,
    /// Seconds between checks of a log folder on a filesystem that may not report changes (a
    /// network share, FUSE) or that does not exist yet. Watched local folders are checked on
    /// every change, and every 60 s as a safety net.
    pub poll_secs: u64,
}

impl Default for CallLogConfig {
    fn default() -> Self {
        CallLogConfig {
            sources: Vec::new(),
            poll_secs: 2,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of extra trusted CAs (e.g. the company's TLS-inspection CA), added to the OS
    /// trust store. Verification can never be turned off.
    pub extra_ca_file: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// `http://proxy.corp:3128`. Empty: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment,
    /// then the system's proxy settings (Windows, macOS).
    pub url: String,
    /// Basic-auth user; the password is kept in the OS credential store (`callsync proxy password`).
    pub user: String,
    /// Hosts that bypass the proxy, comma-separated (`localhost,.corp.example`).
    pub no_proxy: String,
}

/// The tray and the screen pop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// `auto` (the OS locale), `ja` or `en`.
    pub language: String,
    /// Desktop notification with the caller's name: `ringing`, `answer` or `off`.
    pub screen_pop: crate::screenpop::PopMode,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            language: "auto".into(),
            screen_pop: crate::screenpop::PopMode::Ringing,
        }
    }
}

impl UiConfig {
    pub fn lang(&self) -> crate::i18n::Lang {
        crate::i18n::Lang::pick(&self.language)
    }
}

/// The activity history integration (Tasks), and who owns them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    pub enabled: bool,
    /// `after_end` (the only timing that writes custom fields and voicemail) or `after_begin`.
    pub timing: String,
    /// Task Status for call Tasks (Completed: they show in the activity history).
    pub status: String,
    /// The Task's unique external-id field holding the call id (recommended: exactly-once by
    /// upsert). Empty: Tasks are matched by CallObject before a create is sent again.
    pub external_id_field: String,
    /// Subject template for every call type (placeholders: {CALL_TYPE} {REMOTE_NUMBER}
    /// {DURATION} {MEMO} {COMMENT} {SPEECH_RECOGNITION} {SPEECH_RECOGNITION_SUMMARY} {AGENT}).
    pub subject: String,
    /// Comments (Description) template.
    pub description: String,
    /// Custom Task fields (API names; empty: not written).
    pub dial_start_field: String,
    pub call_start_field: String,
    pub call_end_field: String,
    pub memo_field: String,
    /// The outgoing-call setting: a click-to-call Task goes on the record it started from.
    pub click_to_call_on_record: bool,
    /// Seconds between sends of queued Tasks while some are waiting.
    pub send_interval_secs: u64,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        let t = crate::activity::default_templates();
        let first = t.values().next().cloned();
        ActivityConfig {
            enabled: true,
            timing: "after_end".into(),
            status: "Completed".into(),
            external_id_field: String::new(),
            subject: first
                .as_ref()
                .map(|t| t.subject.clone())
                .unwrap_or_default(),
            description: first.map(|t| t.description).unwrap_or_default(),
            dial_start_field: String::new(),
            call_start_field: String::new(),
            call_end_field: String::new(),
            memo_field: String::new(),
            click_to_call_on_record: true,
            send_interval_secs: 2,
        }
    }
}

impl ActivityConfig {
    pub fn settings(&self) -> crate::activity::ActivitySettings {
        use crate::activity::{ActivitySettings, CustomFields, Template, Timing};
        let template = Template {
            subject: self.subject.clone(),
            description: self.description.clone(),
        };
        ActivitySettings {
            timing: if self.timing == "after_begin" {
                Timing::AfterBegin
            } else {
                Timing::AfterEnd
            },
            status: self.status.clone(),
            templates: crate::activity::default_templates()
                .into_keys()
                .map(|k| (k, template.clone()))
                .collect(),
            custom: CustomFields {
                dial_start: self.dial_start_field.clone(),
                call_start: self.call_start_field.clone(),
                call_end: self.call_end_field.clone(),
                memo: self.memo_field.clone(),
            },
            click_to_call_on_record: self.click_to_call_on_record,
            ..ActivitySettings::default()
        }
    }

    pub fn external_id(&self) -> Option<String> {
        (!self.external_id_field.is_empty()).then(|| self.external_id_field.clone())
    }
}

/// The meeting (video) history integration: a Salesforce Event per `meeting` entry of the native
/// call-event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeetingConfig {
    pub enabled: bool,
    /// Event Subject template (placeholders: {TITLE} {RECORDING_URL} {TRANSCRIPT} {TAGS}
    /// {DURATION} {AGENT}); cut at 255 characters.
    pub subject: String,
    /// Event Description template (same placeholders); cut at 32,000 characters.
    pub description: String,
    /// Custom Event fields (API names; empty: not written): the recording URL (URL or Text) and
    /// the tags (multi-select picklist, `;`-joined).
    pub recording_url_field: String,
    pub tags_field: String,
    /// The Event's unique external-id field holding the meeting id (exactly-once by upsert).
    /// Empty: an Event that may have landed is looked up by Subject and start time.
    pub external_id_field: String,
}

impl Default for MeetingConfig {
    fn default() -> Self {
        MeetingConfig {
            enabled: false,
            subject: "Meeting: {TITLE}".into(),
            description:
                "{TITLE} ({DURATION})\nRecording: {RECORDING_URL}\nTags: {TAGS}\n{TRANSCRIPT}"
                    .into(),
            recording_url_field: String::new(),
            tags_field: String::new(),
            external_id_field: String::new(),
        }
    }
}

impl MeetingConfig {
    pub fn settings(&self) -> crate::activity::MeetingSettings {
        crate::activity::MeetingSettings {
            subject: self.subject.clone(),
            description: self.description.clone(),
            recording_url_field: self.recording_url_field.clone(),
            tags_field: self.tags_field.clone(),
        }
    }

    pub fn external_id(&self) -> Option<String> {
        (!self.external_id_field.is_empty()).then(|| self.external_id_field.clone())
    }
}

/// The activity history assignee: who owns the Tasks (and Events).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssigneeConfig {
    /// Off: every Task is owned by the signed-in user.
    pub enabled: bool,
    /// Agent identity in the call log → Salesforce User Id.
    pub agents: BTreeMap<String, String>,
    /// Owner of missed incoming calls and voicemail (empty: the signed-in user).
    pub missed_owner: String,
    /// An automatically forwarded call belongs to the User whose Phone is the destination.
    pub forwarding_to_destination: bool,
}

impl Default for AssigneeConfig {
    fn default() -> Self {
        AssigneeConfig {
            enabled: true,
            agents: BTreeMap::new(),
            missed_owner: String::new(),
            forwarding_to_destination: true,
        }
    }
}

impl AssigneeConfig {
    /// Owners, with `me` (the signed-in user) as the default.
    pub fn assignees(&self, me: Option<&str>) -> crate::activity::Assignees {
        use crate::record::RecordId;
        let default_owner = me.and_then(RecordId::parse);
        if !self.enabled {
            return crate::activity::Assignees {
                default_owner,
                agents: BTreeMap::new(),
                missed_owner: None,
                forward_to_destination: false,
            };
        }
        crate::activity::Assignees {
            default_owner,
            agents: self
                .agents
                .iter()
                .filter_map(|(k, v)| RecordId::parse(v).map(|id| (k.clone(), id)))
                .collect(),
            missed_owner: RecordId::parse(&self.missed_owner),
            forward_to_destination: self.forwarding_to_destination,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallLogSource {
    pub kind: String,
    #[serde(default)]
    pub path: String,
    /// Defaults to the kind.
    #[serde(default)]
    pub name: String,
    /// `csv` only: which columns and values mean what.
    #[serde(default)]
    pub csv: Option<crate::calllog::csvlog::CsvMapping>,
}

impl CallLogSource {
    /// The file, with `~` expanded and the softphone's default where none is given.
    pub fn resolved_path(&self) -> Option<PathBuf> {
        let home = directories::BaseDirs::new().map(|b| b.home_dir().to_owned());
        let raw = if self.path.is_empty() {
            match self.kind.as_str() {
                "linphone" => "~/.local/share/linphone/call-history.db",
                "twinkle" => "~/.twinkle/twinkle.ch",
                _ => return None,
            }
        } else {
            &self.path
        };
        match raw.strip_prefix("~/") {
            Some(rest) => home.map(|h| h.join(rest)),
            None => Some(PathBuf::from(raw)),
        }
    }

    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            self.kind.clone()
        } else {
            self.name.clone()
        }
    }

    /// The source this entry describes.
    pub fn open(&self) -> Result<Box<dyn crate::calllog::Source>, String> {
        let path = self
            .resolved_path()
            .ok_or_else(|| format!("call log source {:?} has no path", self.display_name()))?;
        crate::calllog::open_source(&self.kind, &self.display_name(), path, self.csv.clone())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Keys (or whole sections) later layers may not change. Managed file only.
    pub locked: Vec<String>,
}

impl Config {
    pub fn normalizer(&self) -> Result<Normalizer, PhoneError> {
        Normalizer::from_codes(&self.phone.default_region, &self.phone.fallback_regions)
    }

    pub fn lookup_rules(&self) -> LookupRules {
        LookupRules {
            order: self
                .lookup
                .order
                .iter()
                .filter_map(|s| ObjectKind::from_api_name(s))
                .collect(),
            contact_fields: self.lookup.fields.contact.clone(),
            account_fields: self.lookup.fields.account.clone(),
            lead_fields: self.lookup.fields.lead.clone(),
        }
    }

    pub fn cache_options(&self) -> CacheOptions {
        CacheOptions {
            cache_capacity: self.cache.memory_mb * 1024 * 1024,
            ..CacheOptions::default()
        }
    }

    /// Semantic checks serde cannot do: (key, reason) for each problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |k: &str, r: String| out.push((k.to_owned(), r));
        if let Err(e) = parse_region(&self.phone.default_region) {
            bad("phone.default_region", e.to_string());
        }
        for r in &self.phone.fallback_regions {
            if let Err(e) = parse_region(r) {
                bad("phone.fallback_regions", e.to_string());
            }
        }
        let mut seen = BTreeSet::new();
        for o in &self.lookup.order {
            match ObjectKind::from_api_name(o) {
                Some(ObjectKind::User) | None => bad(
                    "lookup.order",
                    format!("{o:?} is not one of \"Contact\", \"Account\", \"Lead\""),
                ),
                Some(_) if !seen.insert(o) => bad("lookup.order", format!("{o:?} is listed twice")),
                Some(_) => {}
            }
        }
        if self.lookup.order.is_empty() {
            bad("lookup.order", "must name at least one object".into());
        }
        for (key, fields) in [
            ("lookup.fields.Contact", &self.lookup.fields.contact),
            ("lookup.fields.Account", &self.lookup.fields.account),
            ("lookup.fields.Lead", &self.lookup.fields.lead),
        ] {
            for f in fields {
                let ok = f.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    bad(key, format!("{f:?} is not a field API name"));
                }
            }
        }
        if !(4..=4096).contains(&self.cache.memory_mb) {
            bad("cache.memory_mb", "must be between 4 and 4096".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.logging.level) {
            bad("logging.level", format!("not a log filter: {e}"));
        }
        if !(1..=365).contains(&self.logging.keep_files) {
            bad("logging.keep_files", "must be between 1 and 365".into());
        }
        let url = &self.salesforce.login_url;
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| url.starts_with(p));
        if !(url.starts_with("https://") || loopback) {
            bad(
                "salesforce.login_url",
                "must start with https:// (plain http only for a loopback test org)".into(),
            );
        }
        if !["auto", "keyring", "file"].contains(&self.auth.store.as_str()) {
            bad(
                "auth.store",
                format!(
                    "{:?} is not one of \"auto\", \"keyring\", \"file\"",
                    self.auth.store
                ),
            );
        }
        if self.salesforce.redirect_port == 0 {
            bad(
                "salesforce.redirect_port",
                "must be a port between 1 and 65535".into(),
            );
        }
        if !(5..=600).contains(&self.salesforce.timeout_secs) {
            bad(
                "salesforce.timeout_secs",
                "must be between 5 and 600".into(),
            );
        }
        if !(30..=86_400).contains(&self.sync.interval_secs) {
            bad("sync.interval_secs", "must be between 30 and 86400".into());
        }
        if !(1..=99).contains(&self.sync.api_usage_limit_percent) {
            bad(
                "sync.api_usage_limit_percent",
                "must be between 1 and 99".into(),
            );
        }
        if self.sync.bulk_threshold != 0 && self.sync.bulk_threshold < 2_000 {
            bad(
                "sync.bulk_threshold",
                "must be 0 (never) or at least 2000".into(),
            );
        }
        if self.sync.overlap_secs > 3_600 {
            bad("sync.overlap_secs", "must be at most 3600".into());
        }
        let mut names = BTreeSet::new();
        for src in &self.calllog.sources {
            if !crate::calllog::SOURCE_KINDS.contains(&src.kind.as_str()) {
                bad(
                    "calllog.sources",
                    format!(
                        "{:?} is not one of {}",
                        src.kind,
                        crate::calllog::SOURCE_KINDS.join(", ")
                    ),
                );
            } else if src.resolved_path().is_none() {
                bad(
                    "calllog.sources",
                    format!("a {} source needs a path", src.kind),
                );
            }
            if !names.insert(src.display_name()) {
                bad(
                    "calllog.sources",
                    format!(
                        "two sources are named {:?}: give them names",
                        src.display_name()
                    ),
                );
            }
        }
        if !["after_end", "after_begin"].contains(&self.activity.timing.as_str()) {
            bad(
                "activity.timing",
                format!(
                    "{:?} is not \"after_end\" or \"after_begin\"",
                    self.activity.timing
                ),
            );
        }
        if self.activity.status.trim().is_empty() {
            bad("activity.status", "must name a Task Status value".into());
        }
        for (agent, user) in &self.assignee.agents {
            if crate::record::RecordId::parse(user).is_none_or(|u| u.prefix() != "005") {
                bad(
                    "assignee.agents",
                    format!("{agent:?} → {user:?} is not a User Id (005…)"),
                );
            }
        }
        if !self.assignee.missed_owner.is_empty()
            && crate::record::RecordId::parse(&self.assignee.missed_owner)
                .is_none_or(|u| u.prefix() != "005")
        {
            bad(
                "assignee.missed_owner",
                "must be a User Id (005…) or empty".into(),
            );
        }
        for (key, f) in [
            (
                "activity.external_id_field",
                &self.activity.external_id_field,
            ),
            ("activity.dial_start_field", &self.activity.dial_start_field),
            ("activity.call_start_field", &self.activity.call_start_field),
            ("activity.call_end_field", &self.activity.call_end_field),
            ("activity.memo_field", &self.activity.memo_field),
            (
                "meeting.recording_url_field",
                &self.meeting.recording_url_field,
            ),
            ("meeting.tags_field", &self.meeting.tags_field),
            ("meeting.external_id_field", &self.meeting.external_id_field),
        ] {
            let ok = f.is_empty()
                || (f.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !ok {
                bad(key, format!("{f:?} is not a field API name"));
            }
        }
        if self.meeting.subject.trim().is_empty() {
            bad(
                "meeting.subject",
                "an Event needs a Subject template".into(),
            );
        }
        if !(1..=3_600).contains(&self.activity.send_interval_secs) {
            bad(
                "activity.send_interval_secs",
                "must be between 1 and 3600".into(),
            );
        }
        let schemes = ["http://", "https://", "socks5://"];
        if !self.proxy.url.is_empty() && !schemes.iter().any(|p| self.proxy.url.starts_with(p)) {
            bad(
                "proxy.url",
                format!("{:?} is not like http://proxy.corp:3128", self.proxy.url),
            );
        }
        if !(1..=3_600).contains(&self.calllog.poll_secs) {
            bad("calllog.poll_secs", "must be between 1 and 3600".into());
        }
        let v = &self.salesforce.api_version;
        if v.split_once('.')
            .is_none_or(|(a, b)| a.parse::<u32>().is_err() || b.parse::<u32>().is_err())
        {
            bad(
                "salesforce.api_version",
                format!("{v:?} is not like \"62.0\""),
            );
        }
        out
    }
}

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
pub fn set_in_file(path: &Path, pairs: &[String]) -> Result<usize, String> {
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
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, doc.to_string())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(n)
}

/// The annotated example shipped in `assets/`, printed by `callsync config example`.
pub const EXAMPLE: &str = include_str!("../assets/config.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(set_in_file(&f, &["calllog.poll_secs=soon".into()]).is_err());
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
        for kind in crate::calllog::SOURCE_KINDS {
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
}
