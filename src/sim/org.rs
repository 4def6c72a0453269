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

use super::schema::{self, object_of_id, prefix, Field, FieldType};
use super::soql;
use crate::record::{format_sf_datetime, parse_sf_datetime};
use crate::synth::{self, SynthSpec};

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
                    Err((e, d)) => bad(&e, &d),
                }
            }
            _ => bad("unsupported_grant_type", "grant type not supported"),
        }
    }

    /// Checks a JWT bearer assertion as Salesforce does (HELP remoteaccess_oauth_jwt_flow):
    /// an RS256 signature by the certificate uploaded to the connected app, `iss` the consumer
    /// key, `aud` `https://login.salesforce.com` (`https://test.salesforce.com` for a sandbox)
    /// whatever host the request went to, `exp` in the future, and `sub` a user who approved
    /// the app.
    fn check_jwt(&self, assertion: &str) -> Result<String, (String, String)> {
        use base64::Engine as _;
        let grant = |d: &str| ("invalid_grant".to_owned(), d.to_owned());
        let Some(key_pem) = self.opts.jwt_public_key_pem.as_deref() else {
            // The app has no certificate: it does not use digital signatures.
            return Err(("invalid_client".into(), "invalid client credentials".into()));
        };
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts.as_slice() else {
            return Err(grant("invalid assertion"));
        };
        let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|h| h["alg"].as_str().map(str::to_owned));
        if alg.as_deref() != Some("RS256") {
            return Err(grant("invalid assertion"));
        }
        let signed = jsonwebtoken::DecodingKey::from_rsa_pem(key_pem.as_bytes())
            .ok()
            .and_then(|key| {
                jsonwebtoken::crypto::verify(
                    signature,
                    format!("{header}.{claims}").as_bytes(),
                    &key,
                    jsonwebtoken::Algorithm::RS256,
                )
                .ok()
            })
            .unwrap_or(false);
        if !signed {
            return Err(grant("invalid assertion"));
        }
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(|| grant("invalid assertion"))?;
        if claims["iss"].as_str() != Some(&self.opts.client_id) {
            return Err((
                "invalid_client_id".into(),
                "client identifier invalid".into(),
            ));
        }
        let audience = if self.opts.sandbox {
            "https://test.salesforce.com"
        } else {
            "https://login.salesforce.com"
        };
        if claims["aud"].as_str() != Some(audience) {
            return Err(grant("audience is invalid"));
        }
        if claims["exp"]
            .as_i64()
            .is_none_or(|e| e < self.now().timestamp())
        {
            return Err(grant("expired authorization code"));
        }
        let sub = claims["sub"].as_str().unwrap_or_default();
        self.objects
            .get("User")
            .and_then(|u| {
                u.values()
                    .find(|r| r.get("Username").and_then(Value::as_str) == Some(sub))
            })
            .and_then(|r| r.get("Id").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| grant("user hasn't approved this consumer"))
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
    pub fn check_version(&self, version: &str) -> Result<(), Response> {
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

    fn describe(&self, object: &str) -> Response {
        let fields = self
            .fields_of(object)
            .filter(|_| !self.is_denied(object, "read"));
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
        let out: Vec<Value> = fields
            .iter()
            .map(|(name, f)| {
                let custom = name.ends_with("__c");
                // The admin made every `…_Id__c` field Unique and External ID.
                let ext = custom && name.ends_with("_Id__c");
                json!({
                    "name": name, "type": f.ty.sf(), "length": f.length,
                    "createable": f.create, "updateable": f.update, "custom": custom,
                    "nillable": f.default.is_none() && f.ty != FieldType::Boolean && f.ty != FieldType::Id,
                    "defaultedOnCreate": f.default.is_some() || f.ty == FieldType::Boolean,
                    "externalId": ext, "unique": ext,
                    "restrictedPicklist": !f.picklist.is_empty(),
                    "picklistValues": f.picklist.iter().map(|p| json!({"value": p, "label": p, "active": true, "defaultValue": Some(*p) == f.default})).collect::<Vec<_>>(),
                })
            })
            .collect();
        resp(
            200,
            json!({"name": object, "queryable": true, "replicateable": true,
                "deletable": object != "User",
                "createable": !self.is_denied(object, "create"), "fields": out}),
        )
    }

    /// A field a query names, by any spelling, with its parent relationship if it has one
    /// (`account.name` on Contact → `Account.Name`): the canonical name and the field's type.
    fn resolve_field(&self, object: &str, name: &str) -> Option<(String, FieldType)> {
        if let Some((parent, rest)) = name.split_once('.') {
            // The relationships the org has: Contact.Account, Task.Account, and every owned
            // object's Owner (User).
            let (rel, target) =
                if parent.eq_ignore_ascii_case("Account") && matches!(object, "Contact" | "Task") {
                    ("Account", "Account")
                } else if parent.eq_ignore_ascii_case("Owner") && object != "User" {
                    ("Owner", "User")
                } else {
                    return None;
                };
            let (sub, ty) = self.resolve_field(target, rest)?;
            return Some((format!("{rel}.{sub}"), ty));
        }
        self.field(object, name).map(|(n, f)| (n, f.ty))
    }

    /// A filter with canonical field names, each literal checked against its field's type as
    /// Salesforce checks it (quoted text for text and Id fields; unquoted dates, datetimes,
    /// numbers and booleans), and Id literals matching 15- or 18-character forms.
    fn typed_filter(&self, object: &str, e: &soql::Expr) -> Result<soql::Expr, Value> {
        use soql::{Expr, Literal};
        let check = |name: &str, lit: &Literal| -> Result<(String, Literal), Value> {
            let Some((canon, ty)) = self.resolve_field(object, name) else {
                return Err(no_such_column(name, object));
            };
            let wrong = |want: &str, quoted: bool| {
                err(
                    "INVALID_FIELD",
                    &format!(
                        "value of filter criterion for field '{canon}' must be of type {want} and should {}be enclosed in quotes",
                        if quoted { "" } else { "not " }
                    ),
                    &[],
                )
            };
            let lit = match (ty, lit.clone()) {
                (_, Literal::Null) => Literal::Null,
                (FieldType::Id | FieldType::Reference, Literal::Text(t)) => Literal::Id(t),
                (t, Literal::Text(x)) if t.is_text() => Literal::Text(x),
                (t, _) if t.is_text() => return Err(wrong("string", true)),
                (FieldType::Boolean, Literal::Bool(b)) => Literal::Bool(b),
                (FieldType::Boolean, _) => return Err(wrong("boolean", false)),
                (FieldType::Int, Literal::Number(n)) => Literal::Number(n),
                (FieldType::Int, _) => return Err(wrong("double", false)),
                (FieldType::Datetime, l @ (Literal::DateTime(_) | Literal::Days(..))) => l,
                (FieldType::Datetime, _) => return Err(wrong("dateTime", false)),
                (FieldType::Date, l @ (Literal::Date(_) | Literal::Days(..))) => l,
                (FieldType::Date, _) => return Err(wrong("date", false)),
                (_, l) => l,
            };
            Ok((canon, lit))
        };
        Ok(match e {
            Expr::Cmp(f, op, lit) => {
                if *op == soql::Op::Like
                    && !self
                        .resolve_field(object, f)
                        .is_some_and(|(_, t)| t.is_text())
                {
                    return Err(err(
                        "INVALID_FIELD",
                        &format!("invalid operator on field '{f}': LIKE works on text fields only"),
                        &[],
                    ));
                }
                let (f, lit) = check(f, lit)?;
                Expr::Cmp(f, *op, lit)
            }
            Expr::In(f, values, negate) => {
                let mut out = Vec::new();
                let mut canon = f.clone();
                for v in values {
                    let (c, l) = check(f, v)?;
                    canon = c;
                    out.push(l);
                }
                Expr::In(canon, out, *negate)
            }
            Expr::And(a, b) => Expr::And(
                Box::new(self.typed_filter(object, a)?),
                Box::new(self.typed_filter(object, b)?),
            ),
            Expr::Or(a, b) => Expr::Or(
                Box::new(self.typed_filter(object, a)?),
                Box::new(self.typed_filter(object, b)?),
            ),
            Expr::Not(a) => Expr::Not(Box::new(self.typed_filter(object, a)?)),
        })
    }

    /// A row as the API returns it: `attributes`, the selected fields (canonical names),
    /// parents as nested objects (`null` when there is no parent).
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
                    out.insert(f.clone(), row.get(f).cloned().unwrap_or(Value::Null));
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
        let parsed = match soql::parse_at(q, self.now().date_naive()) {
            Ok(q) => q,
            Err(e) => return resp(400, err("MALFORMED_QUERY", &e, &[])),
        };
        let object = match schema::canonical_object(&parsed.object) {
            Some(o) if !self.is_denied(o, "read") => o,
            _ => {
                return resp(
                    400,
                    err(
                        "INVALID_TYPE",
                        &format!("sObject type '{}' is not supported.", parsed.object),
                        &[],
                    ),
                )
            }
        };
        let mut fields = Vec::new();
        for f in &parsed.fields {
            let Some((canon, _)) = self.resolve_field(object, f) else {
                return resp(400, no_such_column(f, object));
            };
            // "duplicate field selected: Phone" (MALFORMED_QUERY).
            if fields
                .iter()
                .any(|x: &String| x.eq_ignore_ascii_case(&canon))
            {
                return resp(
                    400,
                    err(
                        "MALFORMED_QUERY",
                        &format!("duplicate field selected: {canon}"),
                        &[],
                    ),
                );
            }
            fields.push(canon);
        }
        let mut order = Vec::new();
        for (f, asc) in &parsed.order {
            let Some((canon, _)) = self.resolve_field(object, f) else {
                return resp(400, no_such_column(f, object));
            };
            order.push((canon, *asc));
        }
        let filter = match parsed.filter.as_ref().map(|e| self.typed_filter(object, e)) {
            None => None,
            Some(Ok(e)) => Some(e),
            Some(Err(e)) => return resp(400, e),
        };
        let mut wanted: Vec<String> = fields.clone();
        if let Some(filter) = &filter {
            collect_fields(filter, &mut wanted);
        }
        for (f, _) in &order {
            if !wanted.contains(f) {
                wanted.push(f.clone());
            }
        }
        let empty = BTreeMap::new();
        let table = self.objects.get(object).unwrap_or(&empty);
        let mut rows: Vec<Value> = Vec::new();
        for row in table.values() {
            // `query` leaves out deleted rows; `queryAll` adds them (REST resources_queryall).
            if !all && row.get("IsDeleted") == Some(&json!(true)) {
                continue;
            }
            let eval = self.project(object, row, &wanted);
            if filter.as_ref().is_none_or(|f| soql::matches(f, &eval)) {
                rows.push(eval);
            }
        }
        if !order.is_empty() {
            soql::sort(&mut rows, &order);
        }
        if let Some(l) = parsed.limit {
            rows.truncate(l);
        }
        if parsed.count {
            // COUNT() answers the number only (SOQL sforce_api_calls_soql_select_count).
            return resp(
                200,
                json!({"totalSize": rows.len(), "done": true, "records": []}),
            );
        }
        let rows: Vec<Value> = rows.into_iter().map(|r| prune(r, &fields)).collect();
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

    /// The stored row an Id names, or the answer Salesforce gives when there is none: 404
    /// `NOT_FOUND`, or 404 `ENTITY_IS_DELETED` for a record in the recycle bin (REST
    /// errorcodes; both statuses are seen for it, 404 on record paths).
    fn live_row(&self, object: &str, id: &str) -> Result<String, Response> {
        let not_found = || {
            resp(
                404,
                err("NOT_FOUND", "The requested resource does not exist", &[]),
            )
        };
        let id = self.resolve_id(object, id).ok_or_else(not_found)?;
        match self.get_row(object, &id) {
            Some(r) if r.get("IsDeleted") == Some(&json!(true)) => Err(resp(
                404,
                err("ENTITY_IS_DELETED", "entity is deleted", &[]),
            )),
            Some(_) => Ok(id),
            None => Err(not_found()),
        }
    }

    /// `GET …/sobjects/{object}/{id}[?fields=…]`: every field of the record (null where
    /// empty), or only those asked for (REST resources_sobject_retrieve).
    fn get(&self, object: &str, id: &str, fields: Option<&String>) -> Response {
        let id = match self.live_row(object, id) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let Some(row) = self.get_row(object, &id) else {
            return resp(
                404,
                err("NOT_FOUND", "The requested resource does not exist", &[]),
            );
        };
        let names: Vec<String> = match fields {
            Some(f) => {
                let mut out = Vec::new();
                for name in f.split(',').map(str::trim) {
                    match self.resolve_field(object, name) {
                        Some((canon, _)) => out.push(canon),
                        None => return resp(400, no_such_column(name, object)),
                    }
                }
                out
            }
            None => self
                .fields_of(object)
                .unwrap_or_default()
                .into_iter()
                .map(|(n, _)| n)
                .collect(),
        };
        resp(200, self.project(object, row, &names))
    }

    /// Salesforce's validation of a write: (status, errors) on failure, else the body with
    /// canonical field names and 18-character Ids. `creating`: an insert (a create, or an
    /// upsert that matched nothing); otherwise an update, where only updateable fields may be
    /// named — an upsert that matches an existing record is an update (REST dome_upsert).
    fn validate(
        &self,
        object: &str,
        body: &Map<String, Value>,
        creating: bool,
    ) -> Result<Map<String, Value>, (u16, Value)> {
        let mut out = Map::new();
        for (k, v) in body {
            if k == "attributes" {
                continue;
            }
            let Some((name, field)) = self.field(object, k) else {
                return Err((
                    400,
                    err(
                        "INVALID_FIELD",
                        &format!("No such column '{k}' on sobject of type {object}"),
                        &[],
                    ),
                ));
            };
            let allowed = if creating { field.create } else { field.update };
            if !allowed {
                return Err((
                    400,
                    err("INVALID_FIELD_FOR_INSERT_UPDATE", &format!("Unable to create/update fields: {name}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."), &[&name]),
                ));
            }
            let mut v = v.clone();
            if !v.is_null() {
                self.check_value(object, &name, &field, &mut v)?;
            }
            out.insert(name, v);
        }
        if object == "Task" {
            let who = out.get("WhoId").and_then(Value::as_str);
            let what = out
                .get("WhatId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            // "If WhoId refers to a lead, WhatId must be empty" (OBJ sforce_api_objects_task).
            if who.is_some_and(|w| w.starts_with("00Q")) && what.is_some() {
                return Err((400, err("FIELD_INTEGRITY_EXCEPTION", "Related To ID: id value of incorrect type: a Lead cannot have a Related To record", &["WhatId"])));
            }
        }
        if creating {
            // Required fields with no default (Status has one: "Not Started").
            for (name, field) in self.fields_of(object).unwrap_or_default() {
                let missing = out.get(&name).is_none_or(Value::is_null);
                if let (true, Some(d)) = (missing, field.default) {
                    out.insert(name, json!(d));
                }
            }
        }
        Ok(out)
    }

    /// One value against its field's type: text length, restricted picklists, numbers, dates,
    /// and references (the right kind of record, existing and not deleted).
    fn check_value(
        &self,
        object: &str,
        k: &str,
        field: &Field,
        v: &mut Value,
    ) -> Result<(), (u16, Value)> {
        let parse_err = |what: &str| {
            (
                400,
                err(
                    "JSON_PARSER_ERROR",
                    &format!("Cannot deserialize value of type {what} from {v} for field {k}"),
                    &[],
                ),
            )
        };
        match field.ty {
            FieldType::String | FieldType::Textarea | FieldType::Phone => {
                let Some(s) = v.as_str() else {
                    return Err(parse_err("string"));
                };
                if field.length > 0 && s.chars().count() > field.length {
                    return Err((
                        400,
                        err(
                            "STRING_TOO_LONG",
                            &format!(
                                "{k}: data value too large: {} (max length={})",
                                s.chars().take(20).collect::<String>(),
                                field.length
                            ),
                            &[k],
                        ),
                    ));
                }
            }
            FieldType::Picklist
                if !field.picklist.is_empty()
                    && !v.as_str().is_some_and(|s| field.picklist.contains(&s)) =>
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
            FieldType::Int if !v.is_i64() => return Err(parse_err("int")),
            FieldType::Boolean if !v.is_boolean() => return Err(parse_err("boolean")),
            FieldType::Datetime if v.as_str().is_none_or(|s| parse_sf_datetime(s).is_none()) => {
                return Err(parse_err("datetime"))
            }
            FieldType::Date
                if v.as_str()
                    .is_none_or(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err()) =>
            {
                return Err(parse_err("date"))
            }
            FieldType::Reference => {
                let id = v.as_str().unwrap_or_default().to_owned();
                let target = object_of_id(&id).filter(|_| id.len() == 15 || id.len() == 18);
                let allowed = match (object, k) {
                    // Task and Event: WhoId is a Contact or Lead, WhatId a non-person record
                    // (OBJ sforce_api_objects_task).
                    ("Task" | "Event", "WhoId") => matches!(target, Some("Contact" | "Lead")),
                    ("Task" | "Event", "WhatId") => {
                        matches!(target, Some("Account" | "Opportunity" | "Case"))
                    }
                    (_, "OwnerId") => target == Some("User"),
                    _ => target.is_some(),
                };
                if !allowed {
                    let label = match k {
                        "WhoId" => "Name ID",
                        "WhatId" => "Related To ID",
                        "OwnerId" => "Assigned To ID",
                        _ => k,
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
                if let Some(t @ ("Contact" | "Lead" | "Account" | "User")) = target {
                    let stored = self
                        .resolve_id(t, &id)
                        .filter(|s| {
                            self.get_row(t, s)
                                .is_some_and(|r| r.get("IsDeleted") != Some(&json!(true)))
                        })
                        .ok_or_else(|| {
                            (400, err("ENTITY_IS_DELETED", "entity is deleted", &[k]))
                        })?;
                    *v = json!(stored);
                }
            }
            _ => {}
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
        let kind = if id.is_some() {
            WriteKind::Update
        } else {
            WriteKind::Insert
        };
        self.writes
            .push((object.to_owned(), kind, body.keys().cloned().collect()));
        let mut fields = body.clone();
        if id.is_none() && object != "User" {
            fields
                .entry("OwnerId")
                .and_modify(|v| {
                    if v.is_null() {
                        *v = json!(owner)
                    }
                })
                .or_insert_with(|| json!(owner));
        }
        if object == "Task" {
            // IsClosed follows Status (OBJ: "Indicates whether the task has been completed").
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
        let body = match self.validate(object, body, true) {
            Ok(b) => b,
            Err((s, e)) => return resp(s, e),
        };
        if let Err(e) = self.check_unique(object, &body, None) {
            return resp(400, e);
        }
        let id = self.write_row(object, None, &body, user);
        resp(201, json!({"id": id, "success": true, "errors": []}))
    }

    /// A Unique field (here every `…_Id__c`) refuses a value another live record holds:
    /// `DUPLICATE_VALUE` naming that record (REST errorcodes).
    fn check_unique(
        &self,
        object: &str,
        body: &Map<String, Value>,
        except: Option<&str>,
    ) -> Result<(), Value> {
        for (k, v) in body {
            let Some(val) = v.as_str() else { continue };
            if !k.ends_with("_Id__c") {
                continue;
            }
            if let Some(other) = self
                .find_by(object, k, val)
                .into_iter()
                .find(|i| Some(i.as_str()) != except)
            {
                return Err(err(
                    "DUPLICATE_VALUE",
                    &format!(
                        "duplicate value found: {k} duplicates value on record with id: {other}"
                    ),
                    &[k],
                ));
            }
        }
        Ok(())
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
        let id = match self.live_row(object, id) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let body = match self.validate(object, body, false) {
            Ok(b) => b,
            Err((s, e)) => return resp(s, e),
        };
        if let Err(e) = self.check_unique(object, &body, Some(&id)) {
            return resp(400, e);
        }
        self.write_row(object, Some(&id), &body, "");
        no_content()
    }

    fn delete(&mut self, object: &str, id: &str) -> Response {
        match self.live_row(object, id) {
            Ok(id) if object == "User" => {
                let _ = id;
                // Users cannot be deleted, only deactivated (OBJ sforce_api_objects_user).
                resp(
                    400,
                    err("INVALID_CROSS_REFERENCE_KEY", "cannot delete a user", &[]),
                )
            }
            Ok(id) => {
                self.admin_delete(object, &id);
                no_content()
            }
            Err(r) => r,
        }
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

    /// `PATCH …/sobjects/{object}/{field}/{value}` (REST dome_upsert): no match → insert (201,
    /// `created: true`); one match → update (200, `created: false`), validated as an update
    /// (so a create-only field is refused); several → 300.
    fn upsert(
        &mut self,
        object: &str,
        field: &str,
        value: &str,
        body: Option<&Value>,
        user: &str,
    ) -> Response {
        if field == "Id" {
            return self.update(object, value, body);
        }
        let ext: Option<String> = self
            .field(object, field)
            .filter(|(n, _)| n.ends_with("_Id__c"))
            .map(|(n, _)| n);
        let Some(field) = ext else {
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
        };
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
        if body.keys().any(|k| k.eq_ignore_ascii_case(&field)) {
            // The value is in the URL; naming the field in the body too is refused.
            return resp(
                400,
                err(
                    "INVALID_FIELD",
                    &format!("{field} is specified in the URL and in the body"),
                    &[],
                ),
            );
        }
        let found = self.find_by(object, &field, value);
        match found.as_slice() {
            [] => {
                let mut b = match self.validate(object, body, true) {
                    Ok(b) => b,
                    Err((s, e)) => return resp(s, e),
                };
                b.insert(field, json!(value));
                let id = self.write_row(object, None, &b, user);
                resp(
                    201,
                    json!({"id": id, "success": true, "errors": [], "created": true}),
                )
            }
            [id] => {
                let id = id.clone();
                let b = match self.validate(object, body, false) {
                    Ok(b) => b,
                    Err((s, e)) => return resp(s, e),
                };
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
            // Status is required but has a default (FLD: "Defaulted on create").
            ("missing status", json!({"Subject": "Call"}), 201, ""),
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

    fn get(o: &mut Org, path: &str, q: &[(&str, &str)]) -> Response {
        let mut r = req("GET", path, Value::Null);
        r.body = None;
        r.query = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        o.dispatch(&r)
    }

    fn code(r: &Response) -> String {
        r.body.as_ref().unwrap()[0]["errorCode"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn user_has_no_is_deleted() {
        let mut o = org();
        let r = get(&mut o, "/query", &[("q", "SELECT Id, IsDeleted FROM User")]);
        assert_eq!((r.status, code(&r)), (400, "INVALID_FIELD".into()));
        assert!(r.body.unwrap()[0]["message"]
            .as_str()
            .unwrap()
            .contains("No such column 'IsDeleted' on entity 'User'"));
        let r = get(
            &mut o,
            "/queryAll",
            &[("q", "SELECT Id, IsDeleted FROM User")],
        );
        assert_eq!(r.status, 400);
        assert_eq!(
            get(&mut o, "/query", &[("q", "SELECT Id, IsActive FROM User")]).status,
            200
        );
        let d = get(&mut o, "/sobjects/User/describe", &[]).body.unwrap();
        assert!(d["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"] != "IsDeleted"));
        // Users are deactivated, never deleted.
        let user = first_id(&o, "User", |_| true);
        let mut r = req("DELETE", &format!("/sobjects/User/{user}"), Value::Null);
        r.body = None;
        assert_eq!(o.dispatch(&r).status, 400);
    }

    #[test]
    fn create_only_fields_are_refused_on_update_and_on_a_matching_upsert() {
        let mut o = org();
        let full = json!({"Subject": "Call", "Status": "Completed", "TaskSubtype": "Call"});
        // An upsert that inserts may name TaskSubtype.
        let r = o.dispatch(&req("PATCH", "/sobjects/Task/Call_Id__c/c-1", full.clone()));
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body.unwrap()["id"].as_str().unwrap().to_owned();
        // The same upsert again matches: an update, and TaskSubtype is create-only.
        let r = o.dispatch(&req("PATCH", "/sobjects/Task/Call_Id__c/c-1", full.clone()));
        assert_eq!(
            (r.status, code(&r)),
            (400, "INVALID_FIELD_FOR_INSERT_UPDATE".into())
        );
        assert_eq!(r.body.unwrap()[0]["fields"], json!(["TaskSubtype"]));
        let r = o.dispatch(&req(
            "PATCH",
            &format!("/sobjects/Task/{id}"),
            json!({"TaskSubtype": "Call"}),
        ));
        assert_eq!(code(&r), "INVALID_FIELD_FOR_INSERT_UPDATE");
        // Collections say the same per record.
        let r = o.dispatch(&req(
            "PATCH",
            "/composite/sobjects/Task/Call_Id__c",
            json!({"records": [{"attributes": {"type": "Task"}, "Call_Id__c": "c-1", "TaskSubtype": "Call"}]}),
        ));
        assert_eq!(
            r.body.unwrap()[0]["errors"][0]["statusCode"],
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        );
        // Without it, the matching upsert is an update.
        let r = o.dispatch(&req(
            "PATCH",
            "/sobjects/Task/Call_Id__c/c-1",
            json!({"Description": "memo"}),
        ));
        assert_eq!(r.status, 200);
        assert_eq!(o.get_row("Task", &id).unwrap()["TaskSubtype"], "Call");
        // A unique external id refuses a second record with the same value.
        let r = o.dispatch(&req(
            "POST",
            "/sobjects/Task",
            json!({"Status": "Completed", "Call_Id__c": "c-1"}),
        ));
        assert_eq!(code(&r), "DUPLICATE_VALUE");
    }

    #[test]
    fn soql_names_are_case_insensitive_and_answers_canonical() {
        let mut o = org();
        let r = get(
            &mut o,
            "/query",
            &[(
                "q",
                "select id, NAME, account.name from contact where phone != null limit 3",
            )],
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        let rec = &r.body.unwrap()["records"][0];
        assert!(
            rec.get("Id").is_some() && rec.get("Name").is_some(),
            "{rec}"
        );
        assert!(rec.get("Account").is_some() && rec.get("account").is_none());
        let r = get(
            &mut o,
            "/query",
            &[("q", "SELECT Id, Phone, phone FROM Contact")],
        );
        assert_eq!((r.status, code(&r)), (400, "MALFORMED_QUERY".into()));
        assert_eq!(get(&mut o, "/sobjects/contact/describe", &[]).status, 200);
        assert_eq!(get(&mut o, "/sobjects/Nope/describe", &[]).status, 404);
    }

    #[test]
    fn ids_of_15_and_18_characters_name_the_same_record() {
        let mut o = org();
        let contact = first_id(&o, "Contact", |c| c["IsPersonAccount"] != json!(true));
        let short = &contact[..15];
        let r = get(&mut o, &format!("/sobjects/Contact/{short}"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.unwrap()["Id"], json!(contact));
        let q = format!("SELECT Id FROM Contact WHERE Id = '{short}'");
        assert_eq!(
            get(&mut o, "/query", &[("q", &q)]).body.unwrap()["totalSize"],
            1
        );
        let q = format!("SELECT Id FROM Contact WHERE Id IN ('{contact}', '003000000000000')");
        assert_eq!(
            get(&mut o, "/query", &[("q", &q)]).body.unwrap()["totalSize"],
            1
        );
        let r = o.dispatch(&req(
            "POST",
            "/sobjects/Task",
            json!({"Status": "Completed", "WhoId": short}),
        ));
        let task = r.body.unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(o.get_row("Task", &task).unwrap()["WhoId"], json!(contact));
    }

    #[test]
    fn a_deleted_record_answers_entity_is_deleted() {
        let mut o = org();
        let r = o.dispatch(&req(
            "POST",
            "/sobjects/Task",
            json!({"Status": "Completed"}),
        ));
        let id = r.body.unwrap()["id"].as_str().unwrap().to_owned();
        let mut del = req("DELETE", &format!("/sobjects/Task/{id}"), Value::Null);
        del.body = None;
        assert_eq!(o.dispatch(&del).status, 204);
        let r = get(&mut o, &format!("/sobjects/Task/{id}"), &[]);
        assert_eq!((r.status, code(&r)), (404, "ENTITY_IS_DELETED".into()));
        let r = o.dispatch(&req(
            "PATCH",
            &format!("/sobjects/Task/{id}"),
            json!({"Subject": "x"}),
        ));
        assert_eq!((r.status, code(&r)), (404, "ENTITY_IS_DELETED".into()));
        let r = o.dispatch(&del);
        assert_eq!(code(&r), "ENTITY_IS_DELETED");
        let r = get(&mut o, "/sobjects/Task/00T000000000000AAA", &[]);
        assert_eq!((r.status, code(&r)), (404, "NOT_FOUND".into()));
    }

    #[test]
    fn api_versions() {
        let o = org();
        assert!(o.check_version("62.0").is_ok());
        assert!(o.check_version("31.0").is_ok());
        assert_eq!(o.check_version("63.0").unwrap_err().status, 404);
        assert_eq!(o.check_version("99.0").unwrap_err().status, 404);
        assert_eq!(o.check_version("20.0").unwrap_err().status, 410);
        assert_eq!(o.check_version("62").unwrap_err().status, 404);
        assert_eq!(o.check_version("latest").unwrap_err().status, 404);
    }

    #[test]
    fn a_task_without_status_gets_the_picklist_default() {
        let mut o = org();
        let r = o.dispatch(&req("POST", "/sobjects/Task", json!({"Subject": "Call"})));
        assert_eq!(r.status, 201);
        let id = r.body.unwrap()["id"].as_str().unwrap().to_owned();
        let row = o.get_row("Task", &id).unwrap();
        assert_eq!(row["Status"], "Not Started");
        assert_eq!(row["IsClosed"], false);
        assert_eq!(row["Priority"], "Normal");
    }

    #[test]
    fn a_record_get_returns_every_field() {
        let mut o = org();
        let lead = first_id(&o, "Lead", |_| true);
        let r = get(&mut o, &format!("/sobjects/Lead/{lead}"), &[])
            .body
            .unwrap();
        for f in [
            "Id",
            "Name",
            "Company",
            "Phone",
            "MobilePhone",
            "Fax",
            "IsConverted",
            "OwnerId",
            "CreatedDate",
            "SystemModstamp",
            "IsDeleted",
        ] {
            assert!(r.get(f).is_some(), "{f} missing: {r}");
        }
        let r = get(
            &mut o,
            &format!("/sobjects/Lead/{lead}"),
            &[("fields", "company,Phone")],
        )
        .body
        .unwrap();
        assert!(r.get("Company").is_some() && r.get("Name").is_none(), "{r}");
        let r = get(
            &mut o,
            &format!("/sobjects/Lead/{lead}"),
            &[("fields", "Colour__c")],
        );
        assert_eq!(code(&r), "INVALID_FIELD");
    }

    #[test]
    fn count_literals_and_types_as_salesforce_parses_them() {
        let mut o = org();
        let contacts = o.count("Contact");
        let r = get(&mut o, "/query", &[("q", "SELECT COUNT() FROM Contact")])
            .body
            .unwrap();
        assert_eq!(
            (r["totalSize"].as_u64(), r["records"].clone()),
            (Some(contacts as u64), json!([]))
        );
        let table: &[(&str, u16, &str)] = &[
            (
                "SELECT Id FROM Contact WHERE CreatedDate = LAST_N_DAYS:7",
                200,
                "",
            ),
            ("SELECT Id FROM Contact WHERE CreatedDate < TODAY", 200, ""),
            (
                "SELECT Id FROM Task WHERE ActivityDate = YESTERDAY",
                200,
                "",
            ),
            (
                "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-05-01T12:00:00Z",
                200,
                "",
            ),
            (
                "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-05-01T21:00:00+09:00",
                200,
                "",
            ),
            (
                "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-05-01T12:00:00.000+0000",
                400,
                "MALFORMED_QUERY",
            ),
            (
                "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-05-01T12:00:00.000Z",
                400,
                "MALFORMED_QUERY",
            ),
            (
                "SELECT Id FROM Contact WHERE SystemModstamp >= '2024-05-01T12:00:00Z'",
                400,
                "INVALID_FIELD",
            ),
            (
                "SELECT Id FROM Task WHERE ActivityDate = 2024-05-01T12:00:00Z",
                400,
                "INVALID_FIELD",
            ),
            (
                "SELECT Id FROM Contact WHERE CreatedDate = LAST_FORTNIGHT",
                400,
                "MALFORMED_QUERY",
            ),
            (
                "SELECT Id FROM Lead WHERE IsConverted = 'false'",
                400,
                "INVALID_FIELD",
            ),
            (
                "SELECT Id FROM Contact WHERE Name = 5",
                400,
                "INVALID_FIELD",
            ),
            (
                "SELECT Id FROM Task WHERE CallDurationInSeconds > '5'",
                400,
                "INVALID_FIELD",
            ),
            (
                "SELECT COUNT() FROM Contact ORDER BY Id",
                400,
                "MALFORMED_QUERY",
            ),
            (
                "SELECT Id FROM Contact WHERE IsDeleted LIKE 'x%'",
                400,
                "INVALID_FIELD",
            ),
            ("SELECT Id FROM Nope", 400, "INVALID_TYPE"),
        ];
        for (q, status, c) in table {
            let r = get(&mut o, "/query", &[("q", q)]);
            assert_eq!(r.status, *status, "{q}: {:?}", r.body);
            if !c.is_empty() {
                assert_eq!(code(&r), *c, "{q}");
            }
        }
    }

    #[test]
    fn jwt_bearer_checks_signature_and_audience() {
        let key = include_str!("../../tests/fixtures/jwt-test-key.pem");
        let mut o = Org::new(
            SimOptions {
                records: 10,
                jwt_public_key_pem: Some(
                    include_str!("../../tests/fixtures/jwt-test-key.pub.pem").into(),
                ),
                ..Default::default()
            },
            "http://127.0.0.1:1",
        );
        let sign = |claims: Value, pem: &str| {
            let k = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                &claims,
                &k,
            )
            .unwrap()
        };
        let exp = o.now().timestamp() + 120;
        let claims = |aud: &str| json!({"iss": "callsync-sim-client", "sub": "agent@sim.example.com", "aud": aud, "exp": exp});
        let grant = |o: &mut Org, assertion: String| {
            let form: HashMap<String, String> = [
                (
                    "grant_type".to_string(),
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                ),
                ("assertion".to_string(), assertion),
            ]
            .into();
            o.token_endpoint(&form)
        };
        let (s, v) = grant(&mut o, sign(claims("https://login.salesforce.com"), key));
        assert_eq!(s, 200, "{v}");
        let (s, v) = grant(&mut o, sign(claims("http://127.0.0.1:1"), key));
        assert_eq!(
            (s, v["error_description"].as_str()),
            (400, Some("audience is invalid"))
        );
        // Signed by another key.
        let other = include_str!("../../tests/fixtures/jwt-other-key.pem");
        let (s, v) = grant(&mut o, sign(claims("https://login.salesforce.com"), other));
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{v}"
        );
        // Tampered claims under a valid signature.
        let good = sign(claims("https://login.salesforce.com"), key);
        let parts: Vec<&str> = good.split('.').collect();
        use base64::Engine as _;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&json!({"iss": "callsync-sim-client", "sub": "other@x", "aud": "https://login.salesforce.com", "exp": exp})).unwrap());
        let (s, _) = grant(&mut o, format!("{}.{forged}.{}", parts[0], parts[2]));
        assert_eq!(s, 400);
        // No certificate on the app: no JWT sign-in.
        let mut bare = org();
        let (s, v) = grant(&mut bare, good);
        assert_eq!((s, v["error"].as_str()), (400, Some("invalid_client")));
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
