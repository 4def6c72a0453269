//! The local, persistent record cache: records by Id, counters and sync state in one sled tree
//! under one-byte key prefixes, so that a batch that upserts records, fixes the phone index's
//! delta and moves a sync watermark commits atomically (sled batches are atomic per tree;
//! cross-tree transactions measured 30 % slower). sled is the source of truth; the phone index
//! is a memory-mapped file built from it, plus a small delta in sled ([`index`]).
//!
//! Key layout:
//! - `r` Id → record (versioned envelope)
//! - `d` number code, Id → the record's index entries under that number since the file was
//!   built (empty: the number left the record)
//! - `x` Id → the record changed since the file was built (stamp, numbers it has `d` entries
//!   under)
//! - `c` name → u64 counter (records per object, index entries)
//! - `w` name → sync state owned by the sync engine (watermarks)
//! - `m` name → metadata (formats, repair flags, the index file's generation)
//!
//! The cache is a copy of Salesforce: whatever goes wrong with it (a sled `Corruption` after a
//! crash, an undecodable value, a format from another version) is repaired by rebuilding, never
//! fatal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use callsync_core::lookup::{Choice, IndexEntry, IndexHit};
use callsync_core::phone::PhoneKey;
use callsync_core::record::{CachedRecord, ObjectKind, RecordId};

const P_RECORD: u8 = b'r';
/// The phone index in sled before it moved to a file (format 1): removed at open.
const P_OLD_INDEX: u8 = b'p';
const P_DELTA: u8 = b'd';
const P_CHANGED: u8 = b'x';
const P_COUNT: u8 = b'c';
const P_STATE: u8 = b'w';
const P_META: u8 = b'm';
/// An agent's choice of record for a number: index bytes of the number → `Choice`.
const P_CHOICE: u8 = b'k';
const CHOICE_FORMAT: u8 = 1;

/// Envelope format bytes. Bump `RECORD_FORMAT` when `CachedRecord` changes shape (the cache is
/// cleared and resynced); bump `INDEX_FORMAT` when `IndexEntry` does (the index is rebuilt from
/// the records, no network needed; also bump [`phones::FORMAT`]). 2: the index is a file.
pub(crate) const RECORD_FORMAT: u8 = 1;
pub(crate) const INDEX_FORMAT: u8 = 2;

const META_RECORD_FORMAT: &str = "record_format";
const META_INDEX_FORMAT: &str = "index_format";
const META_NEEDS_REINDEX: &str = "needs_reindex";
const META_NEEDS_FULL_SYNC: &str = "needs_full_sync";
const META_ORG: &str = "org";
const META_KEYS: &str = "keys";
const META_PHONES_GEN: &str = "phones_generation";
/// The stamp of the last bulk write: a rebuild that started before it does not clear the
/// repair flag.
const META_BULK_STAMP: &str = "bulk_stamp";
const COUNT_INDEX: &str = "index";
const REINDEX_BATCH: usize = 500;
/// Records written between handing freed memory back to the OS: a full sync's RSS otherwise
/// grew by what glibc kept of every page (163 → 767 MiB over 268k records in the sync bench).
const RELEASE_EVERY: u64 = 50_000;

mod index;
pub mod phones;
pub use index::COMPACT_AT;
use index::{changed_value, delta_key, index_entries, parse_changed, Indexer, Phones};

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
    /// sled's page cache in bytes (it counts on-disk bytes; RSS runs higher). Lookups do not
    /// use it (they read the index file); syncs and imports do.
    pub cache_capacity: u64,
    pub flush_every_ms: Option<u64>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            cache_capacity: 16 * 1024 * 1024,
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

/// A record's kind and the codes of the numbers it is indexed under.
type IndexedAs = (ObjectKind, Vec<u64>);

/// Whether a write keeps the phone index now or leaves it to [`Cache::finish_bulk`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Indexing {
    Now,
    Later,
}

pub struct Cache {
    db: sled::Db,
    path: PathBuf,
    /// One writer at a time: `apply` reads old records to drop their index entries, and two
    /// interleaved batches could each miss the other's writes.
    writer: Arc<Mutex<()>>,
    /// The phone index and what rebuilds it.
    ix: Indexer,
    /// A background rebuild, joined (after cancelling it) when the cache closes.
    builder: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Records written through this handle, for [`RELEASE_EVERY`].
    written: std::sync::atomic::AtomicU64,
    /// (the org the records belong to, the org lookups are for): lookups are refused when
    /// both are known and differ.
    orgs: std::sync::RwLock<(Option<String>, Option<String>)>,
    _lock: callsync_fs::FileLock,
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
fn take_lock(dir: &Path) -> Result<callsync_fs::FileLock, CacheError> {
    let path = crate::lock_path(dir, "cache");
    callsync_fs::FileLock::try_acquire(&path).map_err(|e| match e {
        callsync_fs::LockError::Held => CacheError::Locked(dir.to_owned()),
        callsync_fs::LockError::Io(source) => CacheError::LockFile { path, source },
    })
}

/// Frees the sled pages this thread has replaced. sled retires a replaced page through
/// crossbeam-epoch, which keeps it in the writing thread's own bag until that thread next
/// flushes it: a 1M-record import held ~600 MB of retired pages that way (peak RSS 750 → 170
/// MiB with this after every batch, and 32k → 52k records/s, measured with the cache bench).
fn collect_garbage() {
    sled::pin().flush();
}

/// A stored big-endian `u64` (counters, the index generation, the bulk stamp).
fn be_u64(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes)
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
        let writer = Arc::new(Mutex::new(()));
        let ix = Indexer {
            db: db.clone(),
            path: dir.to_owned(),
            writer: writer.clone(),
            phones: Arc::new(Phones::default()),
        };
        let cache = Cache {
            db,
            path: dir.to_owned(),
            writer,
            ix,
            builder: Mutex::new(None),
            written: Default::default(),
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

    fn open_db_retrying(dir: &Path, opts: &CacheOptions) -> sled::Result<sled::Db> {
        crate::open_sled(|| Self::open_db(dir, opts))
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
        if idx != Some(INDEX_FORMAT) && !fresh && !report.cleared {
            // From another version: its index (in sled, or a file of another format) goes;
            // the records stay and the file is built from them below.
            self.remove_prefix(P_OLD_INDEX)?;
            self.remove_prefix(P_DELTA)?;
            self.remove_prefix(P_CHANGED)?;
            self.set_meta(META_NEEDS_REINDEX, true)?;
        }
        self.put_meta_byte(META_INDEX_FORMAT, INDEX_FORMAT)?;
        let file = self.ix.open_current()?;
        let has_records = self.db.scan_prefix([P_RECORD]).keys().next().is_some();
        if file.is_none() || self.meta_flag(META_NEEDS_REINDEX)? {
            self.reindex()?;
            report.reindexed = has_records && !report.cleared;
        } else {
            let generation = file.as_ref().map(|f| f.generation()).unwrap_or(0);
            self.ix.phones.install(file);
            self.ix.phones.set_delta(self.ix.count_delta());
            self.ix.remove_stale(generation);
        }
        Ok(())
    }

    fn remove_prefix(&self, prefix: u8) -> Result<(), CacheError> {
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
        self.db.apply_batch(batch).map_err(storage(&self.path))
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

    /// Remembers the agent's choice of record for a number (its winner for the next calls,
    /// for as long as the lookup rules keep choices).
    pub fn choose(&self, number: &PhoneKey, choice: &Choice) -> Result<(), CacheError> {
        self.db
            .insert(
                key(P_CHOICE, &number.index_bytes()),
                encode(CHOICE_FORMAT, choice),
            )
            .map_err(storage(&self.path))?;
        self.db.flush().map_err(storage(&self.path))?;
        Ok(())
    }

    /// The agent's remembered choice for a number, if any (an undecodable one is none).
    pub fn choice(&self, number: &PhoneKey) -> Result<Option<Choice>, CacheError> {
        Ok(self
            .db
            .get(key(P_CHOICE, &number.index_bytes()))
            .map_err(storage(&self.path))?
            .and_then(|v| decode(CHOICE_FORMAT, &v)))
    }

    /// Forgets a number's choice (expired, or the record no longer has the number).
    pub fn forget_choice(&self, number: &PhoneKey) -> Result<(), CacheError> {
        self.db
            .remove(key(P_CHOICE, &number.index_bytes()))
            .map_err(storage(&self.path))?;
        Ok(())
    }

    /// Applies record changes and sync-state updates in one atomic batch, index included.
    pub fn apply(
        &self,
        changes: &[Change],
        state: &[(&str, Vec<u8>)],
    ) -> Result<ApplySummary, CacheError> {
        self.write(changes, state, Indexing::Now)
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

    /// Writes records (and sync state, in the same atomic batch) without touching the phone
    /// index, for loads that replace much of the cache (the first full sync, importing into an
    /// empty cache). Random-order index inserts make sled rewrite the same leaves over and over
    /// (4× space amplification and a 40 % slower load at 1M records); instead the index is
    /// rebuilt once, in key order, by [`Cache::finish_bulk`]. The `needs_reindex` flag goes in
    /// the same batch as the first records, so a load killed half-way is repaired at the next
    /// open.
    pub fn apply_bulk(
        &self,
        changes: &[Change],
        state: &[(&str, Vec<u8>)],
    ) -> Result<ApplySummary, CacheError> {
        self.write(changes, state, Indexing::Later)
    }

    fn write(
        &self,
        changes: &[Change],
        state: &[(&str, Vec<u8>)],
        indexing: Indexing,
    ) -> Result<ApplySummary, CacheError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = self.db.generate_id().map_err(storage(&self.path))?;
        let mut batch = sled::Batch::default();
        let mut summary = ApplySummary::default();
        // Index codes of records already touched in this batch (None: deleted in it).
        let mut pending: HashMap<&RecordId, Option<IndexedAs>> = HashMap::new();
        // Records in the delta and the codes they have delta entries under, as this batch
        // leaves them (`true`: already in the delta before it).
        let mut changed: HashMap<&RecordId, (bool, BTreeSet<u64>)> = HashMap::new();
        let mut counts: HashMap<String, i64> = HashMap::new();
        let now = indexing == Indexing::Now;
        if !now {
            batch.insert(key(P_META, META_NEEDS_REINDEX.as_bytes()), vec![1]);
            batch.insert(
                key(P_META, META_BULK_STAMP.as_bytes()),
                &stamp.to_be_bytes(),
            );
        }
        for change in changes {
            let id = change.id();
            let mut touched = BTreeSet::new();
            if now {
                let old = match pending.get(id) {
                    Some(p) => p.clone(),
                    None => self
                        .get(id)?
                        .map(|r| (r.kind, index_entries(&r).iter().map(|e| e.code).collect())),
                };
                if let Some((kind, codes)) = old {
                    *counts.entry(kind.api_name().into()).or_default() -= 1;
                    *counts.entry(COUNT_INDEX.into()).or_default() -= codes.len() as i64;
                    touched.extend(codes);
                }
            }
            match change {
                Change::Upsert(r) => {
                    if now {
                        let entries = index_entries(r);
                        *counts.entry(r.kind.api_name().into()).or_default() += 1;
                        *counts.entry(COUNT_INDEX.into()).or_default() += entries.len() as i64;
                        let codes: Vec<u64> = entries.iter().map(|e| e.code).collect();
                        touched.extend(codes.iter().copied());
                        let mut by_code: BTreeMap<u64, Vec<(String, IndexEntry)>> =
                            touched.iter().map(|c| (*c, Vec::new())).collect();
                        for e in entries {
                            by_code.entry(e.code).or_default().push((e.field, e.entry));
                        }
                        for (code, list) in by_code {
                            batch.insert(delta_key(code, id), encode(INDEX_FORMAT, &list));
                        }
                        pending.insert(id, Some((r.kind, codes)));
                    }
                    batch.insert(
                        key(P_RECORD, r.id.as_str().as_bytes()),
                        encode(RECORD_FORMAT, r),
                    );
                    summary.upserted += 1;
                }
                Change::Delete(_) => {
                    for code in &touched {
                        let none: Vec<(String, IndexEntry)> = Vec::new();
                        batch.insert(delta_key(*code, id), encode(INDEX_FORMAT, &none));
                    }
                    batch.remove(key(P_RECORD, id.as_str().as_bytes()));
                    pending.insert(id, None);
                    summary.deleted += 1;
                }
            }
            if now {
                let slot = match changed.entry(id) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let before = self
                            .db
                            .get(key(P_CHANGED, id.as_str().as_bytes()))
                            .map_err(storage(&self.path))?;
                        v.insert(match before.as_deref().and_then(parse_changed) {
                            Some((_, codes)) => (true, codes),
                            None => (before.is_some(), BTreeSet::new()),
                        })
                    }
                };
                slot.1.extend(touched);
            }
        }
        let mut added = 0;
        for (id, (known, codes)) in &changed {
            batch.insert(
                key(P_CHANGED, id.as_str().as_bytes()),
                changed_value(stamp, codes),
            );
            added += u64::from(!known);
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
        drop(_writer);
        collect_garbage();
        let n = changes.len() as u64;
        let before = self
            .written
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if before / RELEASE_EVERY != (before + n) / RELEASE_EVERY {
            crate::release_free_memory();
        }
        if self.ix.phones.add_delta(added) >= index::COMPACT_AT {
            self.compact();
        }
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
    pub(crate) fn finish_bulk(&self) -> Result<(), CacheError> {
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
        // An empty file, so that no lookup meets the records just dropped.
        self.ix.rebuild(true)?;
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
            size_on_disk: self.db.size_on_disk().map_err(storage(&self.path))?
                + self.index_file_size(),
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
        Ok(v.and_then(|v| be_u64(&v)).unwrap_or(0))
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
        // A rebuild in progress stops (its temporary file goes; the next one starts over).
        self.ix.phones.cancel();
        self.wait_for_index();
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
mod tests;
