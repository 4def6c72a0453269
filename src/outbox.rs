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
            queued_at: crate::record::format_sf_datetime(chrono::Utc::now()),
            attempts: 0,
            not_before: 0,
            maybe_sent: false,
            state: State::Pending,
            last_error: None,
            rev: 0,
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
    pub fn pause_state(&self) -> Result<Option<Pause>, OutboxError> {
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
        (Op::Update, _, None) => Write::Find,
        (Op::Create, _, _) if item.maybe_sent && found.is_none() => Write::Find,
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

use crate::salesforce::{soql_quote, SfError, WriteRules};

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
        // Meetings are rare: their Events go one by one, after the Tasks.
        let (events, due): (Vec<Item>, Vec<Item>) = self
            .outbox
            .due(now, 2_000)?
            .into_iter()
            .partition(|i| i.object == SObject::Event);
        let mut report = SendReport::default();
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
                            let err = crate::salesforce::error_entry(400, &r["errors"][0]);
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
        }
    }

    /// The record already written for an item: by its external id, else a Task by its
    /// `CallObject` and an Event by its Subject and start.
    async fn find_existing(&self, item: &Item) -> Result<Option<String>, SfError> {
        if self.external_id_for(item.object).is_some() || item.object == SObject::Task {
            return Ok(self
                .lookup(item.object, &[item.call_id.as_str()])
                .await?
                .remove(&item.call_id));
        }
        let text = |k: &str| item.fields.get(k).and_then(Value::as_str).unwrap_or("");
        let Some(start) = crate::record::parse_sf_datetime(text("StartDateTime")) else {
            return Ok(None);
        };
        let q = format!(
            "SELECT Id FROM Event WHERE Subject = '{}' AND StartDateTime = {} LIMIT 1",
            soql_quote(text("Subject")),
            crate::salesforce::soql_datetime(start)
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
            fields: Fields::new(),
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
