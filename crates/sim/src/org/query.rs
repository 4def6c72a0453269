//! Reading: describe, SOQL queries and their pages (`query`, `queryAll`), and the replication
//! windows (`updated`, `deleted`).

use super::*;

impl Org {
    pub(super) fn describe(&self, object: &str) -> Response {
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
    pub(super) fn resolve_field(&self, object: &str, name: &str) -> Option<(String, FieldType)> {
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
    pub(super) fn typed_filter(&self, object: &str, e: &soql::Expr) -> Result<soql::Expr, Value> {
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
    pub(super) fn project(
        &self,
        object: &str,
        row: &Map<String, Value>,
        fields: &[String],
    ) -> Value {
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

    pub(super) fn query(&mut self, q: Option<&String>, all: bool) -> Response {
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
    pub(super) fn page(&mut self, qid: u64, offset: usize) -> Response {
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

    pub(super) fn more(&mut self, locator: &str) -> Response {
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

    pub(super) fn window(
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

    pub(super) fn updated(&self, object: &str, q: &HashMap<String, String>) -> Response {
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

    pub(super) fn deleted(&self, object: &str, q: &HashMap<String, String>) -> Response {
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
}

pub(super) fn collect_fields(e: &soql::Expr, out: &mut Vec<String>) {
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
pub(super) fn prune(row: Value, fields: &[String]) -> Value {
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
