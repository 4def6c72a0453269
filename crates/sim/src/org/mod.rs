//! The simulated org's state and its REST behaviour, as plain functions of (state, request):
//! the HTTP layer (`sim::server`) only translates, so `/composite` reuses the same handlers and
//! tests can drive the org without sockets.
//!
//! Shapes follow the REST API Developer Guide ("Status Codes and Error Responses", "Date
//! Formats"): error bodies are arrays with `errorCode`
//! (Collections use `statusCode`), datetimes are written `…+0000`, composite answers 200.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::schema::{self, object_of_id, prefix, Field, FieldType};
use super::soql;
use crate::synth::{self, SynthSpec};
use callsync_core::record::{format_sf_datetime, parse_sf_datetime};

mod bulk;
mod oauth;
mod query;
mod write;

/// Whether a write inserted a record or updated one (an upsert is either).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteKind {
    Insert,
    Update,
}

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
    /// The public key of the certificate uploaded to the connected app, for the JWT bearer
    /// flow (PEM); without one, JWT sign-ins are refused.
    pub jwt_public_key_pem: Option<String>,
    /// A sandbox: JWT assertions are for `https://test.salesforce.com`.
    pub sandbox: bool,
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
            jwt_public_key_pem: None,
            sandbox: false,
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
    /// For `latency`; for `commit_then_drop`, how long the unanswered write holds the connection.
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
    /// The request is carried out, then (after `latency_ms`, when set: a window in which a
    /// test can kill the client with the write done and unanswered) the connection closes
    /// with no response.
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
    /// Carry the request out, wait this many milliseconds, then close with no answer.
    DropAfter(u64),
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
    /// Every accepted write: (object, an insert or an update, the fields it named), for the
    /// test that holds every write shape against the describe.
    pub writes: Vec<(String, WriteKind, Vec<String>)>,
    rng: fastrand::Rng,
}

/// `INVALID_FIELD` for a column the object does not have (REST resources_query).
fn no_such_column(field: &str, object: &str) -> Value {
    err(
        "INVALID_FIELD",
        &format!("No such column '{field}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name."),
        &[],
    )
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
            writes: Vec::new(),
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

    pub(crate) fn advance_clock(&mut self, by: Duration) {
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

    pub(crate) fn get_row(&self, object: &str, id: &str) -> Option<&Map<String, Value>> {
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

    /// The object's fields as this user sees them: the standard ones, the admin's custom ones,
    /// and field-level security (a read-only custom field is neither createable nor updateable).
    fn fields_of(&self, object: &str) -> Option<Vec<(String, Field)>> {
        let mut out: Vec<(String, Field)> = schema::fields(object, self.opts.person_accounts)?
            .into_iter()
            .map(|f| (f.name.to_owned(), f))
            .collect();
        for (name, ty) in self.custom_fields.get(object).into_iter().flatten() {
            let writable = !self.readonly_fields.contains(&format!("{object}.{name}"));
            let length = match ty {
                FieldType::String => 255,
                FieldType::Textarea => 32_000,
                _ => 0,
            };
            out.push((
                name.clone(),
                Field {
                    name: "",
                    ty: *ty,
                    length,
                    create: writable,
                    update: writable,
                    picklist: &[],
                    default: None,
                },
            ));
        }
        Some(out)
    }

    /// A field by any spelling of its name (SOQL and JSON field names are case-insensitive):
    /// its canonical name and definition.
    fn field(&self, object: &str, name: &str) -> Option<(String, Field)> {
        self.fields_of(object)?
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The stored Id a 15- or 18-character Id names, if such a record exists (deleted or not).
    fn resolve_id(&self, object: &str, id: &str) -> Option<String> {
        let table = self.objects.get(object)?;
        if table.contains_key(id) {
            return Some(id.to_owned());
        }
        let head = id.get(..15)?;
        table
            .range(head.to_owned()..)
            .take_while(|(k, _)| k.starts_with(head))
            .find(|(k, _)| schema::same_id(k, id))
            .map(|(k, _)| k.clone())
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
    pub(crate) fn fault_for(&mut self, method: &str, path: &str) -> FaultAction {
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
                FaultKind::CommitThenDrop => FaultAction::DropAfter(f.latency_ms),
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
    pub(crate) fn count_api_call(&mut self) -> Result<(), Value> {
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

    pub(crate) fn limit_info(&self) -> String {
        format!("api-usage={}/{}", self.api_calls, self.opts.api_daily_max)
    }

    // ---------- OAuth ----------

    // ---------- REST ----------

    pub fn dispatch(&mut self, req: &Request) -> Response {
        let mut parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        // Object names in paths are case-insensitive; an object the org lacks is 404.
        let object_at = match parts.as_slice() {
            ["sobjects", _, ..] => Some(1),
            ["composite", "sobjects", _, ..] => Some(2),
            _ => None,
        };
        if let Some(i) = object_at {
            match schema::canonical_object(parts[i]) {
                Some(o) => parts[i] = o,
                None => {
                    return resp(
                        404,
                        err("NOT_FOUND", "The requested resource does not exist", &[]),
                    )
                }
            }
        }
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
            ("DELETE", ["sobjects", object, id]) => self.delete(object, id),
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

    /// Whether `/services/data/v{version}` exists: versions 31.0 up to the org's own
    /// (REST dome_versions lists them; versions 7.0–30.0 are retired and answer 410).
    pub(crate) fn check_version(&self, version: &str) -> Result<(), Response> {
        let not_found = || {
            resp(
                404,
                err("NOT_FOUND", "The requested resource does not exist", &[]),
            )
        };
        let (major, minor) = version.split_once('.').ok_or_else(not_found)?;
        let max: u32 = self
            .opts
            .api_version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(62);
        match (major.parse::<u32>(), minor) {
            (Ok(m), "0") if (31..=max).contains(&m) => Ok(()),
            (Ok(m), "0") if (7..31).contains(&m) => Err(resp(
                410,
                err(
                    "API_VERSION_RETIRED",
                    &format!("API version {version} is retired"),
                    &[],
                ),
            )),
            _ => Err(not_found()),
        }
    }

    fn limits(&self) -> Value {
        json!({
            "DailyApiRequests": {"Max": self.opts.api_daily_max, "Remaining": self.opts.api_daily_max.saturating_sub(self.api_calls)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
        })
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

    pub(crate) fn set_page_size(&mut self, n: usize) {
        self.opts.page_size = n.max(1);
    }

    pub fn set_rotation(&mut self, on: bool) {
        self.opts.rotate_refresh_tokens = on;
    }
}

#[cfg(test)]
mod tests;
