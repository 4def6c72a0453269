//! Writing: record GET, create, update, delete and upsert, each field validated the way
//! Salesforce validates it; sObject Collections and Composite reuse the same handlers.

use super::*;

impl Org {
    /// The stored row an Id names, or the answer Salesforce gives when there is none: 404
    /// `NOT_FOUND`, or 404 `ENTITY_IS_DELETED` for a record in the recycle bin (REST
    /// errorcodes; both statuses are seen for it, 404 on record paths).
    pub(super) fn live_row(&self, object: &str, id: &str) -> Result<String, Response> {
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
    pub(super) fn get(&self, object: &str, id: &str, fields: Option<&String>) -> Response {
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
    pub(super) fn validate(
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
            lead_rule(&out, None)?;
        }
        if creating {
            // Required on create (OBJ: Contact "LastName … Required"; Lead "LastName" and
            // "Company … Required"; Account "Name … Required" for a business account).
            let required: &[&str] = match object {
                "Contact" => &["LastName"],
                "Lead" => &["LastName", "Company"],
                "Account" if !out.contains_key("LastName") => &["Name"],
                _ => &[],
            };
            let missing: Vec<&str> = required
                .iter()
                .copied()
                .filter(|f| {
                    out.get(*f)
                        .and_then(Value::as_str)
                        .is_none_or(|v| v.trim().is_empty())
                })
                .collect();
            if !missing.is_empty() {
                return Err((
                    400,
                    err(
                        "REQUIRED_FIELD_MISSING",
                        &format!("Required fields are missing: [{}]", missing.join(", ")),
                        &missing,
                    ),
                ));
            }
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
    pub(super) fn check_value(
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

    pub(super) fn write_row(
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
        if matches!(object, "Contact" | "Lead")
            && (fields.contains_key("FirstName") || fields.contains_key("LastName"))
        {
            // Name is the compound of FirstName and LastName (OBJ: "Concatenation of FirstName,
            // MiddleName, LastName, and Suffix"), read-only.
            let stored = id
                .and_then(|id| self.get_row(object, id))
                .cloned()
                .unwrap_or_default();
            let part = |k: &str| {
                fields
                    .get(k)
                    .or_else(|| stored.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let name = [part("FirstName"), part("LastName")]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            fields.insert("Name".into(), json!(name));
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

    pub(super) fn create(&mut self, object: &str, body: Option<&Value>, user: &str) -> Response {
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
    pub(super) fn check_unique(
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

    /// An update is validated as the record it leaves: a Task's lead rule holds for the
    /// stored WhoId/WhatId the body does not name too (a Lead set as WhoId on a Task that has
    /// a WhatId is refused unless the body clears it).
    fn check_result(
        &self,
        object: &str,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<(), (u16, Value)> {
        if object == "Task" {
            lead_rule(body, self.get_row(object, id))?;
        }
        Ok(())
    }

    pub(super) fn update(&mut self, object: &str, id: &str, body: Option<&Value>) -> Response {
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
        if let Err((s, e)) = self.check_result(object, &id, &body) {
            return resp(s, e);
        }
        if let Err(e) = self.check_unique(object, &body, Some(&id)) {
            return resp(400, e);
        }
        self.write_row(object, Some(&id), &body, "");
        no_content()
    }

    pub(super) fn delete(&mut self, object: &str, id: &str) -> Response {
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

    pub(super) fn find_by(&self, object: &str, field: &str, value: &str) -> Vec<String> {
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
    pub(super) fn upsert(
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
                if let Err((s, e)) = self.check_result(object, &id, &b) {
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
    pub(super) fn collection(&mut self, req: &Request, update_key: Option<&str>) -> Response {
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

    pub(super) fn collection_upsert(
        &mut self,
        req: &Request,
        object: &str,
        field: &str,
    ) -> Response {
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

    pub(super) fn composite(&mut self, req: &Request) -> Response {
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
}

/// The `records` of a Collections request (at most 200).
pub(super) fn collection_records(req: &Request) -> Result<Vec<Value>, Response> {
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

pub(super) fn collection_result(r: Response) -> Value {
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

/// "If WhoId refers to a lead, WhatId must be empty" (OBJ sforce_api_objects_task), on the
/// Task a write leaves: the body's values over the stored row's (`None` for an insert).
fn lead_rule(
    body: &Map<String, Value>,
    stored: Option<&Map<String, Value>>,
) -> Result<(), (u16, Value)> {
    let field = |k: &str| {
        body.get(k)
            .or_else(|| stored.and_then(|r| r.get(k)))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if field("WhoId").is_some_and(|w| w.starts_with("00Q")) && field("WhatId").is_some() {
        return Err((
            400,
            err(
                "FIELD_INTEGRITY_EXCEPTION",
                "Related To ID: id value of incorrect type: a Lead cannot have a Related To record",
                &["WhatId"],
            ),
        ));
    }
    Ok(())
}
