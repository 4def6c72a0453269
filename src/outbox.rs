//! The outbox: every Task create/update waits here, on disk, before any network call, and
//! leaves only when Salesforce has it. Its own sled store (the record cache is disposable; this
//! is not), fsynced on every enqueue so that the call-log position is acknowledged only after
//! the work is durable.
//!
//! Exactly once: a create carries the call id, which becomes an upsert key (`Call_Id__c`) when
//! the org has one, or is looked up by `CallObject` before a create that may already have
//! landed is sent again. An update for a call whose create is still queued is merged into it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::activity::Fields;

const T_ITEMS: &str = "items";
const T_TASKS: &str = "tasks";
const T_META: &str = "meta";
const T_CALLS: &str = "calls";
/// call id → seq of its queued create (creates are one per call).
const T_CREATES: &str = "creates";
const FORMAT: u8 = 1;
const META_ORG: &str = "org";
const META_PAUSED: &str = "paused";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
}

/// Why an item waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Pending,
    /// A permanent error: kept until `queue retry` after the cause is fixed.
    Parked {
        code: String,
        message: String,
        explanation: String,
        fix: String,
    },
}

/// What an item writes: a call's Task, or a meeting's Event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SObject {
    #[default]
    Task,
    Event,
}

impl SObject {
    pub fn api_name(self) -> &'static str {
        match self {
            SObject::Task => "Task",
            SObject::Event => "Event",
        }
    }

    /// Store key for a call or meeting id: Tasks keep the bare id (the format before Events).
    fn key(self, id: &str) -> Vec<u8> {
        match self {
            SObject::Task => id.as_bytes().to_vec(),
            SObject::Event => format!("Event:{id}").into_bytes(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub seq: u64,
    /// The call id (Tasks) or meeting id (Events).
    pub call_id: String,
    /// Absent in items queued before Events existed: a Task.
    #[serde(default)]
    pub object: SObject,
    pub op: Op,
    pub fields: Fields,
    pub queued_at: String,
    pub attempts: u32,
    /// Unix ms before which no retry is made.
    pub not_before: i64,
    /// The last attempt may have reached Salesforce (timeout, reset): check before creating.
    pub maybe_sent: bool,
    pub state: State,
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox at {0} is in use by another callsync process")]
    Locked(PathBuf),
    #[error("outbox storage error at {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("outbox item {0} is undecodable")]
    Corrupt(u64),
}

pub struct Outbox {
    db: sled::Db,
    items: sled::Tree,
    tasks: sled::Tree,
    meta: sled::Tree,
    calls: sled::Tree,
    creates: sled::Tree,
    path: PathBuf,
    _lock: std::fs::File,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend(serde_json::to_vec(v).unwrap_or_default());
    out
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Option<T> {
    let (&f, body) = b.split_first()?;
    (f == FORMAT)
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
}

impl Outbox {
    /// Opens the outbox in `dir`. Unlike the cache it is never rebuilt: a store that cannot be
    /// opened is an error the user must see, because it holds work not yet in Salesforce.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        let lock_path = dir.with_file_name(format!(
            "{}.lock",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("outbox")
        ));
        if let Some(p) = lock_path.parent() {
            crate::fsutil::create_private_dir(p).map_err(|source| OutboxError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| OutboxError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OutboxError::Locked(dir.to_owned()))
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(OutboxError::Lock {
                    path: lock_path,
                    source,
                })
            }
        }
        let st = |source| OutboxError::Storage {
            path: dir.to_owned(),
            source,
        };
        let mut attempt = 0;
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .cache_capacity(8 << 20)
                // Every durable step flushes explicitly; sled's periodic flusher would only wake
                // the idle agent (its 500 ms default: twice a second).
                .flush_every_ms(None)
                .open()
            {
                // Our own lock is held: a sled lock error is this process's previous handle
                // shutting down.
                Err(e) if attempt < 100 && e.to_string().contains("lock") => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(st)?,
            }
        };
        Ok(Outbox {
            items: db.open_tree(T_ITEMS).map_err(st)?,
            tasks: db.open_tree(T_TASKS).map_err(st)?,
            meta: db.open_tree(T_META).map_err(st)?,
            calls: db.open_tree(T_CALLS).map_err(st)?,
            creates: db.open_tree(T_CREATES).map_err(st)?,
            db,
            path: dir.to_owned(),
            _lock: lock,
        })
    }

    fn st(&self) -> impl Fn(sled::Error) -> OutboxError + '_ {
        move |source| OutboxError::Storage {
            path: self.path.clone(),
            source,
        }
    }

    /// Makes everything enqueued so far survive a crash or power loss.
    pub fn flush(&self) -> Result<(), OutboxError> {
        self.db.flush().map(|_| ()).map_err(self.st())
    }

    /// Queues a create or update for `call_id` and fsyncs. One create per call, ever: a create
    /// queued again (a call-log batch delivered twice after a crash) is merged into the queued
    /// one, or becomes an update once the Task exists; an update for a call whose create is
    /// still queued is merged into that create.
    pub fn enqueue(&self, call_id: &str, op: Op, fields: Fields) -> Result<u64, OutboxError> {
        self.enqueue_for(SObject::Task, call_id, op, fields)
    }

    /// As [`Outbox::enqueue`], for a Task or an Event.
    pub fn enqueue_for(
        &self,
        object: SObject,
        call_id: &str,
        op: Op,
        fields: Fields,
    ) -> Result<u64, OutboxError> {
        if let Some(seq) = self.queued_create(object, call_id)? {
            if let Some(mut item) = self.get(seq)? {
                let mergeable = op == Op::Create || item.state == State::Pending;
                if mergeable {
                    for (k, v) in fields {
                        item.fields.insert(k, v);
                    }
                    self.put(&item)?;
                    self.flush()?;
                    return Ok(seq);
                }
            }
        }
        let op = if op == Op::Create && self.record_id(object, call_id)?.is_some() {
            Op::Update
        } else {
            op
        };
        let seq = self.db.generate_id().map_err(self.st())?;
        let item = Item {
            seq,
            call_id: call_id.to_owned(),
            object,
            op,
            fields,
            queued_at: crate::record::format_sf_datetime(chrono::Utc::now()),
            attempts: 0,
            not_before: 0,
            maybe_sent: false,
            state: State::Pending,
            last_error: None,
        };
        self.items
            .insert(seq.to_be_bytes(), encode(&item))
            .map_err(self.st())?;
        if op == Op::Create {
            self.creates
                .insert(object.key(call_id), &seq.to_be_bytes())
                .map_err(self.st())?;
        }
        self.flush()?;
        Ok(seq)
    }

    fn queued_create(&self, object: SObject, call_id: &str) -> Result<Option<u64>, OutboxError> {
        Ok(self
            .creates
            .get(object.key(call_id))
            .map_err(self.st())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    fn get(&self, seq: u64) -> Result<Option<Item>, OutboxError> {
        Ok(self
            .items
            .get(seq.to_be_bytes())
            .map_err(self.st())?
            .and_then(|v| decode(&v)))
    }

    /// Every queued item, oldest first.
    pub fn items(&self) -> Result<Vec<Item>, OutboxError> {
        let mut out = Vec::new();
        for kv in self.items.iter() {
            let (k, v) = kv.map_err(self.st())?;
            let seq = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            out.push(decode::<Item>(&v).ok_or(OutboxError::Corrupt(seq))?);
        }
        Ok(out)
    }

    /// Items that may be sent now: pending, due, and first of their call (per-call order).
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Item>, OutboxError> {
        let mut seen_calls = std::collections::HashSet::new();
        let mut out = Vec::new();
        for item in self.items()? {
            let first_of_call = seen_calls.insert((item.object, item.call_id.clone()));
            if !first_of_call {
                continue;
            }
            if item.state == State::Pending && item.not_before <= now_ms {
                out.push(item);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn put(&self, item: &Item) -> Result<(), OutboxError> {
        self.items
            .insert(item.seq.to_be_bytes(), encode(item))
            .map_err(self.st())?;
        Ok(())
    }

    /// Salesforce has it: the item leaves, the Task Id is remembered for later updates.
    pub fn done(&self, item: &Item, task_id: Option<&str>) -> Result<(), OutboxError> {
        if let Some(id) = task_id {
            self.tasks
                .insert(item.object.key(&item.call_id), id.as_bytes())
                .map_err(self.st())?;
        }
        self.items
            .remove(item.seq.to_be_bytes())
            .map_err(self.st())?;
        Ok(())
    }

    pub fn task_id(&self, call_id: &str) -> Result<Option<String>, OutboxError> {
        self.record_id(SObject::Task, call_id)
    }

    /// The Salesforce Id of the Task (or Event) written for a call (or meeting).
    pub fn record_id(&self, object: SObject, call_id: &str) -> Result<Option<String>, OutboxError> {
        Ok(self
            .tasks
            .get(object.key(call_id))
            .map_err(self.st())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Parked items back to pending (all, or one).
    pub fn retry(&self, seq: Option<u64>) -> Result<usize, OutboxError> {
        let mut n = 0;
        for mut item in self.items()? {
            if seq.is_some_and(|s| s != item.seq) || matches!(item.state, State::Pending) {
                continue;
            }
            item.state = State::Pending;
            item.not_before = 0;
            item.attempts = 0;
            self.put(&item)?;
            n += 1;
        }
        self.flush()?;
        Ok(n)
    }

    /// Counts: (pending, parked).
    pub fn counts(&self) -> Result<(usize, usize), OutboxError> {
        let items = self.items()?;
        let parked = items
            .iter()
            .filter(|i| matches!(i.state, State::Parked { .. }))
            .count();
        Ok((items.len() - parked, parked))
    }

    /// A sign-in to `org` happened: the queue resumes for its own org (or for any org when
    /// `send_here`, which hands it over); queued Tasks of another org are never sent unasked.
    pub fn adopt_sign_in(&self, org: &str, send_here: bool) -> Result<Adoption, OutboxError> {
        let (pending, parked) = self.counts()?;
        let queued = pending + parked;
        match self.org()? {
            Some(q) if q != org && queued > 0 && !send_here => {
                let why = format!("{queued} Task(s) are queued for org {q}, but you signed in to org {org}: they are not sent. Sign in to {q} again, or run `callsync connect --send-queue-here` to send them to this org.");
                self.set_paused(Some(&why))?;
                Ok(Adoption::Held { why })
            }
            _ => {
                if send_here {
                    self.set_org(org)?;
                }
                self.set_paused(None)?;
                Ok(Adoption::Resumed { queued })
            }
        }
    }

    /// A call in progress (what its events said so far), kept across restarts.
    pub fn call(&self, call_id: &str) -> Result<Option<CallRecord>, OutboxError> {
        Ok(self
            .calls
            .get(call_id.as_bytes())
            .map_err(self.st())?
            .and_then(|v| decode(&v)))
    }

    pub fn put_call(&self, call: &CallRecord) -> Result<(), OutboxError> {
        self.calls
            .insert(call.summary.call_id.as_bytes(), encode(call))
            .map_err(self.st())?;
        Ok(())
    }

    /// Why sending is paused (after `disconnect`), if it is.
    pub fn paused(&self) -> Result<Option<String>, OutboxError> {
        self.meta(META_PAUSED).map(|v| v.filter(|s| !s.is_empty()))
    }

    pub fn set_paused(&self, why: Option<&str>) -> Result<(), OutboxError> {
        self.set_meta(META_PAUSED, why.unwrap_or(""))?;
        self.flush()
    }

    /// The org the queue belongs to (set at the first send).
    pub fn org(&self) -> Result<Option<String>, OutboxError> {
        self.meta(META_ORG)
    }

    /// Hands the queue to another org (an explicit decision of the user).
    pub fn set_org(&self, org: &str) -> Result<(), OutboxError> {
        self.set_meta(META_ORG, org)?;
        self.flush()
    }

    /// Small key/value state (the org the queue belongs to, …).
    pub fn meta(&self, key: &str) -> Result<Option<String>, OutboxError> {
        Ok(self
            .meta
            .get(key.as_bytes())
            .map_err(self.st())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), OutboxError> {
        self.meta
            .insert(key.as_bytes(), value.as_bytes())
            .map_err(self.st())?;
        Ok(())
    }
}

/// A call's summary plus what has been queued for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub summary: crate::activity::CallSummary,
    /// A create was queued (at the beginning or at the end).
    pub created: bool,
    pub ended: bool,
}

/// What [`Outbox::adopt_sign_in`] did with the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Sending (again): `queued` Tasks will go to the org signed in to.
    Resumed { queued: usize },
    /// Paused: the queue belongs to another org (`why` says what to do).
    Held { why: String },
}

/// What a Salesforce error code means for the admin, and what fixes it.
pub fn explain(code: &str, message: &str, fields: &[String]) -> (String, String) {
    let f = if fields.is_empty() {
        String::new()
    } else {
        format!(" (field {})", fields.join(", "))
    };
    let (e, fix): (String, &str) = match code {
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" => (
            format!("a picklist value is not allowed{f}: {message}"),
            "Add the value to the Task field's picklist in Setup, or change the value callsync writes (status, templates), then run `callsync queue retry`.",
        ),
        "FIELD_CUSTOM_VALIDATION_EXCEPTION" => (
            format!("a validation rule on Task refused it: {message}"),
            "Ask the Salesforce admin to let callsync's Tasks pass the rule (or change the setting it trips on), then `callsync queue retry`.",
        ),
        "INVALID_FIELD" | "INVALID_FIELD_FOR_INSERT_UPDATE" => (
            format!("a configured Task field does not exist or is not writable{f}: {message}"),
            "Create the field or grant field-level edit access to the integration user, or remove it from the activity settings, then `callsync queue retry`.",
        ),
        "INSUFFICIENT_ACCESS_OR_READONLY" | "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY" => (
            format!("no access{f}: {message}"),
            "Give the user Create on Task and access to the related record, then `callsync queue retry`.",
        ),
        "ENTITY_IS_DELETED" | "FIELD_INTEGRITY_EXCEPTION" | "MALFORMED_ID" => (
            format!("the related record is deleted or of the wrong kind{f}: {message}"),
            "The caller's record changed in Salesforce; after the next sync, `callsync queue retry` attaches the Task to the current match.",
        ),
        "STRING_TOO_LONG" => (
            format!("a value is too long{f}: {message}"),
            "Shorten the template, then `callsync queue retry`.",
        ),
        "REQUIRED_FIELD_MISSING" => (
            format!("a required Task field is empty{f}: {message}"),
            "Set it in the activity settings (status, templates), then `callsync queue retry`.",
        ),
        _ => (
            format!("{code}: {message}"),
            "See the message; after fixing the cause run `callsync queue retry`.",
        ),
    };
    (e, fix.to_owned())
}

/// Fields in a JSON object form, for a request body.
pub fn body(fields: &Fields) -> Value {
    Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Pure: the backoff before attempt `n` (1-based), with ±20 % jitter from `r` in [0, 1).
pub fn backoff_ms(n: u32, r: f64) -> i64 {
    let base = 1_000f64 * 2f64.powi(n.saturating_sub(1).min(12) as i32);
    let capped = base.min(15.0 * 60_000.0);
    (capped * (0.8 + 0.4 * r.clamp(0.0, 1.0))) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(k: &str, v: &str) -> Fields {
        [(k.to_string(), json!(v))].into()
    }

    #[test]
    fn enqueue_merge_order_park_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("outbox");
        {
            let o = Outbox::open(&path).unwrap();
            o.enqueue("c1", Op::Create, f("Subject", "a")).unwrap();
            o.enqueue("c2", Op::Create, f("Subject", "b")).unwrap();
            // Merged into c1's queued create.
            o.enqueue("c1", Op::Update, f("Description", "memo"))
                .unwrap();
            let items = o.items().unwrap();
            assert_eq!(items.len(), 2);
            assert_eq!(items[0].fields["Description"], "memo");
            // One item per call is due at a time.
            let mut first = o.due(0, 10).unwrap();
            assert_eq!(first.len(), 2);
            o.done(&first[0], Some("00T000000000001AAA")).unwrap();
            // Now an update for c1 is its own item (the create is gone).
            o.enqueue("c1", Op::Update, f("Description", "edited"))
                .unwrap();
            assert_eq!(
                o.task_id("c1").unwrap().as_deref(),
                Some("00T000000000001AAA")
            );
            // Park c2.
            first[1].state = State::Parked {
                code: "X".into(),
                message: "m".into(),
                explanation: "e".into(),
                fix: "f".into(),
            };
            o.put(&first[1]).unwrap();
            o.flush().unwrap();
        }
        // A restart (here: reopen) finds everything.
        let o = Outbox::open(&path).unwrap();
        assert_eq!(o.counts().unwrap(), (1, 1));
        assert_eq!(o.due(0, 10).unwrap().len(), 1);
        assert_eq!(o.retry(None).unwrap(), 1);
        assert_eq!(o.counts().unwrap(), (2, 0));
        // A second process cannot open it.
        assert!(matches!(Outbox::open(&path), Err(OutboxError::Locked(_))));
    }

    #[test]
    fn a_create_queued_twice_is_one_create_and_after_sending_an_update() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(&d.path().join("outbox")).unwrap();
        o.enqueue("c1", Op::Create, f("Subject", "a")).unwrap();
        o.enqueue("c1", Op::Create, f("Subject", "a2")).unwrap();
        let items = o.items().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].fields["Subject"], "a2");
        o.done(&items[0], Some("00T000000000001AAA")).unwrap();
        // The same create delivered again after the Task exists: an update, not a second Task.
        o.enqueue("c1", Op::Create, f("Subject", "a3")).unwrap();
        let items = o.items().unwrap();
        assert_eq!((items.len(), items[0].op), (1, Op::Update));
    }

    #[test]
    fn backoff_table() {
        assert_eq!(backoff_ms(1, 0.5), 1_000);
        assert_eq!(backoff_ms(2, 0.5), 2_000);
        assert_eq!(backoff_ms(5, 0.5), 16_000);
        assert_eq!(backoff_ms(30, 0.5), 900_000);
        assert_eq!(backoff_ms(1, 0.0), 800);
        assert_eq!(backoff_ms(1, 0.999_999), 1_199);
    }

    #[test]
    fn explanations_name_the_fix() {
        let (e, fix) = explain(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "Call Type: bad value",
            &["CallType".into()],
        );
        assert!(e.contains("CallType") && fix.contains("queue retry"));
    }
}

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
}

/// Delivers due outbox items to Salesforce.
pub struct Sender<'a> {
    pub client: &'a crate::salesforce::Client,
    pub outbox: &'a Outbox,
    /// The Task's unique external-id field holding the call id (recommended), e.g. `Call_Id__c`.
    pub external_id: Option<String>,
    /// The Event's external-id field holding the meeting id.
    pub event_external_id: Option<String>,
    pub errors: Option<&'a crate::errorlog::ErrorLog>,
}

/// The kind of write one Collections request makes.
#[derive(Clone, Copy)]
enum Write<'a> {
    /// On the external-id field holding the call id.
    Upsert(&'a str),
    Create,
    Update,
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

fn soql_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

impl Sender<'_> {
    /// One pass over what is due now; returns what happened. Several due items go in sObject
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
        // Meetings are rare: their Events go one by one, after the Tasks.
        let (events, due): (Vec<Item>, Vec<Item>) = self
            .outbox
            .due(now, 2_000)?
            .into_iter()
            .partition(|i| i.object == SObject::Event);
        let mut report = if due.len() >= 2 {
            let mut report = SendReport::default();
            for chunk in due.chunks(200) {
                self.send_collection(chunk.to_vec(), now, &mut report)
                    .await?;
                if report.stopped.is_some() {
                    break;
                }
            }
            self.outbox.flush()?;
            report
        } else {
            self.send_each(due, now).await?
        };
        if report.stopped.is_none() && !events.is_empty() {
            let r = self.send_each(events, now).await?;
            report.sent += r.sent;
            report.retried_later += r.retried_later;
            report.parked += r.parked;
            report.stopped = r.stopped;
            report.last_error = r.last_error.or(report.last_error);
        }
        Ok(report)
    }

    async fn send_each(&self, due: Vec<Item>, now: i64) -> Result<SendReport, OutboxError> {
        let mut report = SendReport::default();
        let mut rng = fastrand::Rng::new();
        for mut item in due {
            if self.external_id_for(item.object).is_none()
                && item.op == Op::Create
                && !item.maybe_sent
            {
                // Write the intent first: if the process dies with this create in flight, the
                // next attempt looks for the Task before creating another.
                item.maybe_sent = true;
                self.outbox.put(&item)?;
                self.outbox.flush()?;
                item.maybe_sent = false;
            }
            let outcome = self.send_one(&item).await;
            self.settle(item, outcome, now, &mut rng, &mut report)?;
            if report.stopped.is_some() {
                break;
            }
        }
        self.outbox.flush()?;
        Ok(report)
    }

    /// Applies one item's outcome to the store and the report.
    fn settle(
        &self,
        mut item: Item,
        outcome: Outcome,
        now: i64,
        rng: &mut fastrand::Rng,
        report: &mut SendReport,
    ) -> Result<(), OutboxError> {
        match outcome {
            Outcome::Done(id) => {
                self.outbox.done(&item, id.as_deref())?;
                report.sent += 1;
            }
            Outcome::Retry {
                maybe_sent,
                long,
                why,
            } => {
                item.attempts += 1;
                item.maybe_sent |= maybe_sent;
                item.last_error = Some(why);
                item.not_before = now
                    + if long {
                        15 * 60_000
                    } else {
                        backoff_ms(item.attempts, rng.f64())
                    };
                self.outbox.put(&item)?;
                report.retried_later += 1;
                if long {
                    report.stopped =
                        Some("the org's API limit is exhausted; sending pauses".into());
                }
            }
            Outcome::Park(code, message, fields) => {
                let (explanation, fix) = explain(&code, &message, &fields);
                if let Some(log) = self.errors {
                    let _ = log.append(&crate::errorlog::ErrorEntry::now(
                        "salesforce",
                        format!("call {}", item.call_id),
                        format!(
                            "{} {:?} parked: {explanation}. Fix: {fix}",
                            item.object.api_name(),
                            item.op
                        ),
                    ));
                }
                item.state = State::Parked {
                    code,
                    message,
                    explanation,
                    fix,
                };
                self.outbox.put(&item)?;
                report.parked += 1;
            }
            Outcome::Stop(why) => report.stopped = Some(why),
        }
        Ok(())
    }

    /// Up to 200 items in one Collections request.
    async fn send_collection(
        &self,
        mut items: Vec<Item>,
        now: i64,
        report: &mut SendReport,
    ) -> Result<(), OutboxError> {
        use reqwest::Method;
        let mut rng = fastrand::Rng::new();
        // Without an upsert key, creates that may have landed are looked up first, in one query.
        if self.external_id.is_none() {
            let unsure: Vec<&str> = items
                .iter()
                .filter(|i| i.op == Op::Create && i.maybe_sent)
                .map(|i| i.call_id.as_str())
                .collect();
            if !unsure.is_empty() {
                let list = unsure
                    .iter()
                    .map(|c| format!("'{}'", soql_quote(c)))
                    .collect::<Vec<_>>()
                    .join(",");
                let q = format!("SELECT Id, CallObject FROM Task WHERE CallObject IN ({list})");
                match self.client.query(&q, false).await {
                    Ok(page) => {
                        let found: BTreeMap<String, String> = page
                            .records
                            .iter()
                            .filter_map(|r| {
                                Some((
                                    r["CallObject"].as_str()?.to_owned(),
                                    r["Id"].as_str()?.to_owned(),
                                ))
                            })
                            .collect();
                        let mut rest = Vec::new();
                        for item in items {
                            match found.get(&item.call_id).filter(|_| item.op == Op::Create) {
                                Some(id) => {
                                    let id = id.clone();
                                    self.settle(
                                        item,
                                        Outcome::Done(Some(id)),
                                        now,
                                        &mut rng,
                                        report,
                                    )?
                                }
                                None => rest.push(item),
                            }
                        }
                        items = rest;
                    }
                    Err(e) => {
                        for item in items {
                            let o = self.classify(e.clone(), false);
                            self.settle(item, o, now, &mut rng, report)?;
                        }
                        return Ok(());
                    }
                }
            }
            // Write the intent for every create in the request before sending it.
            for item in items.iter_mut().filter(|i| i.op == Op::Create) {
                if !item.maybe_sent {
                    item.maybe_sent = true;
                    self.outbox.put(item)?;
                    item.maybe_sent = false;
                }
            }
            self.outbox.flush()?;
        }
        // Build the request(s): one per kind of write.
        let groups = match &self.external_id {
            Some(ext) => vec![(Write::Upsert(ext), items)],
            None => {
                let (c, u): (Vec<Item>, Vec<Item>) =
                    items.into_iter().partition(|i| i.op == Op::Create);
                vec![(Write::Create, c), (Write::Update, u)]
            }
        };
        for (kind, group) in groups {
            if group.is_empty() {
                continue;
            }
            let mut records = Vec::new();
            let mut sendable = Vec::new();
            for item in group {
                let mut f = item.fields.clone();
                if item.op == Op::Update {
                    f.remove("TaskSubtype");
                }
                let mut rec = body(&f);
                rec["attributes"] = serde_json::json!({"type": "Task"});
                match kind {
                    Write::Upsert(ext) => rec[ext] = Value::String(item.call_id.clone()),
                    Write::Create => {}
                    Write::Update => match self.outbox.task_id(&item.call_id)? {
                        Some(id) => rec["Id"] = Value::String(id),
                        None => {
                            // No Task known: the single path looks it up by CallObject.
                            let o = self.send_one(&item).await;
                            self.settle(item, o, now, &mut rng, report)?;
                            continue;
                        }
                    },
                }
                records.push(rec);
                sendable.push(item);
            }
            if sendable.is_empty() {
                continue;
            }
            let (method, path) = match kind {
                Write::Upsert(ext) => (Method::PATCH, format!("/composite/sobjects/Task/{ext}")),
                Write::Create => (Method::POST, "/composite/sobjects".to_owned()),
                Write::Update => (Method::PATCH, "/composite/sobjects".to_owned()),
            };
            let req = serde_json::json!({"allOrNone": false, "records": records});
            match self
                .client
                .send(method, &self.client.data_path(&path), Some(&req))
                .await
            {
                Ok((_, Some(Value::Array(results)))) if results.len() == sendable.len() => {
                    for (item, r) in sendable.into_iter().zip(results) {
                        let o = if r["success"] == Value::Bool(true) {
                            let id = r["id"]
                                .as_str()
                                .map(str::to_owned)
                                .or_else(|| self.outbox.task_id(&item.call_id).ok().flatten());
                            Outcome::Done(id)
                        } else {
                            let err = crate::salesforce::error_entry(400, &r["errors"][0]);
                            self.classify(err, false)
                        };
                        self.settle(item, o, now, &mut rng, report)?;
                    }
                }
                Ok(_) => {
                    for item in sendable {
                        let o = Outcome::Retry {
                            maybe_sent: item.op == Op::Create,
                            long: false,
                            why: "unexpected Collections answer".into(),
                        };
                        self.settle(item, o, now, &mut rng, report)?;
                    }
                }
                Err(e) => {
                    for item in sendable {
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

    fn classify(&self, e: crate::salesforce::SfError, creating: bool) -> Outcome {
        use crate::salesforce::SfError;
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
        }
    }

    /// The record already written for an item whose write may have landed: a Task by its
    /// `CallObject`, an Event by its Subject and start.
    async fn find_existing(
        &self,
        item: &Item,
    ) -> Result<Option<String>, crate::salesforce::SfError> {
        let q = match item.object {
            SObject::Task => format!(
                "SELECT Id FROM Task WHERE CallObject = '{}' LIMIT 1",
                soql_quote(&item.call_id)
            ),
            SObject::Event => {
                let text = |k: &str| item.fields.get(k).and_then(Value::as_str).unwrap_or("");
                format!(
                    "SELECT Id FROM Event WHERE Subject = '{}' AND StartDateTime = {} LIMIT 1",
                    soql_quote(text("Subject")),
                    text("StartDateTime")
                )
            }
        };
        let page = self.client.query(&q, false).await?;
        Ok(page
            .records
            .first()
            .and_then(|r| r["Id"].as_str())
            .map(str::to_owned))
    }

    async fn send_one(&self, item: &Item) -> Outcome {
        use reqwest::Method;
        let creating = item.op == Op::Create;
        let object = item.object.api_name();
        let mut fields = item.fields.clone();
        if item.op == Op::Update {
            // Set once at creation (and not updateable).
            fields.remove("TaskSubtype");
        }
        let result = match (self.external_id_for(item.object), item.op) {
            // Upsert on the call id: sending twice is harmless.
            (Some(ext), _) => {
                fields.remove(ext);
                let path = self.client.data_path(&format!(
                    "/sobjects/{object}/{ext}/{}",
                    urlencode(&item.call_id)
                ));
                self.client
                    .send(Method::PATCH, &path, Some(&body(&fields)))
                    .await
                    .map(|(_, v)| v.and_then(|v| v["id"].as_str().map(str::to_owned)))
            }
            (None, Op::Create) => {
                if item.maybe_sent {
                    match self.find_existing(item).await {
                        Ok(Some(id)) => return Outcome::Done(Some(id)),
                        Ok(None) => {}
                        Err(e) => return self.classify(e, false),
                    }
                }
                let path = self.client.data_path(&format!("/sobjects/{object}"));
                self.client
                    .send(Method::POST, &path, Some(&body(&fields)))
                    .await
                    .map(|(_, v)| v.and_then(|v| v["id"].as_str().map(str::to_owned)))
            }
            (None, Op::Update) => {
                let id = match self.outbox.record_id(item.object, &item.call_id) {
                    Ok(Some(id)) => Some(id),
                    _ => match self.find_existing(item).await {
                        Ok(id) => id,
                        Err(e) => return self.classify(e, false),
                    },
                };
                let Some(id) = id else {
                    return Outcome::Park(
                        "TASK_NOT_FOUND".into(),
                        format!("no {object} for {} to update", item.call_id),
                        Vec::new(),
                    );
                };
                let path = self.client.data_path(&format!("/sobjects/{object}/{id}"));
                self.client
                    .send(Method::PATCH, &path, Some(&body(&fields)))
                    .await
                    .map(|_| Some(id))
            }
        };
        match result {
            Ok(id) => Outcome::Done(id),
            Err(e) => self.classify(e, creating),
        }
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
