//! Salesforce records as callsync caches them: only what caller lookup, display and the Task
//! mapping need, converted from the JSON the REST API returns.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::phone::{Normalizer, PhoneKey};

/// A Salesforce record Id (15- or 18-character, case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordId(String);

/// A 15-character Id with its 3-character case-safe suffix (each suffix character encodes which
/// of 5 characters are upper case): the 18-character form the API returns. Both forms name the
/// same record (REST guide, "Working with Record IDs"); an Id copied from a browser's address
/// bar is the 15-character one.
pub fn id18(id15: &str) -> String {
    const MAP: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut out = String::with_capacity(18);
    out.push_str(id15);
    for chunk in id15.as_bytes().chunks(5) {
        let bits = chunk
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_uppercase())
            .fold(0usize, |acc, (i, _)| acc | (1 << i));
        out.push(MAP[bits] as char);
    }
    out
}

impl RecordId {
    /// An Id in either form; a 15-character one becomes the 18-character form the API returns,
    /// so that both compare equal with what the cache holds.
    pub fn parse(s: &str) -> Option<RecordId> {
        let ok = (s.len() == 15 || s.len() == 18) && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok {
            return None;
        }
        Some(RecordId(if s.len() == 15 { id18(s) } else { s.to_owned() }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key prefix (`003` Contact, `001` Account, `00Q` Lead, `005` User).
    pub fn prefix(&self) -> &str {
        &self.0[..3]
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The objects callsync caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectKind {
    Contact,
    Account,
    Lead,
    User,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 4] = [
        ObjectKind::Contact,
        ObjectKind::Account,
        ObjectKind::Lead,
        ObjectKind::User,
    ];

    pub fn api_name(self) -> &'static str {
        match self {
            ObjectKind::Contact => "Contact",
            ObjectKind::Account => "Account",
            ObjectKind::Lead => "Lead",
            ObjectKind::User => "User",
        }
    }

    pub fn from_api_name(s: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.api_name() == s)
    }

    /// Standard phone fields stored for every record (whether or not lookups use them), so
    /// that changing `lookup.fields` needs no resync.
    pub fn standard_phone_fields(self) -> &'static [&'static str] {
        match self {
            ObjectKind::Contact => &[
                "Phone",
                "MobilePhone",
                "HomePhone",
                "OtherPhone",
                "AssistantPhone",
            ],
            ObjectKind::Account => &[
                "Phone",
                "PersonMobilePhone",
                "PersonHomePhone",
                "PersonOtherPhone",
                "PersonAssistantPhone",
            ],
            ObjectKind::Lead => &["Phone", "MobilePhone"],
            ObjectKind::User => &["Phone", "MobilePhone", "Extension"],
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// One phone field of a record: as typed, and as normalized when it was stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPhone {
    pub field: String,
    pub raw: String,
    pub key: Option<PhoneKey>,
    pub extension: Option<String>,
}

impl StoredPhone {
    /// A phone field's value, with its key by `normalizer`'s rules.
    pub fn of(field: &str, raw: &str, normalizer: &Normalizer) -> StoredPhone {
        let (key, extension) = match normalizer.normalize(raw) {
            Ok(n) => (Some(n.key), n.extension),
            Err(_) => (None, None),
        };
        StoredPhone {
            field: field.to_owned(),
            raw: raw.to_owned(),
            key,
            extension,
        }
    }
}

/// A cached Contact, Account (incl. person account), Lead or User.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedRecord {
    pub kind: ObjectKind,
    pub id: RecordId,
    pub name: String,
    /// Contact: its Account. Person account: itself.
    pub account_id: Option<RecordId>,
    /// Contact: `Account.Name`.
    pub account_name: Option<String>,
    /// Lead: `Company`.
    pub company: Option<String>,
    pub is_person_account: bool,
    /// Person account: the hidden Contact that Tasks name in `WhoId`.
    pub person_contact_id: Option<RecordId>,
    pub is_converted: bool,
    /// User: `IsActive`. Other objects: true.
    pub is_active: bool,
    pub username: Option<String>,
    /// `LastModifiedDate`, ms since the epoch: the recency rule between matches.
    pub last_modified: i64,
    /// `SystemModstamp`, ms since the epoch: the sync watermark.
    pub system_modstamp: i64,
    pub phones: Vec<StoredPhone>,
}

impl CachedRecord {
    /// Whether the record answers caller lookups at all. Person contacts are answered by their
    /// person account (one person, one match); converted leads live on as their Contact.
    pub fn is_indexed(&self) -> bool {
        match self.kind {
            ObjectKind::Contact => !self.is_person_account,
            ObjectKind::Lead => !self.is_converted,
            ObjectKind::User => self.is_active,
            ObjectKind::Account => true,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("missing object type (attributes.type)")]
    MissingType,
    #[error("object type {0:?} is not cached (Contact, Account, Lead, User)")]
    UnsupportedType(String),
    #[error("missing or invalid Id")]
    BadId,
    #[error("field {field}: {reason}")]
    BadField { field: String, reason: String },
}

/// Parses Salesforce's datetime form (`2024-05-01T10:00:00.000+0000`) and RFC 3339.
pub fn parse_sf_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Formats a datetime the way Salesforce writes it (`+0000`, milliseconds).
pub fn format_sf_datetime(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Which phone fields to read from a record besides the standard ones (configured custom
/// fields such as `Direct_Line__c`).
pub trait ExtraFields {
    fn extra_fields(&self, kind: ObjectKind) -> &[String];
}

impl ExtraFields for () {
    fn extra_fields(&self, _: ObjectKind) -> &[String] {
        &[]
    }
}

/// Converts one record as the REST API returns it (with `attributes`) into a cached record,
/// normalizing its phone numbers.
pub fn from_sobject(
    value: &Value,
    kind_hint: Option<ObjectKind>,
    normalizer: &Normalizer,
    extra: &dyn ExtraFields,
) -> Result<CachedRecord, RecordError> {
    let obj = value.as_object().ok_or(RecordError::NotAnObject)?;
    let type_name = obj
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str);
    let kind = match (type_name, kind_hint) {
        (Some(t), _) => {
            ObjectKind::from_api_name(t).ok_or_else(|| RecordError::UnsupportedType(t.into()))?
        }
        (None, Some(k)) => k,
        (None, None) => return Err(RecordError::MissingType),
    };
    let id = str_field(obj, "Id")?
        .and_then(RecordId::parse)
        .ok_or(RecordError::BadId)?;
    let name = match str_field(obj, "Name")? {
        Some(n) => n.to_owned(),
        None => [str_field(obj, "FirstName")?, str_field(obj, "LastName")?]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    };
    let is_person_account = bool_field(obj, "IsPersonAccount")?.unwrap_or(false);
    let account_name = obj
        .get("Account")
        .and_then(Value::as_object)
        .and_then(|a| a.get("Name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut account_id = id_field(obj, "AccountId")?;
    if kind == ObjectKind::Account {
        account_id = Some(id.clone());
    }
    let last_modified = datetime_field(obj, "LastModifiedDate")?;
    let system_modstamp = datetime_field(obj, "SystemModstamp")?.or(last_modified);

    let mut phones = Vec::new();
    let standard = kind.standard_phone_fields().iter().copied();
    let extras = extra.extra_fields(kind).iter().map(String::as_str);
    for field in standard.chain(extras) {
        if phones.iter().any(|p: &StoredPhone| p.field == field) {
            continue;
        }
        if let Some(raw) = str_field(obj, field)? {
            if raw.trim().is_empty() {
                continue;
            }
            phones.push(StoredPhone::of(field, raw, normalizer));
        }
    }

    Ok(CachedRecord {
        kind,
        id,
        name,
        account_id,
        account_name,
        company: str_field(obj, "Company")?.map(str::to_owned),
        is_person_account,
        person_contact_id: id_field(obj, "PersonContactId")?,
        is_converted: bool_field(obj, "IsConverted")?.unwrap_or(false),
        is_active: bool_field(obj, "IsActive")?.unwrap_or(true),
        username: str_field(obj, "Username")?.map(str::to_owned),
        last_modified: last_modified.map(|d| d.timestamp_millis()).unwrap_or(0),
        system_modstamp: system_modstamp.map(|d| d.timestamp_millis()).unwrap_or(0),
        phones,
    })
}

fn bad(field: &str, reason: &str) -> RecordError {
    RecordError::BadField {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, RecordError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(field, "expected a string")),
    }
}

fn bool_field(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, RecordError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(field, "expected true or false")),
    }
}

fn id_field(obj: &Map<String, Value>, field: &str) -> Result<Option<RecordId>, RecordError> {
    match str_field(obj, field)? {
        None => Ok(None),
        Some(s) => RecordId::parse(s)
            .map(Some)
            .ok_or_else(|| bad(field, "not a Salesforce Id")),
    }
}

fn datetime_field(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, RecordError> {
    match str_field(obj, field)? {
        None => Ok(None),
        Some(s) => parse_sf_datetime(s)
            .map(Some)
            .ok_or_else(|| bad(field, "not a datetime like 2024-05-01T10:00:00.000+0000")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jp() -> Normalizer {
        Normalizer::from_codes("JP", &[]).unwrap()
    }

    #[test]
    fn contact_with_account_name() {
        let v = json!({
            "attributes": {"type": "Contact", "url": "/services/data/v62.0/sobjects/Contact/003000000000001AAA"},
            "Id": "003000000000001AAA", "Name": "山田 太郎", "AccountId": "001000000000001AAA",
            "Account": {"attributes": {"type": "Account"}, "Name": "株式会社アクメ"},
            "Phone": "+81 3-1234-5678", "MobilePhone": null, "HomePhone": "",
            "LastModifiedDate": "2024-05-01T10:00:00.000+0000", "IsPersonAccount": false
        });
        let r = from_sobject(&v, None, &jp(), &()).unwrap();
        assert_eq!(r.kind, ObjectKind::Contact);
        assert_eq!(r.account_name.as_deref(), Some("株式会社アクメ"));
        assert_eq!(r.phones.len(), 1);
        assert_eq!(
            r.phones[0].key.as_ref().unwrap().to_string(),
            "+81312345678"
        );
        assert_eq!(r.last_modified, 1_714_557_600_000);
        assert!(r.is_indexed());
    }

    #[test]
    fn person_contact_is_not_indexed_and_converted_lead_neither() {
        let v = json!({"attributes": {"type": "Contact"}, "Id": "003000000000002AAA",
            "Name": "A", "IsPersonAccount": true});
        assert!(!from_sobject(&v, None, &jp(), &()).unwrap().is_indexed());
        let v = json!({"attributes": {"type": "Lead"}, "Id": "00Q000000000002AAA",
            "Name": "A", "IsConverted": true});
        assert!(!from_sobject(&v, None, &jp(), &()).unwrap().is_indexed());
    }

    #[test]
    fn bad_records_say_why() {
        let cases = [
            (json!([1]), RecordError::NotAnObject),
            (
                json!({"Id": "003000000000002AAA"}),
                RecordError::MissingType,
            ),
            (
                json!({"attributes": {"type": "Case"}, "Id": "500000000000002AAA"}),
                RecordError::UnsupportedType("Case".into()),
            ),
            (
                json!({"attributes": {"type": "Lead"}, "Id": "x"}),
                RecordError::BadId,
            ),
            (
                json!({"attributes": {"type": "Lead"}, "Id": "00Q000000000002AAA", "Phone": 3}),
                bad("Phone", "expected a string"),
            ),
            (
                json!({"attributes": {"type": "Lead"}, "Id": "00Q000000000002AAA",
                       "LastModifiedDate": "yesterday"}),
                bad(
                    "LastModifiedDate",
                    "not a datetime like 2024-05-01T10:00:00.000+0000",
                ),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(from_sobject(&v, None, &jp(), &()).unwrap_err(), want, "{v}");
        }
    }

    #[test]
    fn datetimes_round_trip_in_salesforce_form() {
        let d = parse_sf_datetime("2024-05-01T10:00:00.123+0000").unwrap();
        assert_eq!(format_sf_datetime(d), "2024-05-01T10:00:00.123+0000");
        assert!(parse_sf_datetime("2024-05-01T10:00:00Z").is_some());
    }
}
