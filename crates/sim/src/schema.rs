//! What the simulated org's objects look like: each field with its type, length and whether
//! Salesforce lets a client create or update it. The org refuses whatever this table does not
//! allow, so it must say what Salesforce says. Every entry cites its source; where a source was
//! not found, the field is left out (a query or write naming it is refused with `INVALID_FIELD`,
//! as Salesforce refuses a field it does not have).
//!
//! Sources (append `.htm`):
//! OBJ = `https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/`;
//! FLD = `https://developer.salesforce.com/docs/atlas.en-us.sfFieldRef.meta/sfFieldRef/`.

use serde::{Deserialize, Serialize};

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
    /// The type's name in a describe.
    pub fn sf(self) -> &'static str {
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

    /// Text-like fields compare with quoted literals in SOQL.
    pub(crate) fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::Id
                | FieldType::Reference
                | FieldType::String
                | FieldType::Phone
                | FieldType::Textarea
                | FieldType::Picklist
                | FieldType::Multipicklist
        )
    }
}

/// One field as a describe reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    pub length: usize,
    /// Describe's `createable`: the field may be set on insert.
    pub create: bool,
    /// Describe's `updateable`: the field may be set on update (and on an upsert that matches).
    pub update: bool,
    /// Restricted picklist values (empty: unrestricted or not a picklist).
    pub picklist: &'static [&'static str],
    /// `defaultedOnCreate` with this value.
    pub default: Option<&'static str>,
}

const fn f(name: &'static str, ty: FieldType, length: usize, create: bool, update: bool) -> Field {
    Field {
        name,
        ty,
        length,
        create,
        update,
        picklist: &[],
        default: None,
    }
}

/// Read-only (system or derived) field.
const fn ro(name: &'static str, ty: FieldType) -> Field {
    f(
        name,
        ty,
        if matches!(ty, FieldType::Id | FieldType::Reference) {
            18
        } else {
            0
        },
        false,
        false,
    )
}

/// Writable on insert and update.
const fn rw(name: &'static str, ty: FieldType, length: usize) -> Field {
    f(name, ty, length, true, true)
}

const fn phone(name: &'static str) -> Field {
    rw(name, FieldType::Phone, 40)
}

/// The Task Status picklist as a new org has it; "Not Started" is its default
/// (FLD salesforce_field_reference_Task: Status, "Defaulted on create").
pub(crate) const TASK_STATUS: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];

/// The object's fields, or `None` for an object the org does not have. `person_accounts`: the
/// optional feature's fields exist (OBJ sforce_api_objects_account, "Person Account Fields":
/// they exist only where person accounts are enabled).
pub fn fields(object: &str, person_accounts: bool) -> Option<Vec<Field>> {
    use FieldType::*;
    // System fields of every object (SOAP API guide, system_fields): Id, CreatedDate,
    // CreatedById, LastModifiedDate, LastModifiedById, SystemModstamp, and IsDeleted on the
    // objects that have a recycle bin. User has no IsDeleted: users are deactivated, never
    // deleted (OBJ sforce_api_objects_user: supported calls have no delete(); its field list
    // has no IsDeleted; a query for it answers "No such column 'IsDeleted' on entity 'User'").
    let mut v = vec![
        ro("Id", Id),
        ro("CreatedDate", Datetime),
        ro("CreatedById", Reference),
        ro("LastModifiedDate", Datetime),
        ro("LastModifiedById", Reference),
        ro("SystemModstamp", Datetime),
    ];
    if object != "User" {
        v.push(ro("IsDeleted", Boolean));
        // OwnerId: Create, Update (OBJ for Contact, Account, Lead, Task, Event); User has no
        // owner.
        v.push(f("OwnerId", Reference, 18, true, true));
    }
    match object {
        // OBJ sforce_api_objects_contact. Name is a compound field: read-only; FirstName and
        // LastName are written.
        "Contact" => {
            v.extend([
                ro("Name", String),
                rw("FirstName", String, 40),
                rw("LastName", String, 80),
                rw("AccountId", Reference, 18),
                rw("Email", String, 80),
                phone("Phone"),
                phone("MobilePhone"),
                phone("HomePhone"),
                phone("OtherPhone"),
                phone("AssistantPhone"),
                phone("Fax"),
            ]);
            if person_accounts {
                v.push(ro("IsPersonAccount", Boolean));
            }
        }
        // OBJ sforce_api_objects_account.
        "Account" => {
            v.extend([
                rw("Name", String, 255),
                rw("Type", Picklist, 40),
                phone("Phone"),
                phone("Fax"),
            ]);
            if person_accounts {
                v.extend([
                    ro("IsPersonAccount", Boolean),
                    ro("PersonContactId", Reference),
                    rw("FirstName", String, 40),
                    rw("LastName", String, 80),
                    phone("PersonMobilePhone"),
                    phone("PersonHomePhone"),
                    phone("PersonOtherPhone"),
                    phone("PersonAssistantPhone"),
                ]);
            }
        }
        // OBJ sforce_api_objects_lead: IsConverted and the Converted* fields are set by lead
        // conversion, not by a write of ours.
        "Lead" => v.extend([
            ro("Name", String),
            rw("FirstName", String, 40),
            rw("LastName", String, 80),
            rw("Company", String, 255),
            ro("IsConverted", Boolean),
            ro("ConvertedContactId", Reference),
            ro("ConvertedAccountId", Reference),
            ro("ConvertedDate", Date),
            phone("Phone"),
            phone("MobilePhone"),
            phone("Fax"),
        ]),
        // OBJ sforce_api_objects_user.
        "User" => v.extend([
            ro("Name", String),
            rw("Username", String, 80),
            rw("Email", String, 128),
            rw("IsActive", Boolean, 0),
            phone("Extension"),
            phone("Phone"),
            phone("MobilePhone"),
            phone("Fax"),
        ]),
        // OBJ sforce_api_objects_event. EventSubtype: Create only (not Update).
        "Event" => v.extend([
            rw("Subject", String, 255),
            rw("Description", Textarea, 32_000),
            rw("StartDateTime", Datetime, 0),
            rw("EndDateTime", Datetime, 0),
            rw("ActivityDateTime", Datetime, 0),
            rw("DurationInMinutes", Int, 0),
            rw("IsAllDayEvent", Boolean, 0),
            rw("Location", String, 255),
            rw("WhoId", Reference, 18),
            rw("WhatId", Reference, 18),
            rw("Type", Picklist, 40),
            Field {
                picklist: &["Event"],
                ..f("EventSubtype", Picklist, 40, true, false)
            },
        ]),
        // OBJ sforce_api_objects_task; call fields from the call-center guide
        // (SOAP sforce_api_guidelines_callcenter). TaskSubtype: "Create, Filter, Group,
        // Nillable, Restricted picklist, Sort" — createable, not updateable, so an update or an
        // upsert that matches an existing Task and names it is refused with
        // INVALID_FIELD_FOR_INSERT_UPDATE. AccountId and IsClosed are derived (read-only).
        "Task" => v.extend([
            rw("Subject", String, 255),
            rw("Description", Textarea, 32_000),
            Field {
                picklist: TASK_STATUS,
                default: Some("Not Started"),
                ..rw("Status", Picklist, 40)
            },
            Field {
                picklist: &["High", "Normal", "Low"],
                default: Some("Normal"),
                ..rw("Priority", Picklist, 40)
            },
            rw("ActivityDate", Date, 0),
            rw("WhoId", Reference, 18),
            rw("WhatId", Reference, 18),
            ro("AccountId", Reference),
            ro("IsClosed", Boolean),
            rw("Type", Picklist, 40),
            Field {
                picklist: &["Inbound", "Internal", "Outbound"],
                ..rw("CallType", Picklist, 40)
            },
            rw("CallObject", String, 255),
            rw("CallDisposition", String, 255),
            rw("CallDurationInSeconds", Int, 0),
            Field {
                picklist: &["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"],
                ..f("TaskSubtype", Picklist, 40, true, false)
            },
        ]),
        _ => return None,
    }
    Some(v)
}

/// Key prefixes by object (the first three characters of every Id).
pub fn prefix(object: &str) -> &'static str {
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

pub(crate) fn object_of_id(id: &str) -> Option<&'static str> {
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

/// The objects a describe list names.
pub(crate) const OBJECTS: &[&str] = &["Account", "Contact", "Lead", "User", "Task", "Event"];

/// An object's name as Salesforce spells it, from any case (`contact` → `Contact`): SOQL and
/// REST paths are case-insensitive for object names (SOQL guide, "SOQL Statements are case
/// insensitive").
pub(crate) fn canonical_object(name: &str) -> Option<&'static str> {
    OBJECTS
        .iter()
        .copied()
        .find(|o| o.eq_ignore_ascii_case(name))
}

pub use callsync_core::record::id18;

/// Whether `given` (15 or 18 characters) names the record with the stored Id `stored`: the
/// first 15 characters are the case-sensitive Id; the suffix is a checksum Salesforce does not
/// treat case-sensitively.
pub(crate) fn same_id(stored: &str, given: &str) -> bool {
    match given.len() {
        15 => stored.get(..15) == Some(given),
        18 => {
            stored.get(..15) == given.get(..15)
                && stored
                    .get(15..)
                    .is_some_and(|s| s.eq_ignore_ascii_case(&given[15..]))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_both_lengths() {
        // Known pair: 001A0000006Vm9r → 001A0000006Vm9rIAC.
        assert_eq!(id18("001A0000006Vm9r"), "001A0000006Vm9rIAC");
        assert_eq!(id18("003000000000001"), "003000000000001AAA");
        assert!(same_id("001A0000006Vm9rIAC", "001A0000006Vm9r"));
        assert!(same_id("001A0000006Vm9rIAC", "001A0000006Vm9riac"));
        assert!(!same_id("001A0000006Vm9rIAC", "001a0000006Vm9r"));
        assert!(!same_id("001A0000006Vm9rIAC", "001A0000006Vm9"));
    }

    #[test]
    fn user_has_no_is_deleted_and_task_subtype_is_create_only() {
        let user = fields("User", true).unwrap();
        assert!(user
            .iter()
            .all(|f| f.name != "IsDeleted" && f.name != "OwnerId"));
        let task = fields("Task", true).unwrap();
        let st = task.iter().find(|f| f.name == "TaskSubtype").unwrap();
        assert!(st.create && !st.update);
        let status = task.iter().find(|f| f.name == "Status").unwrap();
        assert_eq!(status.default, Some("Not Started"));
        assert!(fields("Contact", true)
            .unwrap()
            .iter()
            .any(|f| f.name == "IsDeleted"));
        assert!(fields("Account", false)
            .unwrap()
            .iter()
            .all(|f| f.name != "PersonMobilePhone"));
    }
}
