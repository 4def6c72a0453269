//! The integration settings checked against the org: the enabled groups' objects and custom
//! fields (describe), the Task Status value, the assignees. What each problem is and its fix.

use std::collections::BTreeMap;

use serde::Serialize;

use callsync_config::Config;
use callsync_core::wire::{ObjectInfo, SfError};
use callsync_salesforce::Client;

/// One problem found checking the settings against the org, with its fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The setting (or object) concerned.
    pub item: String,
    pub problem: String,
    pub fix: String,
}

/// Checks the configured custom fields of one object: each exists and can be written; the
/// external-id field is marked External ID. Pure: `info` comes from describe.
pub(crate) fn check_fields(
    object: &str,
    info: Option<&ObjectInfo>,
    fields: &[(&str, &str)],
    external_id: Option<(&str, &str)>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(info) = info else {
        out.push(Finding {
            item: object.into(),
            problem: format!("the signed-in user cannot see the {object} object"),
            fix: format!("Give the user read and create access to {object} (profile or permission set → Object Settings → {object})."),
        });
        return out;
    };
    if !info.createable {
        out.push(Finding {
            item: object.into(),
            problem: format!("the signed-in user cannot create {object} records"),
            fix: format!("Give the user the Create permission on {object} (profile or permission set → Object Settings), and \"Edit Events\"/\"Edit Tasks\" as needed."),
        });
    }
    let all = fields.iter().chain(external_id.iter());
    for (key, name) in all {
        if name.is_empty() {
            continue;
        }
        match info.fields.get(*name) {
            None => out.push(Finding {
                item: (*key).into(),
                problem: format!("{object} has no field {name} (or the user cannot see it)"),
                fix: format!("Create the custom field on {object} (Setup → Object Manager → Activity → Fields & Relationships) and make it visible to the user's profile, or clear `{key}` (`callsync settings set {key} \"\"`)."),
            }),
            Some(f) if !(f.createable && f.updateable) => out.push(Finding {
                item: (*key).into(),
                problem: format!("{object}.{name} is read-only for the signed-in user"),
                fix: format!("Make {name} editable for the user's profile or permission set (Field-Level Security)."),
            }),
            Some(f) if external_id.is_some_and(|(k, _)| k == *key) && !f.external_id => {
                out.push(Finding {
                    item: (*key).into(),
                    problem: format!("{object}.{name} is not marked External ID"),
                    fix: format!("Edit the field and tick \"Unique\" and \"External ID\", or clear `{key}`."),
                })
            }
            Some(_) => {}
        }
    }
    out
}

/// Checks the effective settings against the org: the enabled groups' objects and custom fields
/// (describe), the Task Status value, and that the assignees exist, are active and can be read.
/// `Err` only when the org could not be asked at all.
pub async fn check_against_org(client: &Client, config: &Config) -> Result<Vec<Finding>, SfError> {
    let mut out = Vec::new();
    let a = &config.activity;
    if a.enabled {
        let task = describe(client, "Task").await?;
        out.extend(check_fields(
            "Task",
            task.as_ref(),
            &[
                ("activity.dial_start_field", &a.dial_start_field),
                ("activity.call_start_field", &a.call_start_field),
                ("activity.call_end_field", &a.call_end_field),
                ("activity.memo_field", &a.memo_field),
            ],
            Some(("activity.external_id_field", &a.external_id_field)),
        ));
        if let Some(status) = task.as_ref().and_then(|t| t.fields.get("Status")) {
            if status.restricted && !status.picklist.contains(&a.status) {
                out.push(Finding {
                    item: "activity.status".into(),
                    problem: format!(
                        "{:?} is not a Task Status value in this org (it has: {})",
                        a.status,
                        status.picklist.join(", ")
                    ),
                    fix: "Set activity.status to one of those values (`callsync settings set activity.status Completed`).".into(),
                });
            }
        }
    }
    let m = &config.meeting;
    if m.enabled {
        let event = describe(client, "Event").await?;
        out.extend(check_fields(
            "Event",
            event.as_ref(),
            &[
                ("meeting.recording_url_field", &m.recording_url_field),
                ("meeting.tags_field", &m.tags_field),
            ],
            Some(("meeting.external_id_field", &m.external_id_field)),
        ));
    }
    let asg = &config.assignee;
    let mut users: Vec<(String, String)> = asg
        .agents
        .iter()
        .map(|(agent, id)| (format!("assignee.agents.{agent}"), id.clone()))
        .collect();
    if !asg.missed_owner.is_empty() {
        users.push(("assignee.missed_owner".into(), asg.missed_owner.clone()));
    }
    if asg.enabled && !users.is_empty() {
        let ids: Vec<String> = users
            .iter()
            .map(|(_, id)| format!("'{}'", id.replace('\'', "")))
            .collect();
        let q = format!(
            "SELECT Id, IsActive FROM User WHERE Id IN ({})",
            ids.join(",")
        );
        match client.query(&q, false).await {
            Ok(page) => {
                let found: BTreeMap<String, bool> = page
                    .records
                    .iter()
                    .filter_map(|r| {
                        Some((
                            r["Id"].as_str()?.get(..15)?.to_owned(),
                            r["IsActive"].as_bool().unwrap_or(true),
                        ))
                    })
                    .collect();
                for (key, id) in &users {
                    // An agent's mapping is set as the whole `assignee.agents` map.
                    let set_key = if key.starts_with("assignee.agents.") {
                        "assignee.agents"
                    } else {
                        key.as_str()
                    };
                    match found.get(id.get(..15).unwrap_or(id)) {
                        None => out.push(Finding {
                            item: key.clone(),
                            problem: format!("no User {id} in this org"),
                            fix: format!("Map it to a User of this org (`callsync settings set {set_key} …`), or remove it."),
                        }),
                        Some(false) => out.push(Finding {
                            item: key.clone(),
                            problem: format!("User {id} is inactive: Tasks cannot be assigned to them"),
                            fix: "Map this agent to an active User.".into(),
                        }),
                        Some(true) => {}
                    }
                }
            }
            Err(e) if matches!(e.code(), Some("INVALID_TYPE" | "INSUFFICIENT_ACCESS")) => {
                out.push(Finding {
                    item: "assignee".into(),
                    problem: "the signed-in user cannot read Users, so the assignees cannot be checked (and forwarding owners cannot be found)".into(),
                    fix: "Give the user read access to User (\"View All Users\" or sharing on Users).".into(),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Describe of `object`, or None when the user cannot see it.
pub async fn describe(client: &Client, object: &str) -> Result<Option<ObjectInfo>, SfError> {
    match client
        .get(&client.data_path(&format!("/sobjects/{object}/describe")))
        .await
    {
        Ok(v) => Ok(Some(ObjectInfo::from_describe(&v))),
        Err(e) if matches!(e.code(), Some("NOT_FOUND" | "INVALID_TYPE")) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_checks_say_what_is_wrong_and_how_to_fix_it() {
        let v = serde_json::json!({"createable": true, "queryable": true, "fields": [
            {"name": "Memo__c", "createable": true, "updateable": true},
            {"name": "Locked__c", "createable": false, "updateable": false},
            {"name": "Ext__c", "createable": true, "updateable": true, "externalId": false},
        ]});
        let info = ObjectInfo::from_describe(&v);
        let f = check_fields(
            "Task",
            Some(&info),
            &[
                ("a.memo", "Memo__c"),
                ("a.locked", "Locked__c"),
                ("a.missing", "Nope__c"),
                ("a.empty", ""),
            ],
            Some(("a.ext", "Ext__c")),
        );
        let items: Vec<&str> = f.iter().map(|f| f.item.as_str()).collect();
        assert_eq!(items, ["a.locked", "a.missing", "a.ext"]);
        assert!(f[1].fix.contains("Create the custom field"));
        let none = check_fields("Event", None, &[], None);
        assert!(none[0].problem.contains("cannot see the Event object"));
    }
}
