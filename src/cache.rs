//! The local, persistent record cache on sled: records by Id, a phone index, counters and sync
//! state, all in one sled tree under one-byte key prefixes so that a batch that upserts records,
//! fixes their index entries and moves a sync watermark commits atomically (sled batches are
//! atomic per tree; cross-tree transactions measured 30 % slower).
//!
//! Key layout:
//! - `r` Id → record (versioned envelope)
//! - `p` number-key `\0` Id `\0` field → index entry: everything a lookup shows, so a lookup is
//!   one prefix scan with no record reads
//! - `c` name → u64 counter (records per object, index entries)
//! - `w` name → sync state owned by the sync engine (watermarks)
//! - `m` name → metadata (formats, repair flags)
//!
//! The cache is a copy of Salesforce: whatever goes wrong with it (a sled `Corruption` after a
//! crash, an undecodable value, a format from another version) is repaired by rebuilding, never
//! fatal.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::phone::PhoneKey;
use crate::record::{CachedRecord, ObjectKind, RecordId};

const P_RECORD: u8 = b'r';
const P_INDEX: u8 = b'p';
const P_COUNT: u8 = b'c';
const P_STATE: u8 = b'w';
const P_META: u8 = b'm';

/// Envelope format bytes. Bump `RECORD_FORMAT` when `CachedRecord` changes shape (the cache is
/// cleared and resynced); bump `INDEX_FORMAT` when `IndexEntry` does (the index is rebuilt from
/// the records, no network needed).
pub const RECORD_FORMAT: u8 = 1;
pub const INDEX_FORMAT: u8 = 1;

const META_RECORD_FORMAT: &str = "record_format";
const META_INDEX_FORMAT: &str = "index_format";
const META_NEEDS_REINDEX: &str = "needs_reindex";
const META_NEEDS_FULL_SYNC: &str = "needs_full_sync";
const META_ORG: &str = "org";
const META_KEYS: &str = "keys";
const COUNT_INDEX: &str = "index";
const REINDEX_BATCH: usize = 500;

/// What a lookup needs of a record, stored denormalized in each index entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub kind: ObjectKind,
    pub person_account: bool,
    pub last_modified: i64,
    pub name: String,
    /// Contact: `Account.Name`; Lead: `Company`.
    pub company: Option<String>,
    pub account_id: Option<RecordId>,
    pub person_contact_id: Option<RecordId>,
}

impl IndexEntry {
    /// The entry a record contributes under each of its numbers.
    pub fn of_record(r: &CachedRecord) -> IndexEntry {
        let company = match r.kind {
            ObjectKind::Contact => r.account_name.clone(),
            ObjectKind::Lead => r.company.clone(),
            ObjectKind::Account | ObjectKind::User => None,
        };
        IndexEntry {
            kind: r.kind,
            person_account: r.is_person_account,
            last_modified: r.last_modified,
            name: r.name.clone(),
            company,
            account_id: r.account_id.clone(),
            person_contact_id: r.person_contact_id.clone(),
        }
    }
}

/// An index entry on its way through the external sort, ordered by key.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct SortItem(Vec<u8>, Vec<u8>);

impl extsort::Sortable for SortItem {
    fn encode<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        for part in [&self.0, &self.1] {
            w.write_all(&(part.len() as u32).to_le_bytes())?;
            w.write_all(part)?;
        }
        Ok(())
    }

    fn decode<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let mut part = || -> std::io::Result<Vec<u8>> {
            let mut len = [0u8; 4];
            r.read_exact(&mut len)?;
            let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
            r.read_exact(&mut buf)?;
            Ok(buf)
        };
        Ok(SortItem(part()?, part()?))
    }
}

/// One index entry found under a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexHit {
    pub id: RecordId,
    pub field: String,
    pub entry: IndexEntry,
}

/// A change to apply to the cache.
#[derive(Clone, Debug)]
pub enum Change {
    Upsert(CachedRecord),
    Delete(RecordId),
}

impl Change {
    fn id(&self) -> &RecordId {
        match self {
            Change::Upsert(r) => &r.id,
            Change::Delete(id) => id,
        }
    }
}

#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// sled's page cache in bytes (it counts on-disk bytes; RSS runs higher).
    pub cache_capacity: u64,
    pub flush_every_ms: Option<u64>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            cache_capacity: 64 * 1024 * 1024,
            // Off: sled's flusher wakes even when nothing changed (about 1 ms of CPU a wake,
            // 0.27 s per 10 idle minutes at 5 s). Writers flush explicitly: imports and syncs
            // about once a second and at the end.
            flush_every_ms: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the cache at {0} is in use by another callsync process (is the agent running?)")]
    Locked(PathBuf),
    #[error("cache storage error at {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("cannot lock {path}: {source}")]
    LockFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no room to sort the phone index in {path}: {source}")]
    SortSpace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot move the damaged cache {path} aside: {source}")]
    MoveAside {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The cache holds another org's records: its people and Ids are no answer for this one.
    #[error("the cache holds the records of org {cached}, but you are signed in to org {signed_in}: they are not used; the next sync (`callsync sync`) replaces them")]
    OtherOrg { cached: String, signed_in: String },
}

/// What [`Cache::claim`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cache", rename_all = "snake_case")]
pub enum Claim {
    /// The cache already belonged to the org.
    Same,
    /// It held another org's records: they were dropped (the next sync loads this org).
    Switched { from: String },
    /// It was empty.
    New,
    /// It held records of an org it never recorded (a cache from before it did): kept, and the
    /// next sync is a full one, which removes whatever this org does not have.
    Adopted,
}

/// What `open` had to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The store could not be opened and was replaced by an empty one (reason, where the old
    /// files went).
    pub rebuilt: Option<(String, PathBuf)>,
    /// The records were from another format and were dropped (a full sync refills them).
    pub cleared: bool,
    /// The phone index was rebuilt from the records.
    pub reindexed: bool,
}

/// Counts and sizes for `callsync cache stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    pub records: BTreeMap<String, u64>,
    pub index_entries: u64,
    pub size_on_disk: u64,
    pub needs_full_sync: bool,
}

/// What one `apply` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub upserted: usize,
    pub deleted: usize,
}

/// A record's kind and the index keys it owns.
type IndexedAs = (ObjectKind, Vec<Vec<u8>>);

pub struct Cache {
    db: sled::Db,
    path: PathBuf,
    /// One writer at a time: `apply` reads old records to drop their index entries, and two
    /// interleaved batches could each miss the other's writes.
    writer: Mutex<()>,
    /// (the org the records belong to, the org lookups are for): lookups are refused when
    /// both are known and differ.
    orgs: std::sync::RwLock<(Option<String>, Option<String>)>,
    _lock: std::fs::File,
}

fn storage(path: &Path) -> impl Fn(sled::Error) -> CacheError + '_ {
    move |source| CacheError::Storage {
        path: path.to_owned(),
        source,
    }
}

/// sled reports its own flock failure as `ErrorKind::Other` with this text.
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().contains("could not acquire lock"))
}

/// Takes the cache's own exclusive lock (`<dir>.lock`, beside the store so that moving a
/// damaged store aside never moves the lock). Held for the life of the `Cache`: nothing may
/// repair, move or clear a store another process is using.
fn take_lock(dir: &Path) -> Result<std::fs::File, CacheError> {
    let name = format!(
        "{}.lock",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("cache")
    );
    let path = dir.with_file_name(name);
    if let Some(parent) = path.parent() {
        crate::fsutil::create_private_dir(parent).map_err(|source| CacheError::LockFile {
            path: path.clone(),
            source,
        })?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| CacheError::LockFile {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CacheError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(CacheError::LockFile { path, source }),
    }
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(rest.len() + 1);
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

fn encode<T: Serialize>(format: u8, value: &T) -> Vec<u8> {
    let mut out = vec![format];
    // Encoding plain data into a Vec cannot fail; an empty payload would only make the entry
    // undecodable, which every reader already treats as damage to repair.
    if let Ok(body) = bincode::serde::encode_to_vec(value, bincode::config::standard()) {
        out.extend_from_slice(&body);
    }
    out
}

fn decode<T: DeserializeOwned>(format: u8, bytes: &[u8]) -> Option<T> {
    let (&f, body) = bytes.split_first()?;
    if f != format {
        return None;
    }
    bincode::serde::decode_from_slice(body, bincode::config::standard())
        .ok()
        .map(|(v, _)| v)
}

/// `p` number `\0` Id `\0` field.
fn index_key(number: &PhoneKey, id: &RecordId, field: &str) -> Vec<u8> {
    let n = number.index_bytes();
    let mut k = Vec::with_capacity(n.len() + id.as_str().len() + field.len() + 3);
    k.push(P_INDEX);
    k.extend_from_slice(&n);
    k.push(0);
    k.extend_from_slice(id.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(field.as_bytes());
    k
}

fn index_entries(r: &CachedRecord) -> Vec<(Vec<u8>, Vec<u8>)> {
    if !r.is_indexed() {
        return Vec::new();
    }
    let mut keys: Vec<Vec<u8>> = r
        .phones
        .iter()
        .filter_map(|p| p.key.as_ref().map(|k| index_key(k, &r.id, &p.field)))
        .collect();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Vec::new();
    }
    let value = encode(INDEX_FORMAT, &IndexEntry::of_record(r));
    keys.into_iter().map(|k| (k, value.clone())).collect()
}

impl Cache {
    /// Opens (or creates) the cache in `dir`, repairing whatever stands in the way.
    pub fn open(dir: &Path, opts: &CacheOptions) -> Result<(Cache, OpenReport), CacheError> {
        let mut report = OpenReport::default();
        let lock = take_lock(dir)?;
        let db = match Self::open_db_retrying(dir, opts) {
            Ok(db) => db,
            Err(e) if is_lock_error(&e) => return Err(CacheError::Locked(dir.to_owned())),
            Err(e) => {
                let aside = move_aside(dir)?;
                warn!(error = %e, moved_to = %aside.display(), "cache could not be opened; starting an empty one");
                report.rebuilt = Some((e.to_string(), aside));
                Self::open_db(dir, opts).map_err(storage(dir))?
            }
        };
        let cache = Cache {
            db,
            path: dir.to_owned(),
            writer: Mutex::new(()),
            orgs: Default::default(),
            _lock: lock,
        };
        cache.check_formats(&mut report)?;
        let stored = cache.meta_text(META_ORG)?;
        cache.orgs_mut().0 = stored;
        if report.rebuilt.is_some() {
            cache.set_meta(META_NEEDS_FULL_SYNC, true)?;
        }
        Ok((cache, report))
    }

    /// With our own lock held, a sled lock error can only be a `Db` of this process that is
    /// still shutting down (sled's flusher thread outlives the handle for a moment): wait.
    fn open_db_retrying(dir: &Path, opts: &CacheOptions) -> sled::Result<sled::Db> {
        let mut attempt = 0;
        loop {
            match Self::open_db(dir, opts) {
                Err(e) if is_lock_error(&e) && attempt < 100 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_db(dir: &Path, opts: &CacheOptions) -> sled::Result<sled::Db> {
        sled::Config::new()
            .path(dir)
            .cache_capacity(opts.cache_capacity)
            .flush_every_ms(opts.flush_every_ms)
            .open()
    }

    fn check_formats(&self, report: &mut OpenReport) -> Result<(), CacheError> {
        let rf = self.meta_byte(META_RECORD_FORMAT)?;
        let fresh = self.db.is_empty();
        if rf != Some(RECORD_FORMAT) && !fresh {
            warn!(found = ?rf, want = RECORD_FORMAT, "cache records are in another format; clearing for a full sync");
            self.clear()?;
            report.cleared = true;
            self.set_meta(META_NEEDS_FULL_SYNC, true)?;
        }
        self.put_meta_byte(META_RECORD_FORMAT, RECORD_FORMAT)?;
        let idx = self.meta_byte(META_INDEX_FORMAT)?;
        let needs = self.meta_flag(META_NEEDS_REINDEX)?;
        if !fresh && !report.cleared && (idx != Some(INDEX_FORMAT) || needs) {
            self.reindex()?;
            report.reindexed = true;
        }
        self.put_meta_byte(META_INDEX_FORMAT, INDEX_FORMAT)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn orgs_mut(&self) -> std::sync::RwLockWriteGuard<'_, (Option<String>, Option<String>)> {
        self.orgs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The org whose records the cache holds (`None`: empty, or from before it was recorded).
    pub fn org(&self) -> Option<String> {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }

    /// Lookups answer for `org` (the one signed in to): if the cache holds another org's
    /// records, every lookup is refused with [`CacheError::OtherOrg`] until it is claimed.
    pub fn serve_org(&self, org: Option<&str>) {
        self.orgs_mut().1 = org.map(str::to_owned);
    }

    /// Makes the cache `org`'s: another org's records are dropped; lookups then answer for
    /// `org`. The sync engine claims before every sync and a sign-in claims at once, so no
    /// screen pop or Task ever names a record of the org signed out of.
    pub fn claim(&self, org: &str) -> Result<Claim, CacheError> {
        let _w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let claim = match self.meta_text(META_ORG)? {
            Some(o) if o == org => Claim::Same,
            Some(o) => {
                self.clear_locked()?;
                Claim::Switched { from: o }
            }
            None if self
                .db
                .iter()
                .keys()
                .any(|k| k.is_ok_and(|k| k.first() == Some(&P_RECORD))) =>
            {
                self.set_meta(META_NEEDS_FULL_SYNC, true)?;
                Claim::Adopted
            }
            None => Claim::New,
        };
        if claim != Claim::Same {
            self.db
                .insert(key(P_META, META_ORG.as_bytes()), org.as_bytes())
                .map_err(storage(&self.path))?;
            self.flush()?;
        }
        *self.orgs_mut() = (Some(org.to_owned()), Some(org.to_owned()));
        Ok(claim)
    }

    /// Makes every record's phone keys `normalizer`'s (from the numbers as typed) when they
    /// were made by other rules or for another region, then rebuilds the index: a lookup after
    /// an upgrade or a change of `phone.default_region` meets what the cache holds. Local work,
    /// no sync. Returns whether anything was rekeyed.
    pub fn rekey(&self, normalizer: &crate::phone::Normalizer) -> Result<bool, CacheError> {
        let want = normalizer.fingerprint();
        if self.meta_text(META_KEYS)?.as_deref() == Some(want.as_str()) {
            return Ok(false);
        }
        let has_records = self.db.scan_prefix([P_RECORD]).keys().next().is_some();
        if has_records {
            info!(rules = %want, "phone keys were made by other rules; making them again");
            let _w = self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for r in self.records() {
                let mut r = r?;
                for p in &mut r.phones {
                    *p = crate::record::StoredPhone::of(&p.field, &p.raw, normalizer);
                }
                batch.insert(
                    key(P_RECORD, r.id.as_str().as_bytes()),
                    encode(RECORD_FORMAT, &r),
                );
                n += 1;
                if n % REINDEX_BATCH == 0 {
                    self.db
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(storage(&self.path))?;
                }
            }
            self.db.apply_batch(batch).map_err(storage(&self.path))?;
        }
        if has_records {
            self.reindex()?;
        }
        self.db
            .insert(key(P_META, META_KEYS.as_bytes()), want.as_bytes())
            .map_err(storage(&self.path))?;
        self.flush()?;
        Ok(has_records)
    }

    fn meta_text(&self, name: &str) -> Result<Option<String>, CacheError> {
        Ok(self
            .db
            .get(key(P_META, name.as_bytes()))
            .map_err(storage(&self.path))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn check_org(&self) -> Result<(), CacheError> {
        let g = self
            .orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*g {
            (Some(cached), Some(signed_in)) if cached != signed_in => Err(CacheError::OtherOrg {
                cached: cached.clone(),
                signed_in: signed_in.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Every index entry under `number`: one prefix scan.
    pub fn hits(&self, number: &PhoneKey) -> Result<Vec<IndexHit>, CacheError> {
        self.check_org()?;
        let mut prefix = key(P_INDEX, &number.index_bytes());
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.db.scan_prefix(&prefix) {
            let (k, v) = item.map_err(storage(&self.path))?;
            let rest = &k[prefix.len()..];
            let parsed = rest.iter().position(|b| *b == 0).and_then(|sep| {
                let id = RecordId::parse(std::str::from_utf8(&rest[..sep]).ok()?)?;
                let field = std::str::from_utf8(&rest[sep + 1..]).ok()?.to_owned();
                let entry = decode::<IndexEntry>(INDEX_FORMAT, &v)?;
                Some(IndexHit { id, field, entry })
            });
            match parsed {
                Some(hit) => out.push(hit),
                None => self.flag_damage("undecodable index entry"),
            }
        }
        Ok(out)
    }

    pub fn get(&self, id: &RecordId) -> Result<Option<CachedRecord>, CacheError> {
        let raw = self
            .db
            .get(key(P_RECORD, id.as_str().as_bytes()))
            .map_err(storage(&self.path))?;
        Ok(raw.and_then(|v| {
            let r = decode(RECORD_FORMAT, &v);
            if r.is_none() {
                self.flag_damage("undecodable record");
            }
            r
        }))
    }

    /// Applies record changes and sync-state updates in one atomic batch.
    pub fn apply(
        &self,
        changes: &[Change],
        state: &[(&str, Vec<u8>)],
    ) -> Result<ApplySummary, CacheError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        let mut summary = ApplySummary::default();
        // Index keys of records already touched in this batch (None: deleted in it).
        let mut pending: HashMap<&RecordId, Option<IndexedAs>> = HashMap::new();
        let mut counts: HashMap<String, i64> = HashMap::new();

        for change in changes {
            let id = change.id();
            let old = match pending.get(id) {
                Some(p) => p.clone(),
                None => self.get(id)?.map(|r| {
                    (
                        r.kind,
                        index_entries(&r).into_iter().map(|(k, _)| k).collect(),
                    )
                }),
            };
            if let Some((kind, keys)) = old {
                *counts.entry(kind.api_name().into()).or_default() -= 1;
                *counts.entry(COUNT_INDEX.into()).or_default() -= keys.len() as i64;
                for k in keys {
                    batch.remove(k);
                }
            }
            match change {
                Change::Upsert(r) => {
                    let entries = index_entries(r);
                    *counts.entry(r.kind.api_name().into()).or_default() += 1;
                    *counts.entry(COUNT_INDEX.into()).or_default() += entries.len() as i64;
                    let keys = entries.iter().map(|(k, _)| k.clone()).collect();
                    for (k, v) in entries {
                        batch.insert(k, v);
                    }
                    batch.insert(
                        key(P_RECORD, r.id.as_str().as_bytes()),
                        encode(RECORD_FORMAT, r),
                    );
                    pending.insert(id, Some((r.kind, keys)));
                    summary.upserted += 1;
                }
                Change::Delete(_) => {
                    batch.remove(key(P_RECORD, id.as_str().as_bytes()));
                    pending.insert(id, None);
                    summary.deleted += 1;
                }
            }
        }
        for (name, delta) in counts {
            if delta != 0 {
                let now = self.counter(&name)? as i64;
                let new = (now + delta).max(0) as u64;
                batch.insert(key(P_COUNT, name.as_bytes()), new.to_be_bytes().to_vec());
            }
        }
        for (name, value) in state {
            batch.insert(key(P_STATE, name.as_bytes()), value.clone());
        }
        self.db.apply_batch(batch).map_err(storage(&self.path))?;
        Ok(summary)
    }

    /// Sync state written by `apply` (watermarks).
    pub fn state(&self, name: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self
            .db
            .get(key(P_STATE, name.as_bytes()))
            .map_err(storage(&self.path))?
            .map(|v| v.to_vec()))
    }

    /// Every cached record (for re-indexing and exports); undecodable ones are skipped.
    pub fn records(&self) -> impl Iterator<Item = Result<CachedRecord, CacheError>> + '_ {
        self.db
            .scan_prefix([P_RECORD])
            .filter_map(move |item| match item {
                Err(e) => Some(Err(storage(&self.path)(e))),
                Ok((_, v)) => decode(RECORD_FORMAT, &v).map(Ok),
            })
    }

    /// Writes records without touching the phone index, for loads that replace much of the
    /// cache (the first full sync, importing into an empty cache). Random-order index inserts
    /// make sled rewrite the same leaves over and over (4× space amplification and a 40 %
    /// slower load at 1M records); instead the index is rebuilt once, in key order, by
    /// [`Cache::finish_bulk`]. The `needs_reindex` flag goes in the same batch as the first
    /// records, so a load killed half-way is repaired at the next open.
    pub fn apply_bulk(&self, changes: &[Change]) -> Result<ApplySummary, CacheError> {
        self.apply_bulk_with_state(changes, &[])
    }

    /// [`Cache::apply_bulk`] plus sync-state updates in the same atomic batch.
    pub fn apply_bulk_with_state(
        &self,
        changes: &[Change],
        state: &[(&str, Vec<u8>)],
    ) -> Result<ApplySummary, CacheError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        let mut summary = ApplySummary::default();
        batch.insert(key(P_META, META_NEEDS_REINDEX.as_bytes()), vec![1]);
        for change in changes {
            match change {
                Change::Upsert(r) => {
                    batch.insert(
                        key(P_RECORD, r.id.as_str().as_bytes()),
                        encode(RECORD_FORMAT, r),
                    );
                    summary.upserted += 1;
                }
                Change::Delete(id) => {
                    batch.remove(key(P_RECORD, id.as_str().as_bytes()));
                    summary.deleted += 1;
                }
            }
        }
        for (name, value) in state {
            batch.insert(key(P_STATE, name.as_bytes()), value.clone());
        }
        self.db.apply_batch(batch).map_err(storage(&self.path))?;
        Ok(summary)
    }

    /// Ends bulk loads if any left the index to build (see [`Cache::apply_bulk`]).
    pub fn finish_bulk_if_pending(&self) -> Result<(), CacheError> {
        if self.meta_flag(META_NEEDS_REINDEX)? {
            self.finish_bulk()?;
        }
        Ok(())
    }

    /// Ends a bulk load: rebuilds the index and counters.
    pub fn finish_bulk(&self) -> Result<(), CacheError> {
        self.reindex()?;
        self.flush()
    }

    /// Ids of cached `kind` records with `after < id <= upto` (either bound open).
    pub fn ids_between(
        &self,
        kind: ObjectKind,
        after: Option<&str>,
        upto: Option<&str>,
    ) -> Result<Vec<RecordId>, CacheError> {
        use std::ops::Bound;
        let lo = match after {
            Some(a) => Bound::Excluded(key(P_RECORD, a.as_bytes())),
            None => Bound::Included(vec![P_RECORD]),
        };
        let hi = match upto {
            Some(u) => Bound::Included(key(P_RECORD, u.as_bytes())),
            None => Bound::Excluded(vec![P_RECORD + 1]),
        };
        let mut out = Vec::new();
        for item in self.db.range::<Vec<u8>, _>((lo, hi)) {
            let (_, v) = item.map_err(storage(&self.path))?;
            if let Some(r) = decode::<CachedRecord>(RECORD_FORMAT, &v) {
                if r.kind == kind {
                    out.push(r.id);
                }
            }
        }
        Ok(out)
    }

    /// Rebuilds the phone index and counters from the records, inserting index entries in key
    /// order (sorted on disk, so memory stays flat whatever the cache's size).
    pub fn reindex(&self) -> Result<(), CacheError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        info!("building the phone index from cached records");
        for prefix in [P_INDEX, P_COUNT] {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for k in self.db.scan_prefix([prefix]).keys() {
                batch.remove(k.map_err(storage(&self.path))?);
                n += 1;
                if n % 10_000 == 0 {
                    self.db
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(storage(&self.path))?;
                }
            }
            self.db.apply_batch(batch).map_err(storage(&self.path))?;
        }
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut failed: Option<CacheError> = None;
        let entries = self
            .records()
            .map_while(|r| match r {
                Ok(r) => Some(r),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            })
            .flat_map(|r| {
                *counts.entry(r.kind.api_name().into()).or_default() += 1;
                index_entries(&r).into_iter().map(|(k, v)| SortItem(k, v))
            });
        let sort_dir = tempfile::Builder::new()
            .prefix(".callsync-index-")
            .tempdir_in(self.path.parent().unwrap_or(Path::new(".")))
            .map_err(|source| CacheError::SortSpace {
                path: self.path.clone(),
                source,
            })?;
        let sorted = extsort::ExternalSorter::new()
            .with_segment_size(200_000)
            .with_sort_dir(sort_dir.path().to_owned())
            .sort(entries)
            .map_err(|source| CacheError::SortSpace {
                path: sort_dir.path().to_owned(),
                source,
            })?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0usize;
        let mut index_total = 0u64;
        for item in sorted {
            let SortItem(k, v) = item.map_err(|source| CacheError::SortSpace {
                path: sort_dir.path().to_owned(),
                source,
            })?;
            batch.insert(k, v);
            in_batch += 1;
            index_total += 1;
            // Small batches: sled's memory grows by ~600 MB over a 1M-record build with
            // 10,000-entry batches and not at all with 500 (measured; no slower).
            if in_batch >= REINDEX_BATCH {
                self.db
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(storage(&self.path))?;
                in_batch = 0;
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        counts.insert(COUNT_INDEX.into(), index_total);
        for (name, n) in counts {
            batch.insert(key(P_COUNT, name.as_bytes()), n.to_be_bytes().to_vec());
        }
        batch.insert(key(P_META, META_NEEDS_REINDEX.as_bytes()), vec![0]);
        self.db.apply_batch(batch).map_err(storage(&self.path))?;
        Ok(())
    }

    /// Drops every record, index entry and sync state (the next sync is a full one).
    pub fn clear(&self) -> Result<(), CacheError> {
        let _w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.clear_locked()?;
        self.orgs_mut().0 = None;
        Ok(())
    }

    fn clear_locked(&self) -> Result<(), CacheError> {
        self.db.clear().map_err(storage(&self.path))?;
        self.put_meta_byte(META_RECORD_FORMAT, RECORD_FORMAT)?;
        self.put_meta_byte(META_INDEX_FORMAT, INDEX_FORMAT)?;
        self.flush()
    }

    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        let mut records = BTreeMap::new();
        for kind in ObjectKind::ALL {
            records.insert(kind.api_name().to_owned(), self.counter(kind.api_name())?);
        }
        Ok(CacheStats {
            records,
            index_entries: self.counter(COUNT_INDEX)?,
            size_on_disk: self.db.size_on_disk().map_err(storage(&self.path))?,
            needs_full_sync: self.meta_flag(META_NEEDS_FULL_SYNC)?,
        })
    }

    pub fn count(&self, kind: ObjectKind) -> Result<u64, CacheError> {
        self.counter(kind.api_name())
    }

    /// Whether the cache lost data it cannot rebuild locally (set on repair, cleared by the
    /// sync engine after a full sync).
    pub fn needs_full_sync(&self) -> Result<bool, CacheError> {
        self.meta_flag(META_NEEDS_FULL_SYNC)
    }

    pub fn set_needs_full_sync(&self, on: bool) -> Result<(), CacheError> {
        self.set_meta(META_NEEDS_FULL_SYNC, on)
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), CacheError> {
        self.db.flush().map(|_| ()).map_err(storage(&self.path))
    }

    fn counter(&self, name: &str) -> Result<u64, CacheError> {
        let v = self
            .db
            .get(key(P_COUNT, name.as_bytes()))
            .map_err(storage(&self.path))?;
        Ok(v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    fn meta_byte(&self, name: &str) -> Result<Option<u8>, CacheError> {
        Ok(self
            .db
            .get(key(P_META, name.as_bytes()))
            .map_err(storage(&self.path))?
            .and_then(|v| v.first().copied()))
    }

    fn put_meta_byte(&self, name: &str, v: u8) -> Result<(), CacheError> {
        self.db
            .insert(key(P_META, name.as_bytes()), vec![v])
            .map(|_| ())
            .map_err(storage(&self.path))
    }

    fn meta_flag(&self, name: &str) -> Result<bool, CacheError> {
        Ok(self.meta_byte(name)? == Some(1))
    }

    fn set_meta(&self, name: &str, on: bool) -> Result<(), CacheError> {
        self.put_meta_byte(name, u8::from(on))
    }

    /// Damage found while reading: answer without the damaged entry now, rebuild the index at
    /// the next open.
    fn flag_damage(&self, what: &str) {
        warn!(cache = %self.path.display(), "{what}; the index will be rebuilt at next start");
        if let Err(e) = self.set_meta(META_NEEDS_REINDEX, true) {
            warn!(error = %e, "could not record the repair flag");
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if let Err(e) = self.db.flush() {
            warn!(error = %e, "cache flush on close failed");
        }
    }
}

fn move_aside(dir: &Path) -> Result<PathBuf, CacheError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let name = format!(
        "{}.damaged-{stamp}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("cache")
    );
    let aside = dir.with_file_name(name);
    std::fs::rename(dir, &aside).map_err(|source| CacheError::MoveAside {
        path: dir.to_owned(),
        source,
    })?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::Normalizer;
    use crate::record::StoredPhone;

    pub(crate) fn record(kind: ObjectKind, id: &str, phones: &[(&str, &str)]) -> CachedRecord {
        let n = Normalizer::from_codes("JP", &[]).unwrap();
        CachedRecord {
            kind,
            id: RecordId::parse(id).unwrap(),
            name: format!("name {id}"),
            account_id: None,
            account_name: Some("Acme".into()),
            company: None,
            is_person_account: false,
            person_contact_id: None,
            is_converted: false,
            is_active: true,
            username: None,
            last_modified: 1,
            system_modstamp: 1,
            phones: phones
                .iter()
                .map(|(f, raw)| {
                    let nn = n.normalize(raw).unwrap();
                    StoredPhone {
                        field: (*f).into(),
                        raw: (*raw).into(),
                        key: Some(nn.key),
                        extension: nn.extension,
                    }
                })
                .collect(),
        }
    }

    fn k(raw: &str) -> PhoneKey {
        Normalizer::from_codes("JP", &[]).unwrap().key(raw).unwrap()
    }

    fn open(dir: &Path) -> Cache {
        Cache::open(dir, &CacheOptions::default()).unwrap().0
    }

    const C1: &str = "003000000000001AAA";

    /// Keys made by other rules (here: another region's) are made again from the numbers as
    /// typed, once, and the index follows.
    #[test]
    fn keys_follow_the_normalization_rules() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir.path().join("c"));
        let mut r = record(ObjectKind::Contact, C1, &[("Phone", "011-968-9173")]);
        // As an older callsync stored it: the digits-only key.
        r.phones[0].key = Some(PhoneKey::Digits("0119689173".into()));
        c.apply(&[Change::Upsert(r)], &[]).unwrap();
        let jp = Normalizer::from_codes("JP", &[]).unwrap();
        assert!(c
            .hits(&jp.key("+81 11-968-9173").unwrap())
            .unwrap()
            .is_empty());
        assert!(c.rekey(&jp).unwrap());
        assert_eq!(
            c.hits(&jp.key("+81 11-968-9173").unwrap()).unwrap().len(),
            1
        );
        assert_eq!(c.hits(&jp.key("011-968-9173").unwrap()).unwrap().len(), 1);
        assert!(!c.rekey(&jp).unwrap(), "once");
        // Another default region: keyed again.
        let us = Normalizer::from_codes("US", &[]).unwrap();
        assert!(c.rekey(&us).unwrap());
    }

    #[test]
    fn upsert_moves_index_entries_and_delete_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir.path().join("c"));
        let r = record(ObjectKind::Contact, C1, &[("Phone", "03-1234-5678")]);
        c.apply(&[Change::Upsert(r)], &[]).unwrap();
        assert_eq!(c.hits(&k("0312345678")).unwrap().len(), 1);

        let moved = record(ObjectKind::Contact, C1, &[("Phone", "06-6123-4567")]);
        c.apply(&[Change::Upsert(moved)], &[]).unwrap();
        assert!(
            c.hits(&k("0312345678")).unwrap().is_empty(),
            "old number still matches"
        );
        assert_eq!(c.hits(&k("0661234567")).unwrap().len(), 1);
        assert_eq!(c.stats().unwrap().index_entries, 1);
        assert_eq!(c.count(ObjectKind::Contact).unwrap(), 1);

        c.apply(&[Change::Delete(RecordId::parse(C1).unwrap())], &[])
            .unwrap();
        assert!(c.hits(&k("0661234567")).unwrap().is_empty());
        assert_eq!(c.count(ObjectKind::Contact).unwrap(), 0);
        assert_eq!(c.stats().unwrap().index_entries, 0);
    }

    #[test]
    fn several_changes_to_one_record_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir.path().join("c"));
        let a = record(ObjectKind::Contact, C1, &[("Phone", "03-1234-5678")]);
        let b = record(ObjectKind::Contact, C1, &[("MobilePhone", "090-1234-5678")]);
        c.apply(&[Change::Upsert(a), Change::Upsert(b)], &[("w", vec![7])])
            .unwrap();
        assert!(c.hits(&k("0312345678")).unwrap().is_empty());
        assert_eq!(c.hits(&k("09012345678")).unwrap().len(), 1);
        assert_eq!(c.count(ObjectKind::Contact).unwrap(), 1);
        assert_eq!(c.state("w").unwrap(), Some(vec![7]));
    }

    #[test]
    fn survives_reopen_and_reindexes_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        {
            let c = open(&path);
            let r = record(
                ObjectKind::Lead,
                "00Q000000000001AAA",
                &[("Phone", "0312345678")],
            );
            c.apply(&[Change::Upsert(r)], &[]).unwrap();
            c.set_meta(META_NEEDS_REINDEX, true).unwrap();
        }
        let (c, report) = Cache::open(&path, &CacheOptions::default()).unwrap();
        assert!(report.reindexed);
        assert_eq!(c.hits(&k("03-1234-5678")).unwrap().len(), 1);
        assert_eq!(c.count(ObjectKind::Lead).unwrap(), 1);
    }

    #[test]
    fn a_damaged_store_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::create_dir_all(&path).unwrap();
        // Not a sled database: garbage where sled expects its config and log.
        std::fs::write(path.join("conf"), b"\xff\xfe garbage").unwrap();
        std::fs::write(path.join("db"), vec![0xAB; 4096]).unwrap();
        let (c, report) = Cache::open(&path, &CacheOptions::default()).unwrap();
        let (_, aside) = report.rebuilt.expect("rebuilt");
        assert!(aside.exists());
        assert!(c.needs_full_sync().unwrap());
        assert!(c.stats().unwrap().records.values().all(|n| *n == 0));
    }

    #[test]
    fn bulk_load_builds_the_same_index_and_survives_a_kill_before_finishing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let records: Vec<Change> = (0..5000u64)
            .map(|i| {
                let id = format!("003{i:012}AAA");
                let phone = format!("03-{:04}-{:04}", 1000 + i % 9000, i % 10_000);
                Change::Upsert(record(ObjectKind::Contact, &id, &[("Phone", &phone)]))
            })
            .collect();
        {
            let c = open(&path);
            // Killed before finish_bulk: nothing but the records and the repair flag.
            c.apply_bulk(&records).unwrap();
            assert!(c.hits(&k("03-1000-0000")).unwrap().is_empty());
        }
        let (c, report) = Cache::open(&path, &CacheOptions::default()).unwrap();
        assert!(
            report.reindexed,
            "a half-done bulk load is finished at open"
        );
        assert_eq!(c.count(ObjectKind::Contact).unwrap(), 5000);
        assert_eq!(c.stats().unwrap().index_entries, 5000);
        assert_eq!(c.hits(&k("03-1007-0007")).unwrap().len(), 1);
        // Bulk over existing content replaces stale index entries too.
        let moved = record(
            ObjectKind::Contact,
            "003000000000007AAA",
            &[("Phone", "06-6123-4567")],
        );
        c.apply_bulk(&[Change::Upsert(moved)]).unwrap();
        c.finish_bulk().unwrap();
        assert!(c.hits(&k("03-1007-0007")).unwrap().is_empty());
        assert_eq!(c.hits(&k("06-6123-4567")).unwrap().len(), 1);
        assert_eq!(c.stats().unwrap().index_entries, 5000);
    }

    #[test]
    fn a_store_in_use_is_never_repaired_or_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let first = open(&path);
        // The same process opening again must not take the store: the lock is per open file.
        match Cache::open(&path, &CacheOptions::default()) {
            Err(CacheError::Locked(p)) => assert_eq!(p, path),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened a cache that is in use"),
        }
        assert!(path.exists());
        drop(first);
        assert!(Cache::open(&path, &CacheOptions::default()).is_ok());
    }

    #[test]
    fn sled_lock_failures_are_recognised() {
        let e = sled::Error::Io(std::io::Error::other(
            "could not acquire lock on \"/x/db\": Os { code: 11 }",
        ));
        assert!(is_lock_error(&e));
    }

    #[test]
    fn an_undecodable_entry_is_skipped_and_repaired_at_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        {
            let c = open(&path);
            let r = record(ObjectKind::Contact, C1, &[("Phone", "0312345678")]);
            c.apply(&[Change::Upsert(r)], &[]).unwrap();
            let key = index_key(&k("0312345678"), &RecordId::parse(C1).unwrap(), "Phone");
            c.db.insert(key, vec![99, 1, 2]).unwrap();
            assert!(c.hits(&k("0312345678")).unwrap().is_empty());
        }
        let (c, report) = Cache::open(&path, &CacheOptions::default()).unwrap();
        assert!(report.reindexed);
        assert_eq!(c.hits(&k("0312345678")).unwrap().len(), 1);
    }
}
