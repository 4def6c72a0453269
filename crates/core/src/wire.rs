//! What Salesforce answers and how callsync reads it, with no I/O: error bodies (REST's
//! `errorCode`, Collections' `statusCode`, OAuth's `error`), query pages, Bulk API CSV, token
//! responses, describes (which fields are create-only), `Sforce-Limit-Info`, and the typed
//! error that says whether a retry can help. The HTTP client is `callsync-salesforce`'s.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A secret string: never printed, never logged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// Salesforce's token response (all grants). There is no `expires_in`.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: Secret,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    pub instance_url: String,
    /// `https://login…/id/<org>/<user>`.
    pub id: String,
    #[serde(default)]
    pub issued_at: Option<String>,
}

impl TokenResponse {
    /// (org id, user id) from the identity URL's last two segments.
    pub fn org_and_user(&self) -> (String, String) {
        let mut parts = self.id.trim_end_matches('/').rsplit('/');
        let user = parts.next().unwrap_or_default().to_owned();
        let org = parts.next().unwrap_or_default().to_owned();
        (org, user)
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum SfError {
    /// No answer: connection refused, reset, timeout, DNS. Retry later.
    #[error("cannot reach Salesforce: {0}")]
    Network(String),
    /// The proxy requests must go through does not answer. Retry later.
    #[error("cannot reach the proxy {proxy} (set in {from}): is the proxy running, and is {from} right? Nothing is lost: Tasks stay queued and are sent when it answers again ({detail})")]
    ProxyUnreachable {
        proxy: String,
        from: String,
        detail: String,
    },
    /// The refresh token is no longer valid (revoked, expired, app blocked): sign in again.
    /// `code` is Salesforce's OAuth error (`invalid_grant`, `OAUTH_APP_BLOCKED`, …) when it
    /// gave one: the doctor turns it into a fix.
    #[error("sign-in needed: {}{message}", .code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
    SignInNeeded {
        code: Option<String>,
        message: String,
    },
    /// Not signed in at all.
    #[error("not signed in: run `callsync connect`")]
    NotConnected,
    /// An error Salesforce returned.
    #[error("Salesforce answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        fields: Vec<String>,
    },
    #[error("unexpected answer from Salesforce: {0}")]
    Protocol(String),
    #[error("cannot save the sign-in: {0}")]
    Store(String),
}

impl SfError {
    /// Whether trying again later can succeed without anyone fixing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            SfError::Network(_) | SfError::ProxyUnreachable { .. } => true,
            SfError::Api { status, code, .. } => {
                matches!(
                    code.as_str(),
                    "UNABLE_TO_LOCK_ROW" | "REQUEST_LIMIT_EXCEEDED" | "SERVER_UNAVAILABLE"
                ) || *status >= 500
            }
            SfError::Protocol(_) => true,
            SfError::SignInNeeded { .. } | SfError::NotConnected | SfError::Store(_) => false,
        }
    }

    /// The org's API limit is exhausted: back off for long.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, SfError::Api { code, .. } if code == "REQUEST_LIMIT_EXCEEDED")
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            SfError::Api { code, .. } => Some(code),
            SfError::SignInNeeded { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Sign-in needed for a reason of our own (no OAuth error code from Salesforce).
    pub fn sign_in(message: impl Into<String>) -> Self {
        SfError::SignInNeeded {
            code: None,
            message: message.into(),
        }
    }
}

/// Parses an error body: REST's `[{"errorCode", "message", "fields"}]` or OAuth's
/// `{"error", "error_description"}`; anything else (HTML from a gateway) by status.
pub fn api_error(status: u16, body: &str) -> SfError {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(e) = v.as_array().and_then(|a| a.first()) {
            return error_entry(status, e);
        }
        if let Some(code) = v["error"].as_str() {
            return SfError::Api {
                status,
                code: code.to_owned(),
                message: v["error_description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                fields: Vec::new(),
            };
        }
    }
    let code = match status {
        503 => "SERVER_UNAVAILABLE",
        502 => "BAD_GATEWAY",
        500 => "SERVER_ERROR",
        _ => "UNKNOWN",
    };
    SfError::Api {
        status,
        code: code.into(),
        message: body.chars().take(200).collect(),
        fields: Vec::new(),
    }
}

/// One entry of an error list: REST's `errorCode` or sObject Collections' `statusCode`.
pub fn error_entry(status: u16, e: &Value) -> SfError {
    SfError::Api {
        status,
        code: e["errorCode"]
            .as_str()
            .or(e["statusCode"].as_str())
            .unwrap_or("UNKNOWN")
            .to_owned(),
        message: e["message"].as_str().unwrap_or_default().to_owned(),
        fields: e["fields"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// What a network failure means, for people: certificate and proxy problems in plain words
/// (followed by the technical detail).
pub fn plain_words(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    // Windows' chain engine speaks in HRESULTs (as rustls-platform-verifier passes them on):
    // CERT_E_UNTRUSTEDROOT 0x800B0109, CERT_E_CHAINING 0x800B010A; and for revocation,
    // CERT_E_REVOCATION_FAILURE 0x800B010E, CRYPT_E_NO_REVOCATION_CHECK 0x80092012,
    // CRYPT_E_REVOCATION_OFFLINE 0x80092013 (Wine reports an untrusted private CA this way).
    let os = |code: u32| d.contains(&format!("os error {}", code as i32));
    let what = if d.contains("unknownissuer")
        || d.contains("unknown issuer")
        || d.contains("unknown ca")
        || os(0x800B_0109)
        || os(0x800B_010A)
    {
        "the server's certificate is signed by an authority this PC does not trust: your company's TLS inspection CA may be missing (install it in the system trust store, or set tls.extra_ca_file to its PEM file)"
    } else if os(0x800B_010E) || os(0x8009_2012) || os(0x8009_2013) {
        "the server's certificate could not be checked for revocation (its revocation servers do not answer, or it comes from a TLS inspection proxy): your company's TLS inspection CA may be missing (install it in the system trust store, or set tls.extra_ca_file to its PEM file)"
    } else if d.contains("expired") || d.contains("notvalidyet") {
        "the server's certificate has expired or is not yet valid (or this PC's clock is wrong)"
    } else if d.contains("notvalidforname") || d.contains("not valid for name") {
        "the server's certificate is for another host name (check salesforce.login_url, or a proxy is intercepting TLS)"
    } else if d.contains("407") || d.contains("proxy authentication") {
        "the proxy refused: authentication required (check proxy.user and the password stored with `callsync proxy password`)"
    } else if d.contains("proxy") && (d.contains("connection refused") || d.contains("tunnel")) {
        "cannot reach the proxy (is proxy.url right and the proxy running?)"
    } else if d.contains("dns error")
        || d.contains("failed to lookup")
        || d.contains("name or service not known")
    {
        "the host name cannot be resolved (DNS): check the network or the proxy settings"
    } else if d.contains("connection refused") {
        "the connection was refused"
    } else if d.contains("timed out") || d.contains("timeout") {
        "no answer in time"
    } else {
        return detail.to_owned();
    };
    format!("{what} ({detail})")
}

/// What an object's describe says about writing it: the fields Salesforce accepts on create
/// only (`createable` and not `updateable`, e.g. Task's `TaskSubtype`). A write that may update
/// an existing record (an update, an upsert that may match) must not name them, or Salesforce
/// refuses it with `INVALID_FIELD_FOR_INSERT_UPDATE`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteRules {
    create_only: std::collections::BTreeSet<String>,
}

impl WriteRules {
    pub fn from_describe(d: &Value) -> WriteRules {
        let create_only = d["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                f["createable"] == Value::Bool(true) && f["updateable"] == Value::Bool(false)
            })
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect();
        WriteRules { create_only }
    }

    /// The standard create-only fields of the objects callsync writes (OBJ
    /// sforce_api_objects_task / _event: TaskSubtype and EventSubtype are "Create", not
    /// "Update").
    pub fn standard(object: &str) -> WriteRules {
        let names: &[&str] = match object {
            "Task" => &["TaskSubtype"],
            "Event" => &["EventSubtype"],
            _ => &[],
        };
        WriteRules {
            create_only: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn is_create_only(&self, field: &str) -> bool {
        self.create_only.contains(field)
    }

    /// Whether an error message (`Unable to create/update fields: TaskSubtype. …`) names one
    /// of the create-only fields.
    pub fn named_in(&self, message: &str) -> bool {
        let Some(list) = message.split_once("fields:").map(|(_, l)| l) else {
            return false;
        };
        let list = list.split_once(". ").map(|(l, _)| l).unwrap_or(list);
        list.split(',')
            .map(|f| f.trim().trim_end_matches('.'))
            .any(|f| self.is_create_only(f))
    }

    /// The fields a write that may update can carry.
    pub fn for_update(
        &self,
        fields: &std::collections::BTreeMap<String, Value>,
    ) -> std::collections::BTreeMap<String, Value> {
        fields
            .iter()
            .filter(|(k, _)| !self.is_create_only(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A datetime as a SOQL literal: `2024-05-01T12:00:00Z` (SOQL accepts only `Z` or `±hh:mm`,
/// no fractions: the `…000+0000` form of API answers is refused there).
pub fn soql_datetime(d: chrono::DateTime<chrono::Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A text value inside a quoted SOQL literal.
pub fn soql_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// `api-usage=10018/100000; api-bursts=1/750` → (10018, 100000).
pub fn parse_limit_info(v: &str) -> Option<(u64, u64)> {
    let usage = v
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

/// One page of Bulk API results.
#[derive(Clone, Debug)]
pub struct BulkPage {
    pub records: Vec<Value>,
    pub next_locator: Option<String>,
}

/// Bulk CSV → records shaped as the REST API returns them: `Account.Name` columns become nested
/// objects, empty cells null, `Is…` columns booleans.
pub fn csv_records(text: &str, object: &str) -> Result<Vec<Value>, SfError> {
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = r
        .headers()
        .map_err(|e| SfError::Protocol(format!("bulk CSV: {e}")))?
        .clone();
    let mut out = Vec::new();
    for row in r.records() {
        let row = row.map_err(|e| SfError::Protocol(format!("bulk CSV: {e}")))?;
        let mut m = serde_json::Map::new();
        m.insert("attributes".into(), serde_json::json!({"type": object}));
        for (h, cell) in headers.iter().zip(row.iter()) {
            let leaf = h.rsplit('.').next().unwrap_or(h);
            let v = if cell.is_empty() {
                Value::Null
            } else if leaf.starts_with("Is") && (cell == "true" || cell == "false") {
                Value::Bool(cell == "true")
            } else {
                Value::String(cell.to_owned())
            };
            match h.split_once('.') {
                Some((rel, field)) => {
                    let e = m.entry(rel.to_owned()).or_insert(Value::Null);
                    if !v.is_null() {
                        if e.is_null() {
                            *e = serde_json::json!({});
                        }
                        // A column named both `X` and `X.Y` (no Salesforce answer has that)
                        // keeps the first.
                        if let Some(obj) = e.as_object_mut() {
                            obj.insert(field.to_owned(), v);
                        }
                    }
                }
                None => {
                    m.insert(h.to_owned(), v);
                }
            }
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

/// One page of query results.
#[derive(Clone, Debug)]
pub struct QueryPage {
    pub total_size: u64,
    pub records: Vec<Value>,
    pub next_records_url: Option<String>,
}

impl QueryPage {
    pub fn from_value(v: Value) -> Result<QueryPage, SfError> {
        let records = v["records"]
            .as_array()
            .cloned()
            .ok_or_else(|| SfError::Protocol("query result without records".into()))?;
        Ok(QueryPage {
            total_size: v["totalSize"].as_u64().unwrap_or(records.len() as u64),
            next_records_url: v["nextRecordsUrl"].as_str().map(str::to_owned),
            records,
        })
    }
}

/// A field as describe reports it.
#[derive(Clone, Debug, Default)]
pub struct FieldInfo {
    pub createable: bool,
    pub updateable: bool,
    pub external_id: bool,
    pub ty: String,
    pub picklist: Vec<String>,
    pub restricted: bool,
}

/// An object as describe reports it (None: the object cannot be seen at all).
#[derive(Clone, Debug, Default)]
pub struct ObjectInfo {
    pub createable: bool,
    pub queryable: bool,
    pub fields: std::collections::BTreeMap<String, FieldInfo>,
}

impl ObjectInfo {
    pub fn from_describe(v: &serde_json::Value) -> ObjectInfo {
        let flag = |v: &serde_json::Value, k: &str| v[k].as_bool().unwrap_or(false);
        ObjectInfo {
            createable: flag(v, "createable"),
            queryable: flag(v, "queryable"),
            fields: v["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| {
                    Some((
                        f["name"].as_str()?.to_owned(),
                        FieldInfo {
                            createable: flag(f, "createable"),
                            updateable: flag(f, "updateable"),
                            external_id: flag(f, "externalId"),
                            ty: f["type"].as_str().unwrap_or_default().to_owned(),
                            picklist: f["picklistValues"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|p| p["value"].as_str().map(str::to_owned))
                                .collect(),
                            restricted: flag(f, "restrictedPicklist"),
                        },
                    ))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info_and_errors() {
        assert_eq!(
            parse_limit_info("api-usage=10018/100000"),
            Some((10018, 100000))
        );
        assert_eq!(
            parse_limit_info("api-usage=1/750; api-bursts=1/750"),
            Some((1, 750))
        );
        assert_eq!(parse_limit_info("nonsense"), None);
        let table: &[(u16, &str, &str, bool)] = &[
            (
                401,
                r#"[{"errorCode":"INVALID_SESSION_ID","message":"Session expired or invalid"}]"#,
                "INVALID_SESSION_ID",
                false,
            ),
            (
                403,
                r#"[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"TotalRequests Limit exceeded."}]"#,
                "REQUEST_LIMIT_EXCEEDED",
                true,
            ),
            (
                400,
                r#"[{"errorCode":"UNABLE_TO_LOCK_ROW","message":"unable to obtain exclusive access"}]"#,
                "UNABLE_TO_LOCK_ROW",
                true,
            ),
            (
                400,
                r#"[{"errorCode":"INVALID_FIELD","message":"No such column"}]"#,
                "INVALID_FIELD",
                false,
            ),
            (
                400,
                r#"[{"statusCode":"REQUIRED_FIELD_MISSING","message":"Required fields are missing: [Status]"}]"#,
                "REQUIRED_FIELD_MISSING",
                false,
            ),
            (
                503,
                "<html>Service Unavailable</html>",
                "SERVER_UNAVAILABLE",
                true,
            ),
            (502, "", "BAD_GATEWAY", true),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"expired access/refresh token"}"#,
                "invalid_grant",
                false,
            ),
        ];
        for (status, body, code, retry) in table {
            let e = api_error(*status, body);
            assert_eq!(e.code(), Some(*code), "{body}");
            assert_eq!(e.is_retryable(), *retry, "{body}");
        }
        assert!(SfError::Network("reset".into()).is_retryable());
        assert!(!SfError::sign_in("x").is_retryable());
        let refused = SfError::SignInNeeded {
            code: Some("invalid_grant".into()),
            message: "expired access/refresh token".into(),
        };
        assert_eq!(refused.code(), Some("invalid_grant"));
        assert_eq!(
            refused.to_string(),
            "sign-in needed: invalid_grant: expired access/refresh token"
        );
        assert_eq!(SfError::sign_in("x").to_string(), "sign-in needed: x");
    }

    #[test]
    fn bulk_csv_becomes_rest_shaped_records() {
        let csv = "Id,Name,Account.Name,IsPersonAccount,Phone\n003A,\"Doe, Jane\",Acme,false,03-1234-5678\n003B,Solo,,true,\n";
        let r = csv_records(csv, "Contact").unwrap();
        assert_eq!(r[0]["Name"], "Doe, Jane");
        assert_eq!(r[0]["Account"]["Name"], "Acme");
        assert_eq!(r[0]["IsPersonAccount"], false);
        assert_eq!(r[0]["attributes"]["type"], "Contact");
        assert!(r[1]["Account"].is_null() && r[1]["Phone"].is_null());
        assert_eq!(r[1]["IsPersonAccount"], true);
        // Found by the salesforce_json fuzz target: a column and a relationship of one name
        // panicked (a JSON string indexed as an object).
        let r = csv_records("Account,Account.Name\nx,Acme\n", "Contact").unwrap();
        assert_eq!(r[0]["Account"], "x");
    }

    #[test]
    fn network_failures_in_plain_words() {
        let table = [
            ("error sending request: client error (Connect): invalid peer certificate: UnknownIssuer", "TLS inspection CA may be missing"),
            ("invalid peer certificate: Other(OtherError(\"OS Error -2146762487 (os error -2146762487)\"))", "TLS inspection CA may be missing"),
            ("invalid peer certificate: Other(OtherError(\"OS Error -2146762482 (FormatMessageW() returned error 317) (os error -2146762482)\"))", "could not be checked for revocation"),
            ("invalid peer certificate: Expired", "has expired"),
            ("invalid peer certificate: NotValidForName", "another host name"),
            ("unsuccessful tunnel: 407 Proxy Authentication Required", "proxy refused: authentication"),
            ("client error (Connect): tcp connect error: Connection refused (os error 111)", "connection was refused"),
            ("dns error: failed to lookup address information", "cannot be resolved"),
            ("something else", "something else"),
        ];
        for (detail, want) in table {
            assert!(
                plain_words(detail).contains(want),
                "{detail}: {}",
                plain_words(detail)
            );
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("00Dxx!AQsecret");
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"00Dxx!AQ","instance_url":"https://x","id":"https://login/id/00DORG/005USER"}"#).unwrap();
        assert!(!format!("{t:?}").contains("00Dxx!AQ"));
        assert_eq!(t.org_and_user(), ("00DORG".into(), "005USER".into()));
    }
}
