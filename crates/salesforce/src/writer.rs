//! The Task and Event writer: delivers what the outbox holds to Salesforce, exactly once.
//! Several due Tasks go in sObject Collections of up to 200 (one API call); an item is settled
//! against the revision it sent (a memo merged meanwhile stays, as an update); a write that
//! may update an existing record never carries a create-only field.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use callsync_store::outbox::{
    backoff_ms, body, explain, Item, Op, Outbox, OutboxError, SObject, State,
};

/// What one sending pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SendReport {
    pub sent: usize,
    pub retried_later: usize,
    pub parked: usize,
    /// The pass stopped: sign-in needed, or the org's limit is exhausted.
    pub stopped: Option<String>,
    /// The last retryable failure (network, proxy, certificate), for status and the error log.
    pub last_error: Option<String>,
    /// Leads or Contacts created for unknown callers (the next sync brings them to the cache).
    pub created_records: usize,
}

/// Delivers due outbox items to Salesforce.
pub struct Sender<'a> {
    pub client: &'a crate::Client,
    pub outbox: &'a Outbox,
    /// The Task's unique external-id field holding the call id (recommended), e.g. `Call_Id__c`.
    pub external_id: Option<String>,
    /// The Event's external-id field holding the meeting id.
    pub event_external_id: Option<String>,
    pub errors: Option<&'a callsync_store::errorlog::ErrorLog>,
    /// Numbers (E.164) whose refresh on a miss has not run yet: no record is made for them
    /// until it has, as it may find the caller (one created since the last sync).
    pub awaiting_refresh: std::collections::HashSet<String>,
}

/// How one item is written, decided before the request is built.
#[derive(Clone, Debug, PartialEq)]
enum Write {
    /// An insert that may not have happened yet, keyed on the external id: all fields.
    Upsert(String),
    /// A plain insert: all fields.
    Create,
    /// The record exists: only updateable fields.
    Update(String),
    /// The record should exist but its Id is unknown: look it up first.
    Find,
}

/// Pure: how an item is written. `found`: the record a lookup found for a create that may
/// have landed (`Some(None)`: looked up, not there). A create goes whole only while it is
/// certain no record exists for the call; once one may exist, only updateable fields go.
fn plan(item: &Item, ext: Option<&str>, known: Option<&str>, found: Option<Option<&str>>) -> Write {
    if let Some(Some(id)) = found {
        return Write::Update(id.to_owned());
    }
    match (item.op, ext, known) {
        (Op::Update, _, Some(id)) => Write::Update(id.to_owned()),
        // A second create for a call whose Task (or Event) is written already, as an enqueue
        // torn by a kill can leave behind: never a second record.
        (Op::Create, _, Some(id)) if !item.object.is_caller_record() => {
            Write::Update(id.to_owned())
        }
        (Op::Update, _, None) => Write::Find,
        // A record for an unknown caller is always looked for first: another agent may have
        // made it for the same number (one query, once per number).
        (Op::Create, _, _)
            if (item.maybe_sent || item.object.is_caller_record()) && found.is_none() =>
        {
            Write::Find
        }
        (Op::Create, Some(ext), _) => Write::Upsert(ext.to_owned()),
        (Op::Create, None, _) => Write::Create,
    }
}

enum Outcome {
    Done(Option<String>),
    Retry {
        maybe_sent: bool,
        long: bool,
        why: String,
    },
    Park(String, String, Vec<String>),
    Stop(String),
}

use callsync_core::wire::{soql_quote, SfError, WriteRules};

impl Sender<'_> {
    /// One pass over what is due now; returns what happened. Several due Tasks go in sObject
    /// Collections of up to 200 (one API call each); a single one goes alone.
    pub async fn send_due(&self) -> Result<SendReport, OutboxError> {
        if let Some(why) = self.outbox.paused()? {
            return Ok(SendReport {
                stopped: Some(why),
                ..SendReport::default()
            });
        }
        // The queue belongs to the org it was first sent to; another org never receives it.
        let org = &self.client.auth().org_id;
        match self.outbox.org()? {
            Some(q) if &q != org => {
                return Ok(SendReport {
                    stopped: Some(format!("the queue belongs to org {q}, not {org}: run `callsync connect` and confirm, or sign in to {q}")),
                    ..SendReport::default()
                })
            }
            Some(_) => {}
            None => self.outbox.set_org(org)?,
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut report = SendReport::default();
        // Records for unknown callers first: the Tasks waiting for their Ids follow at once.
        let mut records = self.outbox.due(now, 2_000)?;
        records.retain(|i| i.object.is_caller_record());
        let named = if records.is_empty() {
            Default::default()
        } else {
            self.outbox.placeholders()?
        };
        for object in [SObject::Lead, SObject::Contact] {
            let mut these = Vec::new();
            for item in records.iter().filter(|i| i.object == object) {
                if item.op == Op::Create && self.awaiting_refresh.contains(&item.call_id) {
                    continue;
                }
                // Made only while a Task waits for it: a refresh may have found the caller
                // meanwhile and linked the Task to that record instead.
                let wanted = item.op != Op::Create
                    || item.maybe_sent
                    || named.contains(&object.placeholder(&item.call_id));
                if wanted {
                    these.push(item.clone());
                } else {
                    tracing::info!("the unknown caller was found after all; no record is made");
                    self.outbox.done(item, None)?;
                }
            }
            if these.is_empty() {
                continue;
            }
            let rules = self.rules_for(object.api_name(), &these).await;
            self.send_each(these, &rules, now, &mut report).await?;
            if report.stopped.is_some() {
                self.outbox.flush()?;
                return Ok(report);
            }
        }
        // Meetings are rare: their Events go one by one, after the Tasks.
        let mut events = Vec::new();
        let mut due = Vec::new();
        for item in self.outbox.due(now, 2_000)? {
            match item.object {
                SObject::Event => events.push(item),
                SObject::Task => {
                    if let Some(item) = self.resolve(item)? {
                        due.push(item);
                    }
                }
                _ => {}
            }
        }
        if !due.is_empty() {
            let rules = self.rules_for("Task", &due).await;
            if due.len() >= 2 {
                for chunk in due.chunks(200) {
                    self.send_collection(chunk.to_vec(), &rules, now, &mut report)
                        .await?;
                    if report.stopped.is_some() {
                        break;
                    }
                }
            } else {
                self.send_each(due, &rules, now, &mut report).await?;
            }
        }
        if report.stopped.is_none() && !events.is_empty() {
            let rules = self.rules_for("Event", &events).await;
            self.send_each(events, &rules, now, &mut report).await?;
        }
        self.outbox.flush()?;
        Ok(report)
    }

    /// A Task naming a record created for its unknown caller: the record's Id in place of the
    /// placeholder once it is written (stored, so that every later attempt has it); `None`
    /// while the record waits. A record parked on an error (a field the org requires, say)
    /// does not hold the call back: its Task goes unlinked, and the error log says why.
    fn resolve(&self, item: Item) -> Result<Option<Item>, OutboxError> {
        let refs: Vec<(String, SObject, String)> = item
            .fields
            .iter()
            .filter_map(|(k, v)| {
                let (object, id) = SObject::parse_placeholder(v.as_str()?)?;
                Some((k.clone(), object, id.to_owned()))
            })
            .collect();
        if refs.is_empty() {
            return Ok(Some(item));
        }
        let mut fixes = Vec::new();
        for (field, object, id) in refs {
            match self.outbox.record_id(object, &id)? {
                Some(rid) => fixes.push((field, Value::String(rid))),
                None => match self.outbox.queued_create_item(object, &id)? {
                    Some(r) if matches!(r.state, State::Parked { .. }) => {
                        tracing::warn!(call = %item.call_id, "the record for the unknown caller is parked; the Task goes unlinked");
                        fixes.push((field, Value::Null));
                    }
                    Some(_) => return Ok(None),
                    // Neither written nor queued (removed by hand): unlinked.
                    None => fixes.push((field, Value::Null)),
                },
            }
        }
        let stored = self.outbox.update(item.seq, |cur| {
            let mut i = cur?;
            for (k, v) in &fixes {
                if i.fields
                    .get(k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.starts_with('@'))
                {
                    if v.is_null() {
                        i.fields.remove(k);
                    } else {
                        i.fields.insert(k.clone(), v.clone());
                    }
                }
            }
            Some(i)
        })?;
        self.outbox.flush()?;
        Ok(stored)
    }

    /// The object's create-only fields: from its describe (one call a session) when some
    /// write may update a record; a batch of first creates needs none.
    async fn rules_for(&self, object: &str, items: &[Item]) -> WriteRules {
        let may_update = items.iter().any(|i| i.op == Op::Update || i.maybe_sent);
        if may_update {
            self.client.write_rules(object).await
        } else {
            self.client
                .known_write_rules(object)
                .await
                .unwrap_or_else(|| WriteRules::standard(object))
        }
    }

    async fn send_each(
        &self,
        due: Vec<Item>,
        rules: &WriteRules,
        now: i64,
        report: &mut SendReport,
    ) -> Result<(), OutboxError> {
        let mut rng = fastrand::Rng::new();
        for item in due {
            self.note_intent(&item)?;
            let outcome = self.send_one(&item, rules).await;
            self.settle(item, outcome, now, &mut rng, report)?;
            if report.stopped.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// Before a create goes out: if the process dies with it in flight, the next attempt
    /// looks for the record before writing anything that could duplicate it.
    fn note_intent(&self, item: &Item) -> Result<(), OutboxError> {
        if item.op == Op::Create && !item.maybe_sent {
            self.outbox.update(item.seq, |cur| {
                let mut i = cur?;
                i.maybe_sent = true;
                Some(i)
            })?;
            self.outbox.flush()?;
        }
        Ok(())
    }

    /// Applies one item's outcome to the store and the report, on the item as stored now (a
    /// memo may have been merged into it while it was being sent).
    fn settle(
        &self,
        item: Item,
        outcome: Outcome,
        now: i64,
        rng: &mut fastrand::Rng,
        report: &mut SendReport,
    ) -> Result<(), OutboxError> {
        match outcome {
            Outcome::Done(id) => {
                self.outbox.done(&item, id.as_deref())?;
                report.sent += 1;
                if item.object.is_caller_record() && item.op == Op::Create {
                    report.created_records += 1;
                }
            }
            Outcome::Retry {
                maybe_sent,
                long,
                why,
            } => {
                let attempts = item.attempts + 1;
                let not_before = now
                    + if long {
                        15 * 60_000
                    } else {
                        backoff_ms(attempts, rng.f64())
                    };
                self.outbox.update(item.seq, |cur| {
                    let mut i = cur?;
                    i.attempts = attempts;
                    i.maybe_sent |= maybe_sent || item.maybe_sent;
                    i.last_error = Some(why.clone());
                    i.not_before = not_before;
                    Some(i)
                })?;
                report.retried_later += 1;
                // Unreachable or failing (not a row lock, which clears by itself): the agent
                // shows it as offline, and the error log has it once.
                if !why.contains("UNABLE_TO_LOCK_ROW") && !why.contains("exists already") {
                    report.last_error = Some(why.clone());
                }
                if long {
                    report.stopped =
                        Some("the org's API limit is exhausted; sending pauses".into());
                }
            }
            Outcome::Park(code, message, fields) => {
                let (explanation, fix) = explain(&code, &message, &fields);
                if let Some(log) = self.errors {
                    let _ = log.append(&callsync_core::errors::ErrorEntry::now(
                        "salesforce",
                        format!("call {}", item.call_id),
                        format!(
                            "{} {:?} parked: {explanation}. Fix: {fix}",
                            item.object.api_name(),
                            item.op
                        ),
                    ));
                }
                let state = State::Parked {
                    code,
                    message,
                    explanation,
                    fix,
                };
                self.outbox.update(item.seq, |cur| {
                    let mut i = cur?;
                    i.state = state.clone();
                    Some(i)
                })?;
                report.parked += 1;
            }
            Outcome::Stop(why) => report.stopped = Some(why),
        }
        Ok(())
    }

    /// Records that may already hold the given creates, in one query: call id → record Id.
    async fn lookup(
        &self,
        object: SObject,
        calls: &[&str],
    ) -> Result<BTreeMap<String, String>, SfError> {
        let key = self
            .external_id_for(object)
            .cloned()
            .unwrap_or_else(|| "CallObject".to_owned());
        let list = calls
            .iter()
            .map(|c| format!("'{}'", soql_quote(c)))
            .collect::<Vec<_>>()
            .join(",");
        let q = format!(
            "SELECT Id, {key} FROM {} WHERE {key} IN ({list})",
            object.api_name()
        );
        let page = self.client.query(&q, false).await?;
        Ok(page
            .records
            .iter()
            .filter_map(|r| Some((r[&key].as_str()?.to_owned(), r["Id"].as_str()?.to_owned())))
            .collect())
    }

    /// Up to 200 Tasks in one Collections request per kind of write.
    async fn send_collection(
        &self,
        items: Vec<Item>,
        rules: &WriteRules,
        now: i64,
        report: &mut SendReport,
    ) -> Result<(), OutboxError> {
        use reqwest::Method;
        let mut rng = fastrand::Rng::new();
        // Creates that may have landed are looked up first, in one query.
        let unsure: Vec<&str> = items
            .iter()
            .filter(|i| i.op == Op::Create && i.maybe_sent)
            .map(|i| i.call_id.as_str())
            .collect();
        let found = if unsure.is_empty() {
            BTreeMap::new()
        } else {
            match self.lookup(SObject::Task, &unsure).await {
                Ok(f) => f,
                Err(e) => {
                    for item in items {
                        let o = self.classify(e.clone(), false);
                        self.settle(item, o, now, &mut rng, report)?;
                    }
                    return Ok(());
                }
            }
        };
        // Every write decided; creates noted as in flight before the request goes.
        let ext = self.external_id.as_deref();
        let mut groups: BTreeMap<u8, Vec<(Item, Write)>> = BTreeMap::new();
        for item in items {
            let looked_up = (item.op == Op::Create && item.maybe_sent)
                .then(|| found.get(&item.call_id).map(String::as_str));
            let known = self.outbox.task_id(&item.call_id)?;
            let w = plan(&item, ext, known.as_deref(), looked_up);
            if w == Write::Find {
                // Rare (an update whose Task Id was never learned): the single path finds it.
                let o = self.send_one(&item, rules).await;
                self.settle(item, o, now, &mut rng, report)?;
                continue;
            }
            self.note_intent(&item)?;
            let group = match w {
                Write::Upsert(_) => 0,
                Write::Create => 1,
                _ => 2,
            };
            groups.entry(group).or_default().push((item, w));
        }
        for (_, group) in groups {
            let mut records = Vec::new();
            for (item, w) in &group {
                let mut rec = match w {
                    Write::Update(id) => {
                        let mut r = body(&rules.for_update(&item.fields));
                        r["Id"] = Value::String(id.clone());
                        r
                    }
                    Write::Upsert(ext) => {
                        let mut r = body(&item.fields);
                        r[ext] = Value::String(item.call_id.clone());
                        r
                    }
                    _ => body(&item.fields),
                };
                rec["attributes"] = serde_json::json!({"type": "Task"});
                records.push(rec);
            }
            let (method, path) = match &group[0].1 {
                Write::Upsert(ext) => (Method::PATCH, format!("/composite/sobjects/Task/{ext}")),
                Write::Create => (Method::POST, "/composite/sobjects".to_owned()),
                _ => (Method::PATCH, "/composite/sobjects".to_owned()),
            };
            let req = serde_json::json!({"allOrNone": false, "records": records});
            let sent = self
                .client
                .send(method, &self.client.data_path(&path), Some(&req))
                .await;
            let n = group.len();
            match sent {
                Ok((_, Some(Value::Array(results)))) if results.len() == n => {
                    for ((item, w), r) in group.into_iter().zip(results) {
                        let o = if r["success"] == Value::Bool(true) {
                            let id = r["id"].as_str().map(str::to_owned).or(match &w {
                                Write::Update(id) => Some(id.clone()),
                                _ => None,
                            });
                            Outcome::Done(id)
                        } else {
                            let err = callsync_core::wire::error_entry(400, &r["errors"][0]);
                            self.refused(err, &w, rules)
                        };
                        self.settle(item, o, now, &mut rng, report)?;
                    }
                }
                Ok(_) => {
                    for (item, _) in group {
                        let o = Outcome::Retry {
                            maybe_sent: item.op == Op::Create,
                            long: false,
                            why: "unexpected Collections answer".into(),
                        };
                        self.settle(item, o, now, &mut rng, report)?;
                    }
                }
                Err(e) => {
                    for (item, _) in group {
                        let o = self.classify(e.clone(), item.op == Op::Create);
                        self.settle(item, o, now, &mut rng, report)?;
                    }
                }
            }
            if report.stopped.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// A write Salesforce refused. An upsert refused for naming a create-only field matched a
    /// record that already exists (an earlier attempt landed after all): not a problem to park,
    /// the next attempt looks the record up and updates it.
    fn refused(&self, e: SfError, w: &Write, rules: &WriteRules) -> Outcome {
        let ours = matches!(w, Write::Upsert(_))
            && matches!(&e, SfError::Api { code, fields, message, .. }
                if code == "INVALID_FIELD_FOR_INSERT_UPDATE"
                    && (fields.iter().any(|f| rules.is_create_only(f))
                        || rules.named_in(message)));
        if ours {
            return Outcome::Retry {
                maybe_sent: true,
                long: false,
                why: "the record exists already (an earlier attempt landed); it is updated next"
                    .into(),
            };
        }
        self.classify(e, matches!(w, Write::Upsert(_) | Write::Create))
    }

    fn classify(&self, e: SfError, creating: bool) -> Outcome {
        match e {
            e @ SfError::SignInNeeded { .. } => Outcome::Stop(e.to_string()),
            SfError::NotConnected => Outcome::Stop("not signed in".into()),
            SfError::Store(m) => Outcome::Stop(m),
            // No answer: the write may have landed.
            SfError::Network(m) | SfError::Protocol(m) => Outcome::Retry {
                maybe_sent: creating,
                long: false,
                why: m,
            },
            // Nothing reached Salesforce.
            e @ SfError::ProxyUnreachable { .. } => Outcome::Retry {
                maybe_sent: false,
                long: false,
                why: e.to_string(),
            },
            e if e.is_rate_limited() => Outcome::Retry {
                maybe_sent: false,
                long: true,
                why: e.to_string(),
            },
            e if e.is_retryable() => Outcome::Retry {
                maybe_sent: creating
                    && e.code()
                        .is_some_and(|c| c.starts_with("SERVER") || c == "BAD_GATEWAY"),
                long: false,
                why: e.to_string(),
            },
            SfError::Api {
                code,
                message,
                fields,
                ..
            } => Outcome::Park(code, message, fields),
        }
    }

    fn external_id_for(&self, object: SObject) -> Option<&String> {
        match object {
            SObject::Task => self.external_id.as_ref(),
            SObject::Event => self.event_external_id.as_ref(),
            SObject::Lead | SObject::Contact => None,
        }
    }

    /// The record already written for an item: by its external id, else a Task by its
    /// `CallObject` and an Event by its Subject and start.
    async fn find_existing(&self, item: &Item) -> Result<Option<String>, SfError> {
        let text = |k: &str| item.fields.get(k).and_then(Value::as_str).unwrap_or("");
        if item.object.is_caller_record() {
            // The record for an unknown caller: the one with its number and name (an earlier
            // attempt's, or another agent's for the same number).
            let q = format!(
                "SELECT Id FROM {} WHERE Phone = '{}' AND LastName = '{}' ORDER BY CreatedDate LIMIT 1",
                item.object.api_name(),
                soql_quote(text("Phone")),
                soql_quote(text("LastName"))
            );
            let page = self.client.query(&q, false).await?;
            return Ok(page
                .records
                .first()
                .and_then(|r| r["Id"].as_str())
                .map(str::to_owned));
        }
        if self.external_id_for(item.object).is_some() || item.object == SObject::Task {
            return Ok(self
                .lookup(item.object, &[item.call_id.as_str()])
                .await?
                .remove(&item.call_id));
        }
        let Some(start) = callsync_core::record::parse_sf_datetime(text("StartDateTime")) else {
            return Ok(None);
        };
        let q = format!(
            "SELECT Id FROM Event WHERE Subject = '{}' AND StartDateTime = {} LIMIT 1",
            soql_quote(text("Subject")),
            callsync_core::wire::soql_datetime(start)
        );
        let page = self.client.query(&q, false).await?;
        Ok(page
            .records
            .first()
            .and_then(|r| r["Id"].as_str())
            .map(str::to_owned))
    }

    async fn send_one(&self, item: &Item, rules: &WriteRules) -> Outcome {
        use reqwest::Method;
        let object = item.object.api_name();
        let ext = self.external_id_for(item.object).map(String::as_str);
        let known = self
            .outbox
            .record_id(item.object, &item.call_id)
            .ok()
            .flatten();
        let mut w = plan(item, ext, known.as_deref(), None);
        if w == Write::Find {
            w = match self.find_existing(item).await {
                Ok(found) => plan(item, ext, known.as_deref(), Some(found.as_deref())),
                Err(e) => return self.classify(e, false),
            };
            if w == Write::Find {
                // An update whose record does not exist (deleted in Salesforce, never created).
                return Outcome::Park(
                    "TASK_NOT_FOUND".into(),
                    format!("no {object} for {} to update", item.call_id),
                    Vec::new(),
                );
            }
        }
        let result = match &w {
            Write::Upsert(ext) => {
                let path = self.client.data_path(&format!(
                    "/sobjects/{object}/{ext}/{}",
                    urlencode(&item.call_id)
                ));
                let mut f = item.fields.clone();
                f.remove(ext);
                self.client
                    .send(Method::PATCH, &path, Some(&body(&f)))
                    .await
                    .map(|(_, v)| v.and_then(|v| v["id"].as_str().map(str::to_owned)))
            }
            Write::Create => {
                let path = self.client.data_path(&format!("/sobjects/{object}"));
                self.client
                    .send(Method::POST, &path, Some(&body(&item.fields)))
                    .await
                    .map(|(_, v)| v.and_then(|v| v["id"].as_str().map(str::to_owned)))
            }
            Write::Update(id) => {
                let path = self.client.data_path(&format!("/sobjects/{object}/{id}"));
                self.client
                    .send(
                        Method::PATCH,
                        &path,
                        Some(&body(&rules.for_update(&item.fields))),
                    )
                    .await
                    .map(|_| Some(id.clone()))
            }
            Write::Find => unreachable!("resolved above"),
        };
        match result {
            Ok(id) => Outcome::Done(id),
            Err(e) => self.refused(e, &w, rules),
        }
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn item(op: Op, maybe_sent: bool) -> Item {
        Item {
            seq: 1,
            call_id: "c1".into(),
            object: SObject::Task,
            op,
            fields: callsync_core::activity::Fields::new(),
            queued_at: String::new(),
            attempts: 0,
            not_before: 0,
            maybe_sent,
            state: State::Pending,
            last_error: None,
            rev: 0,
        }
    }

    #[test]
    fn how_each_item_is_written() {
        use Write::*;
        let ext = Some("Call_Id__c");
        #[allow(clippy::type_complexity)]
        let table: Vec<(
            &str,
            Item,
            Option<&str>,
            Option<&str>,
            Option<Option<&str>>,
            Write,
        )> = vec![
            (
                "first create, ext id",
                item(Op::Create, false),
                ext,
                None,
                None,
                Upsert("Call_Id__c".into()),
            ),
            (
                "first create, no ext id",
                item(Op::Create, false),
                None,
                None,
                None,
                Create,
            ),
            (
                "create that may have landed: look first",
                item(Op::Create, true),
                ext,
                None,
                None,
                Find,
            ),
            (
                "looked up, absent: upsert whole",
                item(Op::Create, true),
                ext,
                None,
                Some(None),
                Upsert("Call_Id__c".into()),
            ),
            (
                "looked up, absent: create whole",
                item(Op::Create, true),
                None,
                None,
                Some(None),
                Create,
            ),
            (
                "looked up, present: update only",
                item(Op::Create, true),
                ext,
                None,
                Some(Some("00T1")),
                Update("00T1".into()),
            ),
            (
                "a record for an unknown caller: looked for before its first create",
                Item {
                    object: SObject::Lead,
                    ..item(Op::Create, false)
                },
                None,
                None,
                None,
                Find,
            ),
            (
                "a create whose Task was written already: update only",
                item(Op::Create, false),
                None,
                Some("00T3"),
                None,
                Update("00T3".into()),
            ),
            (
                "the same with the ext id",
                item(Op::Create, false),
                ext,
                Some("00T3"),
                None,
                Update("00T3".into()),
            ),
            (
                "update with a known Id",
                item(Op::Update, false),
                ext,
                Some("00T2"),
                None,
                Update("00T2".into()),
            ),
            (
                "update, Id unknown",
                item(Op::Update, false),
                None,
                None,
                None,
                Find,
            ),
        ];
        for (name, i, e, known, found, want) in table {
            assert_eq!(plan(&i, e, known, found), want, "{name}");
        }
    }
}
