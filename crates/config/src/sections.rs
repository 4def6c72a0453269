//! The configuration's shape: every section and key, with its default and its checks.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use callsync_core::lookup::LookupRules;
use callsync_core::phone::{parse_region, Normalizer, PhoneError};
use callsync_core::record::ObjectKind;

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
    /// Days an agent's choice among several matches stays that number's winner (0: never).
    pub remember_choice_days: u32,
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
            remember_choice_days: rules.remember_choice_days,
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
    /// sled's page cache in MiB: syncs and imports go faster with more, at that much memory
    /// more while they run. Lookups do not use it (they read the phone index file).
    pub memory_mb: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { memory_mb: 16 }
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
    /// A ringing or dialled number with no match runs one incremental cycle at once (the
    /// record may have been created since the last sync) and pops again with the answer.
    pub refresh_on_miss: bool,
    /// How long the screen pop waits for that answer before it stays "Unknown caller" (ms).
    pub refresh_on_miss_wait_ms: u64,
    /// At most one such cycle per this many seconds; misses in between share the next one.
    pub refresh_on_miss_every_secs: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            contact_retrieval: true,
            interval_secs: 300,
            overlap_secs: 120,
            api_usage_limit_percent: 50,
            bulk_threshold: 20_000,
            refresh_on_miss: true,
            refresh_on_miss_wait_ms: 2_000,
            refresh_on_miss_every_secs: 30,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallLogConfig {
    /// The call logs to follow: `{ kind = "native" | "linphone" | "twinkle" | "microsip" |
    /// "microsip-csv" | "csv", path = "…" }` (linphone and twinkle have default paths; microsip
    /// on Windows).
    pub sources: Vec<callsync_calllog::SourceSpec>,
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
    pub screen_pop: callsync_core::pop::PopMode,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            language: "auto".into(),
            screen_pop: callsync_core::pop::PopMode::Ringing,
        }
    }
}

impl UiConfig {
    pub fn lang(&self) -> callsync_core::i18n::Lang {
        callsync_core::i18n::Lang::pick(&self.language, sys_locale::get_locale().as_deref())
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
    /// A call from (or to) a number no record has: `unlinked` (its Task on no record, as
    /// MiiTel does), `create_lead` or `create_contact` (a record created once per number, with
    /// the number in Phone, and the Task on it).
    pub unknown_caller: String,
    /// That record's LastName.
    pub unknown_caller_last_name: String,
    /// A created Lead's Company (required on Lead).
    pub unknown_caller_company: String,
    /// Other fields of that record (API name → text), e.g. fields the org requires.
    pub unknown_caller_fields: std::collections::BTreeMap<String, String>,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        let t = callsync_core::activity::default_templates();
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
            unknown_caller: "unlinked".into(),
            unknown_caller_last_name: "Unknown caller".into(),
            unknown_caller_company: "Unknown".into(),
            unknown_caller_fields: Default::default(),
        }
    }
}

impl ActivityConfig {
    pub fn settings(&self) -> callsync_core::activity::ActivitySettings {
        use callsync_core::activity::{
            ActivitySettings, CustomFields, Template, Timing, UnknownCaller,
        };
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
            templates: callsync_core::activity::default_templates()
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
            unknown_caller: match self.unknown_caller.as_str() {
                "create_lead" => UnknownCaller::CreateLead,
                "create_contact" => UnknownCaller::CreateContact,
                _ => UnknownCaller::Unlinked,
            },
            unknown_record: self
                .unknown_caller_fields
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .chain([
                    (
                        "LastName".to_owned(),
                        serde_json::json!(self.unknown_caller_last_name),
                    ),
                    (
                        "Company".to_owned(),
                        serde_json::json!(self.unknown_caller_company),
                    ),
                ])
                .collect(),
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
    pub fn settings(&self) -> callsync_core::activity::MeetingSettings {
        callsync_core::activity::MeetingSettings {
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
    pub fn assignees(&self, me: Option<&str>) -> callsync_core::activity::Assignees {
        use callsync_core::record::RecordId;
        let default_owner = me.and_then(RecordId::parse);
        if !self.enabled {
            return callsync_core::activity::Assignees {
                default_owner,
                agents: BTreeMap::new(),
                missed_owner: None,
                forward_to_destination: false,
            };
        }
        callsync_core::activity::Assignees {
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

impl SyncConfig {
    /// The sync schedule's input from the configured interval and API threshold, with no calls,
    /// failures or usage known yet.
    pub fn schedule(&self) -> callsync_core::schedule::ScheduleInput {
        callsync_core::schedule::ScheduleInput {
            base: std::time::Duration::from_secs(self.interval_secs),
            calls_flowing: false,
            idle: false,
            api_share: None,
            api_threshold: f64::from(self.api_usage_limit_percent) / 100.0,
            failures: 0,
            rate_limited: false,
            jitter: 0.5,
        }
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
            remember_choice_days: self.lookup.remember_choice_days,
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
        if !["unlinked", "create_lead", "create_contact"]
            .contains(&self.activity.unknown_caller.as_str())
        {
            bad(
                "activity.unknown_caller",
                format!(
                    "{:?} is not one of \"unlinked\", \"create_lead\", \"create_contact\"",
                    self.activity.unknown_caller
                ),
            );
        }
        if self.activity.unknown_caller_last_name.trim().is_empty() {
            bad(
                "activity.unknown_caller_last_name",
                "must not be empty (LastName is required)".into(),
            );
        }
        if self.lookup.remember_choice_days > 3650 {
            bad(
                "lookup.remember_choice_days",
                "must be between 0 and 3650".into(),
            );
        }
        if !(100..=60_000).contains(&self.sync.refresh_on_miss_wait_ms) {
            bad(
                "sync.refresh_on_miss_wait_ms",
                "must be between 100 and 60000".into(),
            );
        }
        if !(1..=3600).contains(&self.sync.refresh_on_miss_every_secs) {
            bad(
                "sync.refresh_on_miss_every_secs",
                "must be between 1 and 3600".into(),
            );
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
            if !callsync_calllog::SOURCE_KINDS.contains(&src.kind.as_str()) {
                bad(
                    "calllog.sources",
                    format!(
                        "{:?} is not one of {}",
                        src.kind,
                        callsync_calllog::SOURCE_KINDS.join(", ")
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
            if callsync_core::record::RecordId::parse(user).is_none_or(|u| u.prefix() != "005") {
                bad(
                    "assignee.agents",
                    format!("{agent:?} → {user:?} is not a User Id (005…)"),
                );
            }
        }
        if !self.assignee.missed_owner.is_empty()
            && callsync_core::record::RecordId::parse(&self.assignee.missed_owner)
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
