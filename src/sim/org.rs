//! The simulated org's state and its REST behaviour, as plain functions of (state, request):
//! the HTTP layer (`sim::server`) only translates, so `/composite` reuses the same handlers and
//! tests can drive the org without sockets.
//!
//! Shapes follow `shared/reference/salesforce-api.md`: error bodies are arrays with `errorCode`
//! (Collections use `statusCode`), datetimes are written `…+0000`, composite answers 200.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::soql;
use crate::record::{format_sf_datetime, parse_sf_datetime};
use crate::synth::{self, SynthSpec};

/// How a simulated org is made.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SimOptions {
    pub seed: u64,
    /// Contacts, Accounts, Leads and Users together (Users are ~2 %).
    pub records: usize,
    /// Records per query page (Salesforce: 2,000 at most; some pages come back smaller).
    pub page_size: usize,
    pub client_id: String,
    /// Every refresh returns a new refresh token and invalidates the old one.
    pub rotate_refresh_tokens: bool,
    pub person_accounts: bool,
    /// `DailyApiRequests` maximum.
    pub api_daily_max: u64,
    /// The API version the org answers (and lists under `/services/data/`).
    pub api_version: String,
    /// The org's Id (tests use two orgs to check that a queue never crosses between them).
    pub org_id: String,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 1,
            records: 1_000,
            page_size: 2_000,
            client_id: "callsync-sim-client".into(),
            rotate_refresh_tokens: false,
            person_accounts: true,
            api_daily_max: 100_000,
            api_version: "62.0".into(),
            org_id: "00DSIM000000001AAA".into(),
        }
    }
}

/// A fault the org injects into matching requests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only requests whose method is this (GET, POST, PATCH, DELETE).
    #[serde(default)]
    pub method: Option<String>,
    /// Only requests whose path contains this.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Let this many matching requests through first.
    #[serde(default)]
    pub skip: u32,
    /// Fire this many times (absent: every time).
    #[serde(default)]
    pub times: Option<u32>,
    /// For `latency`.
    #[serde(default)]
    pub latency_ms: u64,
    /// Fire on this share of matching requests (absent: every one).
    #[serde(default)]
    pub probability: Option<f64>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 401 INVALID_SESSION_ID, and every access token issued so far stops working.
    SessionExpired,
    /// 403 REQUEST_LIMIT_EXCEEDED.
    RequestLimitExceeded,
    /// 400 UNABLE_TO_LOCK_ROW.
    UnableToLockRow,
    /// 503 with an HTML body.
    ServiceUnavailable,
    /// The request is carried out, then the connection closes with no response.
    CommitThenDrop,
    /// The request waits `latency_ms` first.
    Latency,
    /// Token endpoint: 400 invalid_grant (a revoked refresh token).
    InvalidGrant,
    /// 403 API_DISABLED_FOR_ORG.
    ApiDisabled,
}

/// What the HTTP layer should do with a request after the faults were consulted.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    None,
    Respond(u16, Value),
    Html(u16, String),
    DropAfter,
    Delay(u64),
}

struct BulkJob {
    polls: u32,
    fields: Vec<String>,
    rows: Vec<Value>,
}

struct PendingCode {
    challenge: String,
    redirect_uri: String,
    user_id: String,
}

pub struct Org {
    pub opts: SimOptions,
    pub org_id: String,
    pub base_url: String,
    /// Object → Id → stored row (no `attributes`; relationships resolved on read).
    objects: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    /// Extra fields an admin added (object → field → type).
    custom_fields: BTreeMap<String, BTreeMap<String, FieldType>>,
    deleted_log: Vec<(String, String, DateTime<Utc>)>,
    /// Bulk API 2.0 query jobs: id → (polls so far, fields, rows).
    bulk_jobs: HashMap<String, BulkJob>,
    /// Query id → its rows, for paging.
    cursors: HashMap<u64, Vec<Value>>,
    cursor_seq: u64,
    id_seq: u64,
    clock_offset: Duration,
    last_stamp: DateTime<Utc>,
    pub api_calls: u64,
    access_tokens: HashMap<String, String>,
    refresh_tokens: HashMap<String, String>,
    codes: HashMap<String, PendingCode>,
    pub faults: Vec<Fault>,
    fault_seen: Vec<u32>,
    /// An authorize-step error to return (`OAUTH_APP_BLOCKED`, `invalid_client`); a blocked
    /// app's refresh-token grants fail with it too.
    pub authorize_error: Option<(String, String)>,
    /// What the signed-in user may not do: object → `read` / `create`.
    pub denied: BTreeMap<String, Vec<String>>,
    /// Custom fields the user cannot write (field-level security): `Object.Field`.
    pub readonly_fields: Vec<String>,
    /// User Id the browser "logs in" as.
    pub login_user: String,
    /// Requests counted per path family, for tests and benchmarks.
    pub token_requests: u64,
    /// Every SOQL query received and when, for tests of when the agent syncs.
    pub queries: Vec<(std::time::Instant, String)>,
    rng: fastrand::Rng,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Id,
    Reference,
    String,
    Phone,
    Textarea,
    Boolean,
    Int,
    Datetime,
    Date,
    Picklist,
    Multipicklist,
}

impl FieldType {
    fn sf(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Reference => "reference",
            FieldType::String => "string",
            FieldType::Phone => "phone",
            FieldType::Textarea => "textarea",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Datetime => "datetime",
            FieldType::Date => "date",
            FieldType::Picklist => "picklist",
            FieldType::Multipicklist => "multipicklist",
        }
    }
}

/// (name, type, length, createable/updateable, restricted picklist values)
type FieldDef = (
    &'static str,
    FieldType,
    usize,
    bool,
    &'static [&'static str],
);

const SYSTEM: &[FieldDef] = &[
    ("Id", FieldType::Id, 18, false, &[]),
    ("IsDeleted", FieldType::Boolean, 0, false, &[]),
    ("CreatedDate", FieldType::Datetime, 0, false, &[]),
    ("LastModifiedDate", FieldType::Datetime, 0, false, &[]),
    ("SystemModstamp", FieldType::Datetime, 0, false, &[]),
    ("OwnerId", FieldType::Reference, 18, true, &[]),
];

const TASK_STATUS: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];

fn schema(object: &str, person_accounts: bool) -> Option<Vec<FieldDef>> {
    use FieldType::*;
    let mut f: Vec<FieldDef> = SYSTEM.to_vec();
    let phones = |names: &[&'static str]| -> Vec<FieldDef> {
        names
            .iter()
            .map(|n| (*n, Phone, 40, true, &[][..]))
            .collect()
    };
    match object {
        "Contact" => {
            f.extend([
                ("Name", String, 121, false, &[][..]),
                ("FirstName", String, 40, true, &[]),
                ("LastName", String, 80, true, &[]),
                ("AccountId", Reference, 18, true, &[]),
                ("Email", String, 80, true, &[]),
            ]);
            f.extend(phones(&[
                "Phone",
                "MobilePhone",
                "HomePhone",
                "OtherPhone",
                "AssistantPhone",
                "Fax",
            ]));
            if person_accounts {
                f.push(("IsPersonAccount", Boolean, 0, false, &[]));
            }
        }
        "Account" => {
            f.extend([
                ("Name", String, 255, true, &[][..]),
                ("Type", Picklist, 40, true, &[]),
            ]);
            f.extend(phones(&["Phone", "Fax"]));
            if person_accounts {
                f.extend([
                    ("IsPersonAccount", Boolean, 0, false, &[][..]),
                    ("PersonContactId", Reference, 18, false, &[]),
                    ("FirstName", String, 40, true, &[]),
                    ("LastName", String, 80, true, &[]),
                ]);
                f.extend(phones(&[
                    "PersonMobilePhone",
                    "PersonHomePhone",
                    "PersonOtherPhone",
                    "PersonAssistantPhone",
                ]));
            }
        }
        "Lead" => {
            f.extend([
                ("Name", String, 121, false, &[][..]),
                ("Company", String, 255, true, &[]),
                ("IsConverted", Boolean, 0, false, &[]),
                ("ConvertedContactId", Reference, 18, false, &[]),
            ]);
            f.extend(phones(&["Phone", "MobilePhone", "Fax"]));
        }
        "User" => {
            f.extend([
                ("Name", String, 121, false, &[][..]),
                ("Username", String, 80, true, &[]),
                ("Email", String, 128, true, &[]),
                ("IsActive", Boolean, 0, true, &[]),
                ("Extension", Phone, 40, true, &[]),
            ]);
            f.extend(phones(&["Phone", "MobilePhone", "Fax"]));
        }
        "Event" => f.extend([
            ("Subject", String, 255, true, &[][..]),
            ("Description", Textarea, 32_000, true, &[]),
            ("StartDateTime", Datetime, 0, true, &[]),
            ("EndDateTime", Datetime, 0, true, &[]),
            ("ActivityDateTime", Datetime, 0, true, &[]),
            ("DurationInMinutes", Int, 0, true, &[]),
            ("IsAllDayEvent", Boolean, 0, true, &[]),
            ("Location", String, 255, true, &[]),
            ("WhoId", Reference, 18, true, &[]),
            ("WhatId", Reference, 18, true, &[]),
            ("Type", Picklist, 40, true, &[]),
        ]),
        "Task" => f.extend([
            ("Subject", String, 255, true, &[][..]),
            ("Description", Textarea, 32_000, true, &[]),
            ("Status", Picklist, 40, true, TASK_STATUS),
            ("Priority", Picklist, 40, true, &["High", "Normal", "Low"]),
            ("ActivityDate", Date, 0, true, &[]),
            ("WhoId", Reference, 18, true, &[]),
            ("WhatId", Reference, 18, true, &[]),
            ("AccountId", Reference, 18, false, &[]),
            ("IsClosed", Boolean, 0, false, &[]),
            ("Type", Picklist, 40, true, &[]),
            (
                "CallType",
                Picklist,
                40,
                true,
                &["Inbound", "Internal", "Outbound"],
            ),
            ("CallObject", String, 255, true, &[]),
            ("CallDisposition", String, 255, true, &[]),
            ("CallDurationInSeconds", Int, 0, true, &[]),
            (
                "TaskSubtype",
                Picklist,
                40,
                true,
                &["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"],
            ),
        ]),
        _ => return None,
    }
    Some(f)
}

/// Key prefixes by object.
fn prefix(object: &str) -> &'static str {
    match object {
        "Contact" => "003",
        "Account" => "001",
        "Lead" => "00Q",
        "User" => "005",
        "Task" => "00T",
        "Event" => "00U",
        _ => "a00",
    }
}

fn object_of_id(id: &str) -> Option<&'static str> {
    match id.get(..3)? {
        "003" => Some("Contact"),
        "001" => Some("Account"),
        "00Q" => Some("Lead"),
        "005" => Some("User"),
        "00T" => Some("Task"),
        "00U" => Some("Event"),
        "006" => Some("Opportunity"),
        "500" => Some("Case"),
        _ => None,
    }
}

/// One error in Salesforce's REST shape.
pub fn err(code: &str, message: &str, fields: &[&str]) -> Value {
    let mut e = json!({"message": message, "errorCode": code});
    if !fields.is_empty() {
        e["fields"] = json!(fields);
    }
    json!([e])
}

/// A request as the org sees it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path after `/services/data/vXX.X` (e.g. `/query`).
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Option<Value>,
    pub user_id: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Option<Value>,
    /// A non-JSON body (Bulk API CSV results) with extra headers.
    pub raw: Option<(String, Vec<(String, String)>)>,
}

fn resp(status: u16, body: Value) -> Response {
    Response {
        status,
        body: Some(body),
        raw: None,
    }
}

fn no_content() -> Response {
    Response {
        status: 204,
        body: None,
        raw: None,
    }
}

/// The task's custom fields every simulated org has, as an admin would create them.
const TASK_CUSTOM: &[(&str, FieldType)] = &[
    ("Call_Id__c", FieldType::String),
    ("Dial_Start__c", FieldType::Datetime),
    ("Call_Start__c", FieldType::Datetime),
    ("Call_End__c", FieldType::Datetime),
    ("Call_Memo__c", FieldType::Multipicklist),
];

/// The Event's custom fields, for the meeting history integration.
const EVENT_CUSTOM: &[(&str, FieldType)] = &[
    ("Meeting_Id__c", FieldType::String),
    ("Recording_URL__c", FieldType::String),
    ("Meeting_Tags__c", FieldType::Multipicklist),
];

impl Org {
    pub fn new(opts: SimOptions, base_url: &str) -> Org {
        let mut org = Org {
            org_id: opts.org_id.clone(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            objects: BTreeMap::new(),
            custom_fields: BTreeMap::new(),
            deleted_log: Vec::new(),
            cursors: HashMap::new(),
            bulk_jobs: HashMap::new(),
            cursor_seq: 0,
            id_seq: 0,
            clock_offset: Duration::zero(),
            last_stamp: DateTime::<Utc>::MIN_UTC,
            api_calls: 0,
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            codes: HashMap::new(),
            faults: Vec::new(),
            fault_seen: Vec::new(),
            authorize_error: None,
            denied: BTreeMap::new(),
            readonly_fields: Vec::new(),
            login_user: "005SIM000000001AAA".into(),
            token_requests: 0,
            queries: Vec::new(),
            rng: fastrand::Rng::with_seed(opts.seed ^ 0xC0FFEE),
            opts,
        };
        for (object, fields) in [("Task", TASK_CUSTOM), ("Event", EVENT_CUSTOM)] {
            for (name, ty) in fields {
                org.custom_fields
                    .entry(object.into())
                    .or_default()
                    .insert((*name).into(), *ty);
            }
        }
        org.seed_data();
        org
    }

    fn seed_data(&mut self) {
        let stamp = format_sf_datetime(self.now() - Duration::days(1));
        let mut admin = Map::new();
        for (k, v) in [
            ("Id", json!(self.login_user)),
            ("Name", json!("Sim Agent")),
            ("Username", json!("agent@sim.example.com")),
            ("IsActive", json!(true)),
            ("Phone", json!("03-5555-0100")),
            ("Extension", json!("100")),
        ] {
            admin.insert(k.into(), v);
        }
        self.store("User", admin, &stamp);
        for r in synth::generate(&SynthSpec::new(self.opts.seed, self.opts.records)) {
            let Value::Object(mut row) = r.json else {
                continue;
            };
            let object = row
                .get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            row.remove("attributes");
            // A contact's account exists in the org too (a business account, no phone).
            if let (Some(acc), Some(name)) = (
                row.get("AccountId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                row.get("Account").and_then(|a| a.get("Name")).cloned(),
            ) {
                if self.get_row("Account", &acc).is_none() {
                    let mut a = Map::new();
                    a.insert("Id".into(), json!(acc));
                    a.insert("Name".into(), name);
                    if self.opts.person_accounts {
                        a.insert("IsPersonAccount".into(), json!(false));
                    }
                    self.store("Account", a, &stamp);
                }
            }
            row.remove("Account");
            let modified = row
                .get("LastModifiedDate")
                .and_then(Value::as_str)
                .unwrap_or(&stamp)
                .to_owned();
            if object == "Account" && row.get("IsPersonAccount") == Some(&json!(true)) {
                if !self.opts.person_accounts {
                    continue;
                }
                // The hidden person contact that goes with every person account.
                let mut pc = Map::new();
                pc.insert("Id".into(), row["PersonContactId"].clone());
                pc.insert("Name".into(), row["Name"].clone());
                pc.insert("AccountId".into(), row["Id"].clone());
                pc.insert("IsPersonAccount".into(), json!(true));
                pc.insert(
                    "MobilePhone".into(),
                    row.get("PersonMobilePhone").cloned().unwrap_or(Value::Null),
                );
                self.store("Contact", pc, &modified);
            }
            if !self.opts.person_accounts {
                row.remove("IsPersonAccount");
            }
            self.store(&object, row, &modified);
        }
    }

    fn store(&mut self, object: &str, mut row: Map<String, Value>, stamp: &str) {
        let id = row
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        row.entry("CreatedDate").or_insert_with(|| json!(stamp));
        row.entry("LastModifiedDate")
            .or_insert_with(|| json!(stamp));
        row.insert("SystemModstamp".into(), json!(stamp));
        row.insert("IsDeleted".into(), json!(false));
        self.objects
            .entry(object.into())
            .or_default()
            .insert(id, row);
    }

    /// The org's clock (tests can move it forward).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    pub fn advance_clock(&mut self, by: Duration) {
        self.clock_offset += by;
    }

    /// A strictly increasing modification stamp, ms resolution.
    fn stamp(&mut self) -> DateTime<Utc> {
        let mut now = self.now();
        if now <= self.last_stamp {
            now = self.last_stamp + Duration::milliseconds(1);
        }
        self.last_stamp = now;
        now
    }

    fn new_id(&mut self, object: &str) -> String {
        self.id_seq += 1;
        format!("{}SIM{:09}{}", prefix(object), self.id_seq, "AAA")
    }

    pub fn count(&self, object: &str) -> usize {
        self.objects
            .get(object)
            .map(|m| {
                m.values()
                    .filter(|r| r.get("IsDeleted") != Some(&json!(true)))
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn rows(&self, object: &str) -> Vec<Value> {
        self.objects
            .get(object)
            .map(|m| m.values().map(|r| Value::Object(r.clone())).collect())
            .unwrap_or_default()
    }

    pub fn get_row(&self, object: &str, id: &str) -> Option<&Map<String, Value>> {
        self.objects.get(object)?.get(id)
    }

    /// Adds a custom field (e.g. `Direct_Line__c` on Contact).
    pub fn add_custom_field(&mut self, object: &str, name: &str, ty: FieldType) {
        self.custom_fields
            .entry(object.into())
            .or_default()
            .insert(name.into(), ty);
    }

    fn is_denied(&self, object: &str, what: &str) -> bool {
        self.denied
            .get(object)
            .is_some_and(|d| d.iter().any(|w| w == what))
    }

    pub fn remove_custom_field(&mut self, object: &str, name: &str) {
        if let Some(m) = self.custom_fields.get_mut(object) {
            m.remove(name);
        }
    }

    fn field_type(
        &self,
        object: &str,
        field: &str,
    ) -> Option<(FieldType, usize, bool, &'static [&'static str])> {
        if let Some(t) = self.custom_fields.get(object).and_then(|m| m.get(field)) {
            let len = match t {
                FieldType::String => 255,
                FieldType::Textarea => 32_000,
                _ => 0,
            };
            let writable = !self.readonly_fields.contains(&format!("{object}.{field}"));
            return Some((*t, len, writable, &[]));
        }
        schema(object, self.opts.person_accounts)?
            .into_iter()
            .find(|(n, ..)| *n == field)
            .map(|(_, t, len, w, pick)| (t, len, w, pick))
    }

    fn uri(&self, object: &str, id: &str) -> String {
        format!(
            "/services/data/v{}/sobjects/{object}/{id}",
            self.opts.api_version
        )
    }

    // ---------- admin mutations (simulating users editing Salesforce) ----------

    /// Creates or updates a record as a user would in Salesforce: stamps move forward.
    pub fn admin_upsert(&mut self, object: &str, fields: Map<String, Value>) -> String {
        let stamp = format_sf_datetime(self.stamp());
        let id = fields
            .get("Id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.new_id(object));
        let table = self.objects.entry(object.into()).or_default();
        let row = table.entry(id.clone()).or_insert_with(|| {
            let mut m = Map::new();
            m.insert("Id".into(), json!(id));
            m.insert("CreatedDate".into(), json!(stamp));
            m.insert("IsDeleted".into(), json!(false));
            m
        });
        for (k, v) in fields {
            row.insert(k, v);
        }
        row.insert("LastModifiedDate".into(), json!(stamp));
        row.insert("SystemModstamp".into(), json!(stamp));
        id
    }

    /// Deletes a record (to the recycle bin: `queryAll` still sees it, `deleted` lists it).
    pub fn admin_delete(&mut self, object: &str, id: &str) -> bool {
        let now = self.stamp();
        let stamp = format_sf_datetime(now);
        let Some(row) = self.objects.get_mut(object).and_then(|t| t.get_mut(id)) else {
            return false;
        };
        row.insert("IsDeleted".into(), json!(true));
        row.insert("SystemModstamp".into(), json!(stamp));
        self.deleted_log.push((object.into(), id.into(), now));
        true
    }

    /// Removes a record for good (the recycle bin was emptied): no API returns it any more.
    pub fn admin_purge(&mut self, object: &str, id: &str) -> bool {
        self.deleted_log
            .retain(|(o, i, _)| !(o == object && i == id));
        self.objects
            .get_mut(object)
            .is_some_and(|t| t.remove(id).is_some())
    }

    pub fn admin_undelete(&mut self, object: &str, id: &str) -> bool {
        let stamp = format_sf_datetime(self.stamp());
        let Some(row) = self.objects.get_mut(object).and_then(|t| t.get_mut(id)) else {
            return false;
        };
        row.insert("IsDeleted".into(), json!(false));
        row.insert("SystemModstamp".into(), json!(stamp));
        self.deleted_log
            .retain(|(o, i, _)| !(o == object && i == id));
        true
    }

    pub fn expire_sessions(&mut self) {
        self.access_tokens.clear();
    }

    pub fn revoke_refresh_tokens(&mut self) {
        self.refresh_tokens.clear();
        self.access_tokens.clear();
    }

    // ---------- faults ----------

    /// Consults the fault list for a request (and counts it).
    pub fn fault_for(&mut self, method: &str, path: &str) -> FaultAction {
        self.fault_seen.resize(self.faults.len(), 0);
        for (i, f) in self.faults.iter_mut().enumerate() {
            if f.method
                .as_deref()
                .is_some_and(|m| !m.eq_ignore_ascii_case(method))
            {
                continue;
            }
            if f.path_contains
                .as_deref()
                .is_some_and(|p| !path.contains(p))
            {
                continue;
            }
            self.fault_seen[i] += 1;
            if self.fault_seen[i] <= f.skip {
                continue;
            }
            if f.probability.is_some_and(|p| self.rng.f64() >= p) {
                continue;
            }
            if let Some(t) = f.times.as_mut() {
                if *t == 0 {
                    continue;
                }
                *t -= 1;
            }
            return match f.kind {
                FaultKind::SessionExpired => {
                    self.access_tokens.clear();
                    FaultAction::Respond(
                        401,
                        err("INVALID_SESSION_ID", "Session expired or invalid", &[]),
                    )
                }
                FaultKind::RequestLimitExceeded => FaultAction::Respond(
                    403,
                    err(
                        "REQUEST_LIMIT_EXCEEDED",
                        "TotalRequests Limit exceeded.",
                        &[],
                    ),
                ),
                FaultKind::UnableToLockRow => FaultAction::Respond(
                    400,
                    err(
                        "UNABLE_TO_LOCK_ROW",
                        "unable to obtain exclusive access to this record or 1 records",
                        &[],
                    ),
                ),
                FaultKind::ServiceUnavailable => FaultAction::Html(
                    503,
                    "<html><body><h1>Service Unavailable</h1></body></html>".into(),
                ),
                FaultKind::CommitThenDrop => FaultAction::DropAfter,
                FaultKind::Latency => FaultAction::Delay(f.latency_ms),
                FaultKind::ApiDisabled => FaultAction::Respond(
                    403,
                    err(
                        "API_DISABLED_FOR_ORG",
                        "The REST API is not enabled for this Organization.",
                        &[],
                    ),
                ),
                FaultKind::InvalidGrant => FaultAction::Respond(
                    400,
                    json!({"error": "invalid_grant", "error_description": "expired access/refresh token"}),
                ),
            };
        }
        FaultAction::None
    }

    /// Counts an API call; past the daily maximum, REQUEST_LIMIT_EXCEEDED.
    pub fn count_api_call(&mut self) -> Result<(), Value> {
        if self.api_calls >= self.opts.api_daily_max {
            return Err(err(
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
                &[],
            ));
        }
        self.api_calls += 1;
        Ok(())
    }

    pub fn limit_info(&self) -> String {
        format!("api-usage={}/{}", self.api_calls, self.opts.api_daily_max)
    }

    // ---------- OAuth ----------

    fn token(&mut self, prefix: &str) -> String {
        let mut s = String::from(prefix);
        for _ in 0..40 {
            s.push(self.rng.alphanumeric());
        }
        s
    }

    pub fn user_for_access_token(&self, token: &str) -> Option<String> {
        self.access_tokens.get(token).cloned()
    }

    /// The authorize step: a code for the login user, or an error, as redirect parameters.
    pub fn authorize(
        &mut self,
        params: &HashMap<String, String>,
    ) -> Result<Vec<(String, String)>, (String, String)> {
        let state = params.get("state").cloned().unwrap_or_default();
        let with_state = |mut v: Vec<(String, String)>| {
            if !state.is_empty() {
                v.push(("state".into(), state.clone()));
            }
            v
        };
        if params.get("client_id") != Some(&self.opts.client_id) {
            return Err((
                "invalid_client_id".into(),
                "client identifier invalid".into(),
            ));
        }
        if let Some((e, d)) = self.authorize_error.clone() {
            return Err((e, d));
        }
        if params.get("response_type").map(String::as_str) != Some("code") {
            return Err((
                "unsupported_response_type".into(),
                "response type not supported".into(),
            ));
        }
        if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
            return Err((
                "invalid_request".into(),
                "code_challenge_method must be S256".into(),
            ));
        }
        let challenge = params.get("code_challenge").cloned().unwrap_or_default();
        let code = self.token("aPrx");
        self.codes.insert(
            code.clone(),
            PendingCode {
                challenge,
                redirect_uri: params.get("redirect_uri").cloned().unwrap_or_default(),
                user_id: self.login_user.clone(),
            },
        );
        Ok(with_state(vec![("code".into(), code)]))
    }

    /// A token for the login user without the browser dance (`/__sim/token`, for curl).
    pub fn direct_token(&mut self) -> Value {
        let user = self.login_user.clone();
        self.token_response(&user, true)
    }

    fn token_response(&mut self, user_id: &str, with_refresh: bool) -> Value {
        let secret = self.token("AQ");
        let access = format!("{}!{secret}", self.org_id);
        self.access_tokens.insert(access.clone(), user_id.into());
        let issued = self.now().timestamp_millis().to_string();
        let mut v = json!({
            "access_token": access,
            "signature": "c2ltdWxhdGVkLXNpZ25hdHVyZQ==",
            "scope": "refresh_token api id",
            "instance_url": self.base_url,
            "id": format!("{}/id/{}/{}", self.base_url, self.org_id, user_id),
            "token_type": "Bearer",
            "issued_at": issued,
        });
        if with_refresh {
            let refresh = self.token("5Aep");
            self.refresh_tokens.insert(refresh.clone(), user_id.into());
            v["refresh_token"] = json!(refresh);
        }
        v
    }

    /// `POST /services/oauth2/token`.
    pub fn token_endpoint(&mut self, form: &HashMap<String, String>) -> (u16, Value) {
        self.token_requests += 1;
        let bad = |e: &str, d: &str| (400, json!({"error": e, "error_description": d}));
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let Some(code) = form.get("code").and_then(|c| self.codes.remove(c)) else {
                    return bad("invalid_grant", "invalid authorization code");
                };
                if form.get("client_id") != Some(&self.opts.client_id) {
                    return bad("invalid_client_id", "client identifier invalid");
                }
                if form.get("redirect_uri") != Some(&code.redirect_uri) {
                    return bad(
                        "redirect_uri_mismatch",
                        "redirect_uri must match configuration",
                    );
                }
                let Some(verifier) = form.get("code_verifier") else {
                    return bad("invalid_grant", "invalid code verifier");
                };
                use base64::Engine as _;
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(verifier.as_bytes());
                let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
                if expected != code.challenge {
                    return bad("invalid_request", "invalid code verifier");
                }
                (200, self.token_response(&code.user_id, true))
            }
            Some("refresh_token") => {
                let Some(rt) = form.get("refresh_token") else {
                    return bad("invalid_request", "refresh_token required");
                };
                if let Some((e, d)) = self.authorize_error.clone() {
                    return bad(&e, &d);
                }
                let Some(user) = self.refresh_tokens.get(rt).cloned() else {
                    return bad("invalid_grant", "expired access/refresh token");
                };
                let rotate = self.opts.rotate_refresh_tokens;
                if rotate {
                    self.refresh_tokens.remove(rt);
                }
                (200, self.token_response(&user, rotate))
            }
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                let Some(assertion) = form.get("assertion") else {
                    return bad("invalid_request", "assertion required");
                };
                match self.check_jwt(assertion) {
                    Ok(user) => (200, self.token_response(&user, false)),
                    Err(d) => bad("invalid_grant", &d),
                }
            }
            _ => bad("unsupported_grant_type", "grant type not supported"),
        }
    }

    /// Checks a JWT bearer assertion's claims (the simulated org trusts any signature: key
    /// handling is the agent's side and is tested there).
    fn check_jwt(&self, assertion: &str) -> Result<String, String> {
        use base64::Engine as _;
        let claims = assertion
            .split('.')
            .nth(1)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or("invalid assertion")?;
        if claims["iss"].as_str() != Some(&self.opts.client_id) {
            return Err("invalid client credentials".into());
        }
        if claims["exp"]
            .as_i64()
            .is_none_or(|e| e < self.now().timestamp())
        {
            return Err("expired authorization code".into());
        }
        let sub = claims["sub"].as_str().unwrap_or_default();
        self.objects
            .get("User")
            .and_then(|u| {
                u.values()
                    .find(|r| r.get("Username").and_then(Value::as_str) == Some(sub))
            })
            .and_then(|r| r.get("Id").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| "user hasn't approved this consumer".into())
    }

    pub fn revoke(&mut self, token: &str) -> bool {
        let a = self.access_tokens.remove(token).is_some();
        let r = self.refresh_tokens.remove(token).is_some();
        if r {
            // Revoking a refresh token also kills its access tokens (simplified: all of them).
            self.access_tokens.clear();
        }
        a || r
    }

    pub fn identity(&self, user_id: &str) -> Option<Value> {
        let u = self.get_row("User", user_id)?;
        let v = &self.opts.api_version;
        Some(json!({
            "id": format!("{}/id/{}/{}", self.base_url, self.org_id, user_id),
            "user_id": user_id,
            "organization_id": self.org_id,
            "username": u.get("Username"),
            "display_name": u.get("Name"),
            "nick_name": "agent",
            "active": true,
            "user_type": "STANDARD",
            "language": "ja",
            "locale": "ja_JP",
            "timezone": "Asia/Tokyo",
            "utcOffset": 32_400_000,
            "urls": {
                "rest": format!("{}/services/data/v{v}/", self.base_url),
                "sobjects": format!("{}/services/data/v{v}/sobjects/", self.base_url),
                "query": format!("{}/services/data/v{v}/query/", self.base_url),
            },
        }))
    }

    // ---------- REST ----------

    pub fn dispatch(&mut self, req: &Request) -> Response {
        let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let m = req.method.as_str();
        match (m, parts.as_slice()) {
            ("GET", ["query"]) => self.query(req.query.get("q"), false),
            ("GET", ["queryAll"]) => self.query(req.query.get("q"), true),
            ("GET", ["query" | "queryAll", locator]) => self.more(locator),
            ("GET", ["limits"]) => resp(200, self.limits()),
            ("POST", ["sobjects", object] | ["composite", "sobjects", object, ..])
                if self.is_denied(object, "create") =>
            {
                resp(
                    400,
                    err(
                        "INSUFFICIENT_ACCESS_OR_READONLY",
                        "insufficient access rights on object id",
                        &[],
                    ),
                )
            }
            ("PATCH", ["sobjects", object, _, _]) if self.is_denied(object, "create") => resp(
                400,
                err(
                    "INSUFFICIENT_ACCESS_OR_READONLY",
                    "insufficient access rights on object id",
                    &[],
                ),
            ),
            ("GET", ["sobjects"]) => resp(200, {
                let list: Vec<Value> = ["Account", "Contact", "Lead", "User", "Task", "Event"]
                    .iter()
                    .map(|o| json!({"name": o}))
                    .collect();
                json!({ "sobjects": list })
            }),
            ("GET", ["sobjects", object, "describe"]) => self.describe(object),
            ("GET", ["sobjects", object, "updated"]) => self.updated(object, &req.query),
            ("GET", ["sobjects", object, "deleted"]) => self.deleted(object, &req.query),
            ("POST", ["sobjects", object]) => self.create(object, req.body.as_ref(), &req.user_id),
            ("GET", ["sobjects", object, id]) => self.get(object, id, req.query.get("fields")),
            ("PATCH", ["sobjects", object, id]) => self.update(object, id, req.body.as_ref()),
            ("DELETE", ["sobjects", object, id]) => {
                if self.admin_delete(object, id) {
                    no_content()
                } else {
                    resp(
                        404,
                        err("NOT_FOUND", "The requested resource does not exist", &[]),
                    )
                }
            }
            ("PATCH", ["sobjects", object, field, value]) => {
                self.upsert(object, field, value, req.body.as_ref(), &req.user_id)
            }
            ("POST", ["composite", "sobjects"]) => self.collection(req, None),
            ("PATCH", ["composite", "sobjects"]) => self.collection(req, Some("Id")),
            ("PATCH", ["composite", "sobjects", object, field]) => {
                self.collection_upsert(req, object, field)
            }
            ("POST", ["composite"]) => self.composite(req),
            ("POST", ["jobs", "query"]) => self.bulk_create(req),
            ("GET", ["jobs", "query", id]) => self.bulk_status(id),
            ("GET", ["jobs", "query", id, "results"]) => self.bulk_results(id, &req.query),
            _ => resp(
                404,
                err("NOT_FOUND", "The requested resource does not exist", &[]),
            ),
        }
    }

    fn limits(&self) -> Value {
        json!({
            "DailyApiRequests": {"Max": self.opts.api_daily_max, "Remaining": self.opts.api_daily_max.saturating_sub(self.api_calls)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
        })
    }

    fn describe(&self, object: &str) -> Response {
        let fields =
            schema(object, self.opts.person_accounts).filter(|_| !self.is_denied(object, "read"));
        let Some(fields) = fields else {
            return resp(
                404,
                err(
                    "NOT_FOUND",
                    &format!("The requested resource does not exist: {object}"),
                    &[],
                ),
            );
        };
        let mut out: Vec<Value> = fields
            .iter()
            .map(|(name, ty, len, writable, pick)| {
                json!({
                    "name": name, "type": ty.sf(), "length": len,
                    "createable": writable, "updateable": *writable && *name != "TaskSubtype",
                    "nillable": *name != "Status", "externalId": false, "unique": false,
                    "restrictedPicklist": !pick.is_empty(),
                    "picklistValues": pick.iter().map(|p| json!({"value": p, "label": p, "active": true})).collect::<Vec<_>>(),
                })
            })
            .collect();
        for (name, ty) in self.custom_fields.get(object).into_iter().flatten() {
            let ext = name.ends_with("_Id__c");
            let writable = !self.readonly_fields.contains(&format!("{object}.{name}"));
            out.push(json!({
                "name": name, "type": ty.sf(), "length": if *ty == FieldType::String { 255 } else { 0 },
                "createable": writable, "updateable": writable, "nillable": true, "custom": true,
                "externalId": ext, "unique": ext, "restrictedPicklist": false, "picklistValues": [],
            }));
        }
        resp(
            200,
            json!({"name": object, "queryable": true, "replicateable": true,
                "createable": !self.is_denied(object, "create"), "fields": out}),
        )
    }

    fn known_field(&self, object: &str, field: &str) -> bool {
        if let Some((parent, rest)) = field.split_once('.') {
            let target = match (object, parent) {
                ("Contact", "Account") | ("Task", "Account") => "Account",
                ("Contact" | "Account" | "Lead" | "Task", "Owner") => "User",
                _ => return false,
            };
            return self.known_field(target, rest);
        }
        self.field_type(object, field).is_some()
    }

    /// A row as the API returns it: `attributes`, the selected fields, parents as nested objects.
    fn project(&self, object: &str, row: &Map<String, Value>, fields: &[String]) -> Value {
        let mut out = Map::new();
        let id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
        out.insert(
            "attributes".into(),
            json!({"type": object, "url": self.uri(object, id)}),
        );
        for f in fields {
            match f.split_once('.') {
                None => {
                    let key = self
                        .field_type(object, f)
                        .map(|_| f.clone())
                        .unwrap_or_else(|| f.clone());
                    out.insert(key, row.get(f).cloned().unwrap_or(Value::Null));
                }
                Some((rel, sub)) => {
                    let (target, fk) = match rel {
                        "Account" => ("Account", "AccountId"),
                        _ => ("User", "OwnerId"),
                    };
                    let parent = row
                        .get(fk)
                        .and_then(Value::as_str)
                        .and_then(|pid| self.get_row(target, pid));
                    let entry = out.entry(rel.to_owned()).or_insert(Value::Null);
                    if let Some(p) = parent {
                        if entry.is_null() {
                            let pid = p.get("Id").and_then(Value::as_str).unwrap_or_default();
                            *entry = json!({"attributes": {"type": target, "url": self.uri(target, pid)}});
                        }
                        entry[sub] = p.get(sub).cloned().unwrap_or(Value::Null);
                    }
                }
            }
        }
        Value::Object(out)
    }

    fn query(&mut self, q: Option<&String>, all: bool) -> Response {
        let Some(q) = q else {
            return resp(400, err("MALFORMED_QUERY", "missing q parameter", &[]));
        };
        self.queries.push((std::time::Instant::now(), q.clone()));
        let query = match soql::parse(q) {
            Ok(q) => q,
            Err(e) => return resp(400, err("MALFORMED_QUERY", &e, &[])),
        };
        if schema(&query.object, self.opts.person_accounts).is_none()
            || self.is_denied(&query.object, "read")
        {
            return resp(
                400,
                err(
                    "INVALID_TYPE",
                    &format!("sObject type '{}' is not supported.", query.object),
                    &[],
                ),
            );
        }
        let mut referenced: Vec<&String> = query.fields.iter().collect();
        referenced.extend(query.order.iter().map(|(f, _)| f));
        for f in referenced {
            if !self.known_field(&query.object, f) {
                return resp(
                    400,
                    err(
                        "INVALID_FIELD",
                        &format!("No such column '{f}' on entity '{}'.", query.object),
                        &[],
                    ),
                );
            }
        }
        let mut wanted: Vec<String> = query.fields.clone();
        if let Some(filter) = &query.filter {
            collect_fields(filter, &mut wanted);
        }
        let empty = BTreeMap::new();
        let table = self.objects.get(&query.object).unwrap_or(&empty);
        let mut rows: Vec<Value> = Vec::new();
        for row in table.values() {
            if !all && row.get("IsDeleted") == Some(&json!(true)) {
                continue;
            }
            let full = self.project(&query.object, row, &wanted);
            let mut eval = full.clone();
            // Fields the filter names but the select list does not are still in the row.
            if let (Value::Object(e), Some(f)) = (&mut eval, &query.filter) {
                let mut names = Vec::new();
                collect_fields(f, &mut names);
                for n in names.iter().filter(|n| !n.contains('.')) {
                    e.insert(n.clone(), row.get(n).cloned().unwrap_or(Value::Null));
                }
            }
            if query
                .filter
                .as_ref()
                .is_none_or(|f| soql::matches(f, &eval))
            {
                rows.push(eval);
            }
        }
        if !query.order.is_empty() {
            soql::sort(&mut rows, &query.order);
        }
        if let Some(l) = query.limit {
            rows.truncate(l);
        }
        let rows: Vec<Value> = rows.into_iter().map(|r| prune(r, &query.fields)).collect();
        self.cursor_seq += 1;
        let qid = self.cursor_seq;
        self.cursors.insert(qid, rows);
        // Keep the last few cursors only (the real ones expire too).
        self.cursors.retain(|k, _| *k + 64 > qid);
        self.page(qid, 0)
    }

    /// Serves a page of query `qid` from `offset`. Locators are positions (`01g…-2000`) and
    /// stay readable (Salesforce keeps cursors 2 days), so a page can be fetched again.
    fn page(&mut self, qid: u64, offset: usize) -> Response {
        let Some(rows) = self.cursors.get(&qid) else {
            return resp(
                400,
                err("INVALID_QUERY_LOCATOR", "invalid query locator", &[]),
            );
        };
        let total = rows.len();
        // Like the real one, a page is sometimes smaller than asked.
        let mut size = self.opts.page_size.max(1);
        if total - offset.min(total) > size && self.rng.u8(0..4) == 0 {
            size = (size / 2).max(1);
        }
        let end = (offset + size).min(total);
        let records: Vec<Value> = rows[offset.min(total)..end].to_vec();
        if end >= total {
            return resp(
                200,
                json!({"totalSize": total, "done": true, "records": records}),
            );
        }
        resp(
            200,
            json!({
                "totalSize": total, "done": false,
                "nextRecordsUrl": format!("/services/data/v{}/query/01gSIM{qid:09}-{end}", self.opts.api_version),
                "records": records,
            }),
        )
    }

    fn more(&mut self, locator: &str) -> Response {
        let parsed = locator
            .strip_prefix("01gSIM")
            .and_then(|l| l.split_once('-'))
            .and_then(|(q, o)| Some((q.parse::<u64>().ok()?, o.parse::<usize>().ok()?)));
        match parsed {
            Some((qid, offset)) => self.page(qid, offset),
            None => resp(
                400,
                err("INVALID_QUERY_LOCATOR", "invalid query locator", &[]),
            ),
        }
    }

    fn window(
        &self,
        q: &HashMap<String, String>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), Response> {
        let parse = |k: &str| q.get(k).and_then(|v| parse_sf_datetime(v));
        match (parse("start"), parse("end")) {
            (Some(s), Some(e)) if s < e => Ok((s, e)),
            _ => Err(resp(
                400,
                err("INVALID_REPLICATION_DATE", "start must be before end", &[]),
            )),
        }
    }

    fn updated(&self, object: &str, q: &HashMap<String, String>) -> Response {
        let (start, end) = match self.window(q) {
            Ok(w) => w,
            Err(r) => return r,
        };
        if start < self.now() - Duration::days(30) {
            return resp(
                400,
                err(
                    "INVALID_REPLICATION_DATE",
                    "startDate cannot be more than 30 days ago",
                    &[],
                ),
            );
        }
        let ids: Vec<&str> = self
            .objects
            .get(object)
            .into_iter()
            .flat_map(|t| t.values())
            .filter(|r| r.get("IsDeleted") != Some(&json!(true)))
            .filter(|r| {
                r.get("SystemModstamp")
                    .and_then(Value::as_str)
                    .and_then(parse_sf_datetime)
                    .is_some_and(|s| s >= start && s < end)
            })
            .filter_map(|r| r.get("Id").and_then(Value::as_str))
            .collect();
        resp(
            200,
            json!({"ids": ids, "latestDateCovered": format_sf_datetime(end.min(self.now()))}),
        )
    }

    fn deleted(&self, object: &str, q: &HashMap<String, String>) -> Response {
        let (start, end) = match self.window(q) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let earliest = self.now() - Duration::days(15);
        if start < earliest {
            return resp(
                400,
                err(
                    "INVALID_REPLICATION_DATE",
                    "startDate cannot be more than 15 days ago",
                    &[],
                ),
            );
        }
        let rows: Vec<Value> = self
            .deleted_log
            .iter()
            .filter(|(o, _, d)| o == object && *d >= start && *d < end)
            .map(|(_, id, d)| json!({"id": id, "deletedDate": format_sf_datetime(*d)}))
            .collect();
        resp(
            200,
            json!({"deletedRecords": rows, "earliestDateAvailable": format_sf_datetime(earliest), "latestDateCovered": format_sf_datetime(end.min(self.now()))}),
        )
    }

    fn get(&self, object: &str, id: &str, fields: Option<&String>) -> Response {
        let Some(row) = self
            .get_row(object, id)
            .filter(|r| r.get("IsDeleted") != Some(&json!(true)))
        else {
            return resp(
                404,
                err("NOT_FOUND", "The requested resource does not exist", &[]),
            );
        };
        let fields: Vec<String> = match fields {
            Some(f) => f.split(',').map(|s| s.trim().to_owned()).collect(),
            None => row.keys().cloned().collect(),
        };
        resp(200, self.project(object, row, &fields))
    }

    /// Salesforce's validation of a Task (or other object) write: (status, errors) on failure.
    fn validate(
        &self,
        object: &str,
        body: &Map<String, Value>,
        creating: bool,
    ) -> Result<(), (u16, Value)> {
        for (k, v) in body {
            if k == "attributes" {
                continue;
            }
            let Some((ty, len, writable, pick)) = self.field_type(object, k) else {
                return Err((
                    400,
                    err(
                        "INVALID_FIELD",
                        &format!("No such column '{k}' on sobject of type {object}"),
                        &[],
                    ),
                ));
            };
            if !writable || (k == "TaskSubtype" && !creating) {
                return Err((
                    400,
                    err("INVALID_FIELD_FOR_INSERT_UPDATE", &format!("Unable to create/update fields: {k}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."), &[k]),
                ));
            }
            if v.is_null() {
                continue;
            }
            match ty {
                FieldType::String | FieldType::Textarea | FieldType::Phone => {
                    let Some(s) = v.as_str() else {
                        return Err((400, err("JSON_PARSER_ERROR", &format!("Cannot deserialize instance of string from {v} value for field {k}"), &[])));
                    };
                    if len > 0 && s.chars().count() > len {
                        return Err((
                            400,
                            err(
                                "STRING_TOO_LONG",
                                &format!(
                                    "{k}: data value too large: {} (max length={len})",
                                    s.chars().take(20).collect::<String>()
                                ),
                                &[k],
                            ),
                        ));
                    }
                }
                FieldType::Picklist
                    if !pick.is_empty() && !v.as_str().is_some_and(|s| pick.contains(&s)) =>
                {
                    return Err((
                        400,
                        err(
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            &format!(
                                "{k}: bad value for restricted picklist field: {}",
                                v.as_str().unwrap_or_default()
                            ),
                            &[k],
                        ),
                    ));
                }
                FieldType::Int if !v.is_i64() => {
                    return Err((
                        400,
                        err(
                            "JSON_PARSER_ERROR",
                            &format!("Cannot deserialize value of type int from {v} for field {k}"),
                            &[],
                        ),
                    ));
                }
                FieldType::Datetime
                    if v.as_str().is_none_or(|s| parse_sf_datetime(s).is_none()) =>
                {
                    return Err((
                        400,
                        err(
                            "JSON_PARSER_ERROR",
                            &format!(
                                "Cannot deserialize value of type datetime from {v} for field {k}"
                            ),
                            &[],
                        ),
                    ));
                }
                FieldType::Date
                    if !v.as_str().is_some_and(|s| {
                        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
                    }) =>
                {
                    return Err((
                        400,
                        err(
                            "JSON_PARSER_ERROR",
                            &format!(
                                "Cannot deserialize value of type date from {v} for field {k}"
                            ),
                            &[],
                        ),
                    ));
                }
                FieldType::Reference => {
                    let id = v.as_str().unwrap_or_default();
                    let target = object_of_id(id);
                    let allowed = match (object, k.as_str()) {
                        ("Task", "WhoId") => matches!(target, Some("Contact" | "Lead")),
                        ("Task", "WhatId") => {
                            matches!(target, Some("Account" | "Opportunity" | "Case"))
                        }
                        (_, "OwnerId") => target == Some("User"),
                        _ => target.is_some(),
                    };
                    if !allowed {
                        let label = match k.as_str() {
                            "WhoId" => "Name ID",
                            "WhatId" => "Related To ID",
                            "OwnerId" => "Assigned To ID",
                            _ => k.as_str(),
                        };
                        let code = if k == "WhoId" && target.is_some() {
                            "FIELD_INTEGRITY_EXCEPTION"
                        } else {
                            "MALFORMED_ID"
                        };
                        return Err((
                            400,
                            err(
                                code,
                                &format!("{label}: id value of incorrect type: {id}"),
                                &[k],
                            ),
                        ));
                    }
                    let exists = target
                        .and_then(|t| self.get_row(t, id))
                        .is_some_and(|r| r.get("IsDeleted") != Some(&json!(true)));
                    if !exists && matches!(target, Some("Contact" | "Lead" | "Account" | "User")) {
                        return Err((400, err("ENTITY_IS_DELETED", "entity is deleted", &[k])));
                    }
                }
                _ => {}
            }
        }
        if object == "Task" {
            let who = body.get("WhoId").and_then(Value::as_str);
            let what = body
                .get("WhatId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            if who.is_some_and(|w| w.starts_with("00Q")) && what.is_some() {
                return Err((400, err("FIELD_INTEGRITY_EXCEPTION", "Related To ID: id value of incorrect type: a Lead cannot have a Related To record", &["WhatId"])));
            }
            if creating && body.get("Status").is_none_or(Value::is_null) {
                return Err((
                    400,
                    err(
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [Status]",
                        &["Status"],
                    ),
                ));
            }
        }
        Ok(())
    }

    fn write_row(
        &mut self,
        object: &str,
        id: Option<&str>,
        body: &Map<String, Value>,
        owner: &str,
    ) -> String {
        let mut fields: Map<String, Value> = body
            .iter()
            .filter(|(k, _)| *k != "attributes")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if id.is_none() {
            fields.entry("OwnerId").or_insert_with(|| json!(owner));
            if object == "Task" {
                fields.entry("Priority").or_insert_with(|| json!("Normal"));
            }
        }
        if object == "Task" {
            let closed = fields
                .get("Status")
                .and_then(Value::as_str)
                .map(|s| s == "Completed" || s == "Deferred");
            if let Some(c) = closed {
                fields.insert("IsClosed".into(), json!(c));
            }
        }
        if let Some(id) = id {
            fields.insert("Id".into(), json!(id));
        }
        self.admin_upsert(object, fields)
    }

    fn create(&mut self, object: &str, body: Option<&Value>, user: &str) -> Response {
        let Some(body) = body.and_then(Value::as_object) else {
            return resp(
                400,
                err(
                    "JSON_PARSER_ERROR",
                    "The request body is not a JSON object",
                    &[],
                ),
            );
        };
        if let Err((s, e)) = self.validate(object, body, true) {
            return resp(s, e);
        }
        let id = self.write_row(object, None, body, user);
        resp(201, json!({"id": id, "success": true, "errors": []}))
    }

    fn update(&mut self, object: &str, id: &str, body: Option<&Value>) -> Response {
        let Some(body) = body.and_then(Value::as_object) else {
            return resp(
                400,
                err(
                    "JSON_PARSER_ERROR",
                    "The request body is not a JSON object",
                    &[],
                ),
            );
        };
        match self.get_row(object, id) {
            None => {
                return resp(
                    404,
                    err("NOT_FOUND", "The requested resource does not exist", &[]),
                )
            }
            Some(r) if r.get("IsDeleted") == Some(&json!(true)) => {
                return resp(404, err("ENTITY_IS_DELETED", "entity is deleted", &[]))
            }
            _ => {}
        }
        if let Err((s, e)) = self.validate(object, body, false) {
            return resp(s, e);
        }
        self.write_row(object, Some(id), body, "");
        no_content()
    }

    fn find_by(&self, object: &str, field: &str, value: &str) -> Vec<String> {
        self.objects
            .get(object)
            .into_iter()
            .flat_map(|t| t.values())
            .filter(|r| r.get("IsDeleted") != Some(&json!(true)))
            .filter(|r| r.get(field).and_then(Value::as_str) == Some(value))
            .filter_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    fn upsert(
        &mut self,
        object: &str,
        field: &str,
        value: &str,
        body: Option<&Value>,
        user: &str,
    ) -> Response {
        let ext = self
            .custom_fields
            .get(object)
            .is_some_and(|m| m.contains_key(field) && field.ends_with("_Id__c"));
        if field == "Id" {
            return self.update(object, value, body);
        }
        if !ext {
            return resp(
                404,
                err(
                    "NOT_FOUND",
                    &format!(
                        "Provided external ID field does not exist or is not accessible: {field}"
                    ),
                    &[],
                ),
            );
        }
        let Some(body) = body.and_then(Value::as_object) else {
            return resp(
                400,
                err(
                    "JSON_PARSER_ERROR",
                    "The request body is not a JSON object",
                    &[],
                ),
            );
        };
        let found = self.find_by(object, field, value);
        match found.as_slice() {
            [] => {
                if let Err((s, e)) = self.validate(object, body, true) {
                    return resp(s, e);
                }
                let mut b = body.clone();
                b.insert(field.into(), json!(value));
                let id = self.write_row(object, None, &b, user);
                resp(
                    201,
                    json!({"id": id, "success": true, "errors": [], "created": true}),
                )
            }
            [id] => {
                let id = id.clone();
                let mut b = body.clone();
                b.remove("TaskSubtype");
                if let Err((s, e)) = self.validate(object, &b, false) {
                    return resp(s, e);
                }
                self.write_row(object, Some(&id), &b, user);
                resp(
                    200,
                    json!({"id": id, "success": true, "errors": [], "created": false}),
                )
            }
            many => resp(
                300,
                json!(many.iter().map(|i| self.uri(object, i)).collect::<Vec<_>>()),
            ),
        }
    }

    /// Collections: one result per record, `statusCode` in errors, always 200 when well-formed.
    fn collection(&mut self, req: &Request, update_key: Option<&str>) -> Response {
        let records = match collection_records(req) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let all_or_none = req
            .body
            .as_ref()
            .and_then(|b| b.get("allOrNone"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut out = Vec::new();
        for r in &records {
            let object = r
                .get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("Task")
                .to_owned();
            let mut body = r.as_object().cloned().unwrap_or_default();
            body.remove("attributes");
            let res = match update_key {
                None => self.create(&object, Some(&Value::Object(body)), &req.user_id),
                Some(k) => {
                    let id = body
                        .remove(k)
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let r = self.update(&object, &id, Some(&Value::Object(body)));
                    if r.status == 204 {
                        resp(200, json!({"id": id, "success": true, "errors": []}))
                    } else {
                        r
                    }
                }
            };
            out.push(collection_result(res));
        }
        if all_or_none && out.iter().any(|r| r["success"] == json!(false)) {
            // Simplified: the successes above stay applied; the results say rolled back.
            for r in out.iter_mut().filter(|r| r["success"] == json!(true)) {
                *r = json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]});
            }
        }
        resp(200, Value::Array(out))
    }

    fn collection_upsert(&mut self, req: &Request, object: &str, field: &str) -> Response {
        let records = match collection_records(req) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut out = Vec::new();
        for r in &records {
            let mut body = r.as_object().cloned().unwrap_or_default();
            body.remove("attributes");
            let value = body
                .remove(field)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let res = self.upsert(
                object,
                field,
                &value,
                Some(&Value::Object(body)),
                &req.user_id,
            );
            out.push(collection_result(res));
        }
        resp(200, Value::Array(out))
    }

    fn composite(&mut self, req: &Request) -> Response {
        let Some(subs) = req
            .body
            .as_ref()
            .and_then(|b| b.get("compositeRequest"))
            .and_then(Value::as_array)
            .cloned()
        else {
            return resp(
                400,
                err("JSON_PARSER_ERROR", "compositeRequest is required", &[]),
            );
        };
        if subs.len() > 25 {
            return resp(
                400,
                err("INVALID_INPUT", "Limit of 25 subrequests exceeded", &[]),
            );
        }
        let prefix = format!("/services/data/v{}", req.version);
        let mut out = Vec::new();
        for s in subs {
            let method = s["method"].as_str().unwrap_or("GET").to_owned();
            let url = s["url"].as_str().unwrap_or_default();
            let reference = s["referenceId"].clone();
            let (path, qs) = url.split_once('?').unwrap_or((url, ""));
            let Some(path) = path.strip_prefix(&prefix) else {
                out.push(json!({"body": err("NOT_FOUND", "The requested resource does not exist", &[]), "httpHeaders": {}, "httpStatusCode": 404, "referenceId": reference}));
                continue;
            };
            let query: HashMap<String, String> = url::form_urlencoded::parse(qs.as_bytes())
                .into_owned()
                .collect();
            let sub = Request {
                method,
                path: path.to_owned(),
                query,
                body: s.get("body").cloned(),
                user_id: req.user_id.clone(),
                version: req.version.clone(),
            };
            let r = self.dispatch(&sub);
            out.push(json!({"body": r.body.unwrap_or(Value::Null), "httpHeaders": {}, "httpStatusCode": r.status, "referenceId": reference}));
        }
        resp(200, json!({"compositeResponse": out}))
    }

    fn bulk_create(&mut self, req: &Request) -> Response {
        let body = req.body.clone().unwrap_or(Value::Null);
        let Some(q) = body["query"].as_str().map(str::to_owned) else {
            return resp(400, err("INVALIDJOB", "query is required", &[]));
        };
        let all = body["operation"] == "queryAll";
        let parsed = match soql::parse(&q) {
            Ok(p) => p,
            Err(e) => return resp(400, err("INVALIDJOB", &e, &[])),
        };
        let r = self.query(Some(&q), all);
        if r.status != 200 {
            return r;
        }
        // The whole result, not a page: the cursor the query made holds it.
        let qid = self.cursor_seq;
        let rows = self.cursors.remove(&qid).unwrap_or_else(|| {
            r.body
                .as_ref()
                .and_then(|b| b["records"].as_array().cloned())
                .unwrap_or_default()
        });
        self.id_seq += 1;
        let id = format!("750SIM{:09}AAA", self.id_seq);
        self.bulk_jobs.insert(
            id.clone(),
            BulkJob {
                polls: 0,
                fields: parsed.fields.clone(),
                rows,
            },
        );
        resp(200, self.bulk_info(&id, "UploadComplete", &parsed.object))
    }

    fn bulk_info(&self, id: &str, state: &str, object: &str) -> Value {
        let n = self.bulk_jobs.get(id).map(|j| j.rows.len()).unwrap_or(0);
        json!({
            "id": id, "operation": "query", "object": object, "createdById": self.login_user,
            "createdDate": format_sf_datetime(self.now()), "systemModstamp": format_sf_datetime(self.now()),
            "state": state, "concurrencyMode": "Parallel", "contentType": "CSV",
            "apiVersion": self.opts.api_version.parse::<f64>().unwrap_or(62.0),
            "lineEnding": "LF", "columnDelimiter": "COMMA",
            "numberRecordsProcessed": if state == "JobComplete" { n } else { 0 },
        })
    }

    fn bulk_status(&mut self, id: &str) -> Response {
        let Some(job) = self.bulk_jobs.get_mut(id) else {
            return resp(
                404,
                err("NOT_FOUND", "The requested resource does not exist", &[]),
            );
        };
        // The first poll finds the job still running, as a real one usually is.
        job.polls += 1;
        let state = if job.polls < 2 {
            "InProgress"
        } else {
            "JobComplete"
        };
        resp(200, self.bulk_info(id, state, ""))
    }

    fn bulk_results(&mut self, id: &str, q: &HashMap<String, String>) -> Response {
        let Some(job) = self.bulk_jobs.get(id) else {
            return resp(
                404,
                err("NOT_FOUND", "The requested resource does not exist", &[]),
            );
        };
        if job.polls < 2 {
            return resp(412, err("JOB_NOT_COMPLETE", "The job is not complete", &[]));
        }
        let offset: usize = match q.get("locator").map(String::as_str) {
            None | Some("") => 0,
            Some(l) => match l.parse() {
                Ok(n) => n,
                Err(_) => return resp(400, err("INVALID_LOCATOR", "invalid locator", &[])),
            },
        };
        let max: usize = q
            .get("maxRecords")
            .and_then(|m| m.parse().ok())
            .unwrap_or(50_000)
            .max(1);
        let end = (offset + max).min(job.rows.len());
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        let _ = w.write_record(&job.fields);
        for row in &job.rows[offset.min(end)..end] {
            let cells: Vec<String> = job
                .fields
                .iter()
                .map(|f| match soql::field(row, f) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                })
                .collect();
            let _ = w.write_record(&cells);
        }
        let text = String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default();
        let locator = if end < job.rows.len() {
            end.to_string()
        } else {
            "null".into()
        };
        Response {
            status: 200,
            body: None,
            raw: Some((
                text,
                vec![
                    ("Sforce-Locator".into(), locator),
                    (
                        "Sforce-NumberOfRecords".into(),
                        (end - offset.min(end)).to_string(),
                    ),
                    ("Content-Type".into(), "text/csv".into()),
                ],
            )),
        }
    }

    /// Snapshot for `/__sim/state`.
    pub fn summary(&self) -> Value {
        let counts: BTreeMap<&str, usize> = ["Contact", "Account", "Lead", "User", "Task"]
            .iter()
            .map(|o| (*o, self.count(o)))
            .collect();
        json!({
            "org_id": self.org_id, "records": counts, "api_calls": self.api_calls,
            "api_daily_max": self.opts.api_daily_max, "token_requests": self.token_requests,
            "faults": self.faults, "now": format_sf_datetime(self.now()),
            "page_size": self.opts.page_size, "rotate_refresh_tokens": self.opts.rotate_refresh_tokens,
        })
    }

    pub fn set_page_size(&mut self, n: usize) {
        self.opts.page_size = n.max(1);
    }

    pub fn set_rotation(&mut self, on: bool) {
        self.opts.rotate_refresh_tokens = on;
    }
}

/// The `records` of a Collections request (at most 200).
fn collection_records(req: &Request) -> Result<Vec<Value>, Response> {
    let records = req
        .body
        .as_ref()
        .and_then(|b| b.get("records"))
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| resp(400, err("JSON_PARSER_ERROR", "records is required", &[])))?;
    if records.len() > 200 {
        return Err(resp(
            400,
            err(
                "EXCEEDED_MAX_SEMIJOIN_SUBSELECTS",
                "Exceeded max limit of 200 records",
                &[],
            ),
        ));
    }
    Ok(records)
}

fn collection_result(r: Response) -> Value {
    let body = r.body.unwrap_or(Value::Null);
    if (200..300).contains(&r.status) {
        let mut ok = json!({"id": body.get("id").cloned().unwrap_or(Value::Null), "success": true, "errors": []});
        if let Some(c) = body.get("created") {
            ok["created"] = c.clone();
        }
        ok
    } else {
        let errors: Vec<Value> = body
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| json!({"statusCode": e["errorCode"], "message": e["message"], "fields": e.get("fields").cloned().unwrap_or(json!([]))}))
                    .collect()
            })
            .unwrap_or_default();
        json!({"success": false, "errors": errors})
    }
}

fn collect_fields(e: &soql::Expr, out: &mut Vec<String>) {
    match e {
        soql::Expr::Cmp(f, ..) | soql::Expr::In(f, ..) => {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        soql::Expr::And(a, b) | soql::Expr::Or(a, b) => {
            collect_fields(a, out);
            collect_fields(b, out);
        }
        soql::Expr::Not(a) => collect_fields(a, out),
    }
}

/// Keeps only the selected fields (and `attributes`) of an evaluated row.
fn prune(row: Value, fields: &[String]) -> Value {
    let Value::Object(mut m) = row else {
        return row;
    };
    let keep: Vec<&str> = fields
        .iter()
        .map(|f| f.split('.').next().unwrap_or(f))
        .collect();
    m.retain(|k, _| k == "attributes" || keep.iter().any(|f| f.eq_ignore_ascii_case(k)));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> Org {
        Org::new(
            SimOptions {
                records: 200,
                ..Default::default()
            },
            "http://127.0.0.1:1",
        )
    }

    fn req(method: &str, path: &str, body: Value) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: HashMap::new(),
            body: Some(body),
            user_id: "005SIM000000001AAA".into(),
            version: "62.0".into(),
        }
    }

    fn first_id(org: &Org, object: &str, pred: impl Fn(&Value) -> bool) -> String {
        org.rows(object).into_iter().find(|r| pred(r)).unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn task_validation_table() {
        let mut o = org();
        let contact = first_id(&o, "Contact", |_| true);
        let account = first_id(&o, "Account", |_| true);
        let lead = first_id(&o, "Lead", |_| true);
        let ok = json!({"Subject": "Call", "Status": "Completed", "TaskSubtype": "Call", "CallType": "Inbound"});
        let with = |extra: Value| {
            let mut b = ok.clone();
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        let table: Vec<(&str, Value, u16, &str)> = vec![
            (
                "valid",
                with(json!({"WhoId": contact, "WhatId": account, "CallDurationInSeconds": 42})),
                201,
                "",
            ),
            (
                "bad CallType",
                with(json!({"CallType": "Incoming"})),
                400,
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            ),
            (
                "bad TaskSubtype",
                with(json!({"TaskSubtype": "Phone"})),
                400,
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            ),
            (
                "Account in WhoId",
                with(json!({"WhoId": account})),
                400,
                "FIELD_INTEGRITY_EXCEPTION",
            ),
            (
                "Contact in WhatId",
                with(json!({"WhatId": contact})),
                400,
                "MALFORMED_ID",
            ),
            (
                "Lead with WhatId",
                with(json!({"WhoId": lead, "WhatId": account})),
                400,
                "FIELD_INTEGRITY_EXCEPTION",
            ),
            (
                "unknown field",
                with(json!({"Colour__c": "red"})),
                400,
                "INVALID_FIELD",
            ),
            (
                "read-only field",
                with(json!({"IsClosed": true})),
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
            ),
            (
                "subject too long",
                with(json!({"Subject": "x".repeat(256)})),
                400,
                "STRING_TOO_LONG",
            ),
            (
                "missing status",
                json!({"Subject": "Call"}),
                400,
                "REQUIRED_FIELD_MISSING",
            ),
            (
                "deleted who",
                with(json!({"WhoId": "003000999999999AAA"})),
                400,
                "ENTITY_IS_DELETED",
            ),
            (
                "bad datetime",
                with(json!({"Call_Start__c": "yesterday"})),
                400,
                "JSON_PARSER_ERROR",
            ),
            (
                "custom fields",
                with(
                    json!({"Call_Start__c": "2026-11-21T10:00:00.000+0000", "Call_Memo__c": "A;B"}),
                ),
                201,
                "",
            ),
        ];
        for (name, body, status, code) in table {
            let r = o.dispatch(&req("POST", "/sobjects/Task", body));
            assert_eq!(r.status, status, "{name}: {:?}", r.body);
            if !code.is_empty() {
                assert_eq!(r.body.unwrap()[0]["errorCode"], code, "{name}");
            }
        }
    }

    #[test]
    fn upsert_collections_and_composite_shapes() {
        let mut o = org();
        let body = json!({"Subject": "Call", "Status": "Completed"});
        let r = o.dispatch(&req(
            "PATCH",
            "/sobjects/Task/Call_Id__c/abc-1",
            body.clone(),
        ));
        assert_eq!(
            (r.status, r.body.as_ref().unwrap()["created"].clone()),
            (201, json!(true))
        );
        let r = o.dispatch(&req(
            "PATCH",
            "/sobjects/Task/Call_Id__c/abc-1",
            json!({"Description": "memo"}),
        ));
        assert_eq!(
            (r.status, r.body.as_ref().unwrap()["created"].clone()),
            (200, json!(false))
        );
        assert_eq!(o.count("Task"), 1);
        // Two Tasks with one external id: 300 with both URLs.
        o.admin_upsert(
            "Task",
            json!({"Call_Id__c": "dup", "Status": "Completed"})
                .as_object()
                .unwrap()
                .clone(),
        );
        o.admin_upsert(
            "Task",
            json!({"Call_Id__c": "dup", "Status": "Completed"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let r = o.dispatch(&req("PATCH", "/sobjects/Task/Call_Id__c/dup", body.clone()));
        assert_eq!(r.status, 300);
        assert_eq!(r.body.unwrap().as_array().unwrap().len(), 2);
        let r = o.dispatch(&req("PATCH", "/sobjects/Task/Nope__c/x", body.clone()));
        assert_eq!(r.status, 404);

        // Collections: 200 with one result per record; errors use statusCode.
        let r = o.dispatch(&req(
            "POST",
            "/composite/sobjects",
            json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Task"}, "Subject": "a", "Status": "Completed"},
                {"attributes": {"type": "Task"}, "Subject": "b", "CallType": "Sideways", "Status": "Completed"},
            ]}),
        ));
        assert_eq!(r.status, 200);
        let b = r.body.unwrap();
        assert_eq!(b[0]["success"], true);
        assert_eq!(
            b[1]["errors"][0]["statusCode"],
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        );
        let too_many: Vec<Value> = (0..201)
            .map(|_| json!({"attributes": {"type": "Task"}, "Status": "Completed"}))
            .collect();
        assert_eq!(
            o.dispatch(&req(
                "POST",
                "/composite/sobjects",
                json!({"records": too_many})
            ))
            .status,
            400
        );

        // Composite: always 200, sub-statuses inside.
        let r = o.dispatch(&req(
            "POST",
            "/composite",
            json!({"compositeRequest": [
                {"method": "POST", "url": "/services/data/v62.0/sobjects/Task", "referenceId": "t1", "body": {"Status": "Completed"}},
                {"method": "GET", "url": "/services/data/v62.0/sobjects/Task/00T000000000000AAA", "referenceId": "t2"},
            ]}),
        ));
        assert_eq!(r.status, 200);
        let b = r.body.unwrap();
        assert_eq!(b["compositeResponse"][0]["httpStatusCode"], 201);
        assert_eq!(b["compositeResponse"][1]["httpStatusCode"], 404);
    }

    #[test]
    fn replication_windows() {
        let mut o = org();
        let id = first_id(&o, "Lead", |_| true);
        o.admin_delete("Lead", &id);
        let now = o.now() + Duration::seconds(1);
        let q = |start: chrono::DateTime<Utc>| {
            let mut m = HashMap::new();
            m.insert("start".to_string(), format_sf_datetime(start));
            m.insert("end".to_string(), format_sf_datetime(now));
            m
        };
        let mut r = req("GET", "/sobjects/Lead/deleted", Value::Null);
        r.query = q(now - Duration::days(1));
        let d = o.dispatch(&r);
        assert_eq!(d.body.unwrap()["deletedRecords"][0]["id"], json!(id));
        r.query = q(now - Duration::days(16));
        assert_eq!(
            o.dispatch(&r).body.unwrap()[0]["errorCode"],
            "INVALID_REPLICATION_DATE"
        );
        let mut r = req("GET", "/sobjects/Lead/updated", Value::Null);
        r.query = q(now - Duration::days(31));
        assert_eq!(o.dispatch(&r).status, 400);
        r.query = q(now - Duration::days(29));
        assert_eq!(o.dispatch(&r).status, 200);
    }
}
