//! The outbox: every Task create/update waits here, on disk, before any network call, and
//! leaves only when Salesforce has it. Its own sled store (the record cache is disposable; this
//! is not), fsynced on every enqueue so that the call-log position is acknowledged only after
//! the work is durable.
//!
//! Exactly once: a create carries the call id, which becomes an upsert key (`Call_Id__c`) when
//! the org has one, or is looked up by `CallObject` before a create that may already have
//! landed is sent again. An update for a call whose create is still queued is merged into it.
//! The Lead or Contact made for an unknown caller is an item too, keyed by the number (one per
//! number), and the Tasks that name it wait for its Id.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sled::Transactional;

use callsync_core::activity::{CallRecord, Fields};

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
    /// A Lead created for an unknown caller (`activity.unknown_caller`), keyed by the number.
    Lead,
    /// A Contact created for an unknown caller, keyed by the number.
    Contact,
}

impl SObject {
    pub fn api_name(self) -> &'static str {
        match self {
            SObject::Task => "Task",
            SObject::Event => "Event",
            SObject::Lead => "Lead",
            SObject::Contact => "Contact",
        }
    }

    /// A record created for an unknown caller (its Task waits for its Id).
    pub fn is_caller_record(self) -> bool {
        matches!(self, SObject::Lead | SObject::Contact)
    }

    /// Store key for a call or meeting id (or a number): Tasks keep the bare id (the format
    /// before Events).
    fn key(self, id: &str) -> Vec<u8> {
        match self {
            SObject::Task => id.as_bytes().to_vec(),
            other => format!("{}:{id}", other.api_name()).into_bytes(),
        }
    }

    /// A Task field naming a record not created yet: `@Lead:+81312345678`, resolved to its Id
    /// when that record is written.
    pub fn placeholder(self, id: &str) -> String {
        format!("@{}:{id}", self.api_name())
    }

    /// The record a placeholder names.
    pub fn parse_placeholder(v: &str) -> Option<(SObject, &str)> {
        let (object, id) = v.strip_prefix('@')?.split_once(':')?;
        let object = match object {
            "Lead" => SObject::Lead,
            "Contact" => SObject::Contact,
            _ => return None,
        };
        Some((object, id))
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
    /// Bumped whenever fields are merged in: a sender settles an item only for the revision it
    /// sent, so a memo merged during a send is never dropped with it.
    #[serde(default)]
    pub rev: u64,
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
    /// Held while a call's record is read, changed and written back (the pipeline folding an
    /// event, an agent's pick): neither may write back a record missing the other's change.
    calls_lock: std::sync::Mutex<()>,
    _lock: callsync_fs::FileLock,
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
        let lock_path = crate::lock_path(dir, "outbox");
        let lock = callsync_fs::FileLock::try_acquire(&lock_path).map_err(|e| match e {
            callsync_fs::LockError::Held => OutboxError::Locked(dir.to_owned()),
            callsync_fs::LockError::Io(source) => OutboxError::Lock {
                path: lock_path.clone(),
                source,
            },
        })?;
        let st = |source| OutboxError::Storage {
            path: dir.to_owned(),
            source,
        };
        let db = crate::open_sled(|| {
            sled::Config::new()
                .path(dir)
                .cache_capacity(8 << 20)
                // Every durable step flushes explicitly; sled's periodic flusher would only
                // wake the idle agent (its 500 ms default: twice a second).
                .flush_every_ms(None)
                .open()
        })
        .map_err(st)?;
        Ok(Outbox {
            items: db.open_tree(T_ITEMS).map_err(st)?,
            tasks: db.open_tree(T_TASKS).map_err(st)?,
            meta: db.open_tree(T_META).map_err(st)?,
            calls: db.open_tree(T_CALLS).map_err(st)?,
            creates: db.open_tree(T_CREATES).map_err(st)?,
            db,
            path: dir.to_owned(),
            calls_lock: std::sync::Mutex::new(()),
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
            // Merged into the queued create while it is there (even while it is being sent:
            // the sender then sends the merged fields as an update).
            let mut merged = false;
            self.update(seq, |cur| {
                merged = false;
                let mut item = cur?;
                if op == Op::Create || item.state == State::Pending {
                    for (k, v) in &fields {
                        item.fields.insert(k.clone(), v.clone());
                    }
                    item.rev += 1;
                    merged = true;
                }
                Some(item)
            })?;
            if merged {
                self.flush()?;
                return Ok(seq);
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
            queued_at: callsync_core::record::format_sf_datetime(chrono::Utc::now()),
            attempts: 0,
            not_before: 0,
            maybe_sent: false,
            state: State::Pending,
            last_error: None,
            rev: 0,
        };
        // The item and its place in the create index in one transaction: a kill between the
        // two left a create the index did not know, so the call's re-delivered events queued a
        // second create (two Tasks without the external id).
        let value = encode(&item);
        let create_key = (op == Op::Create).then(|| object.key(call_id));
        (&self.items, &self.creates)
            .transaction(|(items, creates)| {
                items.insert(&seq.to_be_bytes(), value.as_slice())?;
                if let Some(k) = &create_key {
                    creates.insert(k.as_slice(), &seq.to_be_bytes())?;
                }
                Ok(())
            })
            .map_err(
                |e: sled::transaction::TransactionError<std::convert::Infallible>| match e {
                    sled::transaction::TransactionError::Storage(e) => e,
                    sled::transaction::TransactionError::Abort(never) => match never {},
                },
            )
            .map_err(self.st())?;
        self.flush()?;
        Ok(seq)
    }

    /// The placeholders queued items still name (records for unknown callers that a Task
    /// waits for), in one scan.
    pub fn placeholders(&self) -> Result<std::collections::HashSet<String>, OutboxError> {
        Ok(self
            .items()?
            .iter()
            .flat_map(|i| i.fields.values())
            .filter_map(|v| v.as_str())
            .filter(|v| SObject::parse_placeholder(v).is_some())
            .map(str::to_owned)
            .collect())
    }

    /// The create queued for `id`, if one is (pending or parked).
    pub fn queued_create_item(
        &self,
        object: SObject,
        id: &str,
    ) -> Result<Option<Item>, OutboxError> {
        let Some(seq) = self.queued_create(object, id)? else {
            return Ok(None);
        };
        Ok(self
            .items
            .get(seq.to_be_bytes())
            .map_err(self.st())?
            .and_then(|v| decode(&v)))
    }

    fn queued_create(&self, object: SObject, call_id: &str) -> Result<Option<u64>, OutboxError> {
        Ok(self
            .creates
            .get(object.key(call_id))
            .map_err(self.st())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
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

    /// Changes one item atomically against concurrent merges: `f` gets the stored item (or
    /// `None`) and returns what to store (`None` removes it); sled runs it again if another
    /// writer got there first. Returns what was stored.
    pub fn update(
        &self,
        seq: u64,
        mut f: impl FnMut(Option<Item>) -> Option<Item>,
    ) -> Result<Option<Item>, OutboxError> {
        let out = self
            .items
            .update_and_fetch(seq.to_be_bytes(), |cur| {
                let item = cur.and_then(decode::<Item>);
                f(item).map(|i| encode(&i))
            })
            .map_err(self.st())?;
        Ok(out.and_then(|b| decode(&b)))
    }

    /// Salesforce has `sent`: the item leaves, the record's Id is remembered for later updates.
    /// If fields were merged into the item while it was being sent (a memo racing the create),
    /// it stays as an update of just those fields, in its place in the call's order.
    pub fn done(&self, sent: &Item, task_id: Option<&str>) -> Result<(), OutboxError> {
        let key = sent.object.key(&sent.call_id);
        if let Some(id) = task_id {
            self.tasks.insert(&key, id.as_bytes()).map_err(self.st())?;
        }
        self.update(sent.seq, |cur| {
            let cur = cur?;
            if cur.rev == sent.rev {
                return None;
            }
            let changed: Fields = cur
                .fields
                .iter()
                .filter(|(k, v)| sent.fields.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!changed.is_empty()).then(|| Item {
                op: Op::Update,
                fields: changed,
                attempts: 0,
                not_before: 0,
                maybe_sent: false,
                state: State::Pending,
                last_error: None,
                rev: cur.rev + 1,
                ..cur
            })
        })?;
        if sent.op == Op::Create {
            // The create is done: later writes for the call are updates.
            let _ = self
                .creates
                .compare_and_swap(&key, Some(&sent.seq.to_be_bytes()[..]), None::<&[u8]>)
                .map_err(self.st())?;
        }
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
        for item in self.items()? {
            if seq.is_some_and(|s| s != item.seq) || matches!(item.state, State::Pending) {
                continue;
            }
            self.update(item.seq, |cur| {
                let mut i = cur?;
                i.state = State::Pending;
                i.not_before = 0;
                i.attempts = 0;
                Some(i)
            })?;
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
    /// A pause the user chose (the tray's "Pause sending") stays.
    pub fn adopt_sign_in(&self, org: &str, send_here: bool) -> Result<Adoption, OutboxError> {
        let (pending, parked) = self.counts()?;
        let queued = pending + parked;
        match self.org()? {
            Some(q) if q != org && queued > 0 && !send_here => {
                let why = format!("{queued} Task(s) are queued for org {q}, but you signed in to org {org}: they are not sent. Sign in to {q} again, or run `callsync connect --send-queue-here` to send them to this org.");
                self.pause(PauseKind::OtherOrg, &why)?;
                Ok(Adoption::Held { why })
            }
            q => {
                if send_here || q.as_deref() != Some(org) {
                    // An empty queue (or one handed over) belongs to the org signed in to now.
                    self.set_org(org)?;
                }
                match self.pause_state()? {
                    Some(p) if p.kind == PauseKind::User => Ok(Adoption::UserPaused { why: p.why }),
                    _ => {
                        self.resume()?;
                        Ok(Adoption::Resumed { queued })
                    }
                }
            }
        }
    }

    /// Take this around reading a call's record, changing it and writing it back.
    pub fn lock_calls(&self) -> std::sync::MutexGuard<'_, ()> {
        self.calls_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Why sending is paused (after `disconnect`, the tray's Pause, another org's queue).
    pub fn paused(&self) -> Result<Option<String>, OutboxError> {
        Ok(self.pause_state()?.map(|p| p.why))
    }

    /// Whether and why sending is paused, and who paused it.
    pub(crate) fn pause_state(&self) -> Result<Option<Pause>, OutboxError> {
        let Some(v) = self.meta(META_PAUSED)?.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(&v).unwrap_or_else(|_| {
            // Written as plain text before pauses had a kind.
            let kind = if v.contains("tray menu") {
                PauseKind::User
            } else {
                PauseKind::SignedOut
            };
            Pause { kind, why: v }
        })))
    }

    pub fn pause(&self, kind: PauseKind, why: &str) -> Result<(), OutboxError> {
        let p = Pause {
            kind,
            why: why.to_owned(),
        };
        self.set_meta(META_PAUSED, &serde_json::to_string(&p).unwrap_or_default())?;
        self.flush()
    }

    pub fn resume(&self) -> Result<(), OutboxError> {
        self.set_meta(META_PAUSED, "")?;
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

    pub(crate) fn set_meta(&self, key: &str, value: &str) -> Result<(), OutboxError> {
        self.meta
            .insert(key.as_bytes(), value.as_bytes())
            .map_err(self.st())?;
        Ok(())
    }
}

/// What [`Outbox::adopt_sign_in`] did with the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "queue", rename_all = "snake_case")]
pub enum Adoption {
    /// Sending (again): `queued` Tasks will go to the org signed in to.
    Resumed { queued: usize },
    /// Paused: the queue belongs to another org (`why` says what to do).
    Held { why: String },
    /// Still paused because the user paused sending (the tray's "Resume sending" ends it).
    UserPaused { why: String },
}

/// Who paused sending: the user resumes their own pause; a sign-in ends a sign-out's; another
/// org's queue waits for the user's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseKind {
    User,
    SignedOut,
    OtherOrg,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub kind: PauseKind,
    pub why: String,
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
