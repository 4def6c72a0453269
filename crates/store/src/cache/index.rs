//! Caller lookup's index: the phone index file (immutable, memory-mapped; [`phones`]) plus a
//! small delta in sled for what changed since the file was built, and the rebuild that folds
//! the delta into a new file.
//!
//! The delta, written in the same atomic batch as the record it follows:
//! - `d` code Id → the record's current entries under that number (field, entry); an empty
//!   list is a tombstone: the number left the record. A lookup takes the file's entries for the
//!   number, drops those of every Id the delta names under it, and adds the delta's.
//! - `x` Id → the stamp of its last change and every code it has `d` entries under, so a
//!   rebuild knows which delta entries its file makes redundant.
//!
//! A rebuild takes a stamp (`mark`), builds the file from the records as they are (sled reads
//! are not a snapshot, but every record is read at its state at `mark` or later), renames it in
//! and records its generation, then drops the delta entries of changes older than `mark`; a
//! change made during the build keeps its delta entries, which override the file. A kill at
//! any point leaves either the old file with the whole delta or the new file with a delta
//! that is at worst redundant (an override with the same data): never a wrong answer.
//!
//! [`phones`]: super::phones

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::phones::{self, PhoneFile, PhoneWriter};
use super::*;

/// Changed records since the last build at which a rebuild starts in the background: the delta
/// stays a few MB in sled and a lookup's delta scan stays short.
pub const COMPACT_AT: u64 = 10_000;

/// The external sort's temporary folders, beside the cache.
const SORT_DIR_PREFIX: &str = ".callsync-index-";

/// The index's shared state: the current file, the delta's size, whether a rebuild runs.
#[derive(Default)]
pub(super) struct Phones {
    file: RwLock<Option<Arc<PhoneFile>>>,
    /// `x` entries in sled (records in the delta).
    delta: AtomicU64,
    building: AtomicBool,
    cancel: AtomicBool,
    /// Bumped by every rebuild made with writes held (a clear among them): a background build
    /// that started before one is out of date and thrown away.
    epoch: AtomicU64,
}

/// What a rebuild needs, cloneable into a background thread.
#[derive(Clone)]
pub(super) struct Indexer {
    pub(super) db: sled::Db,
    pub(super) path: PathBuf,
    pub(super) writer: Arc<Mutex<()>>,
    pub(super) phones: Arc<Phones>,
}

/// An index entry on its way through the external sort: code, Id `\0` field → entry.
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

/// One of a record's index entries: its number's code, the field, what a lookup shows.
pub(super) struct Entry {
    pub(super) code: u64,
    pub(super) field: String,
    pub(super) entry: IndexEntry,
}

/// The entries a record contributes (none when it is not indexed), one per (number, field).
pub(super) fn index_entries(r: &CachedRecord) -> Vec<Entry> {
    if !r.is_indexed() {
        return Vec::new();
    }
    let mut keys: Vec<(u64, &str)> = r
        .phones
        .iter()
        .filter_map(|p| p.key.as_ref().map(|k| (phones::code(k), p.field.as_str())))
        .collect();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Vec::new();
    }
    let entry = IndexEntry::of_record(r);
    keys.into_iter()
        .map(|(code, field)| Entry {
            code,
            field: field.to_owned(),
            entry: entry.clone(),
        })
        .collect()
}

pub(super) fn delta_key(code: u64, id: &RecordId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + id.as_str().len());
    k.push(P_DELTA);
    k.extend_from_slice(&code.to_be_bytes());
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

/// `x` value: stamp, then the codes.
pub(super) fn changed_value(stamp: u64, codes: &BTreeSet<u64>) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 8 * codes.len());
    v.extend_from_slice(&stamp.to_be_bytes());
    for c in codes {
        v.extend_from_slice(&c.to_be_bytes());
    }
    v
}

pub(super) fn parse_changed(v: &[u8]) -> Option<(u64, BTreeSet<u64>)> {
    let (stamp, rest) = v.split_first_chunk::<8>()?;
    let (codes, tail) = rest.as_chunks::<8>();
    tail.is_empty().then(|| {
        (
            u64::from_be_bytes(*stamp),
            codes.iter().map(|c| u64::from_be_bytes(*c)).collect(),
        )
    })
}

fn file_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("phones-{generation:016x}.idx"))
}

impl Phones {
    pub(super) fn set_delta(&self, n: u64) {
        self.delta.store(n, Ordering::Relaxed);
    }

    pub(super) fn add_delta(&self, n: u64) -> u64 {
        self.delta.fetch_add(n, Ordering::Relaxed) + n
    }

    pub(super) fn delta(&self) -> u64 {
        self.delta.load(Ordering::Relaxed)
    }

    pub(super) fn current(&self) -> Option<Arc<PhoneFile>> {
        self.file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn install(&self, file: Option<PhoneFile>) {
        *self
            .file
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = file.map(Arc::new);
    }

    pub(super) fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Indexer {
    fn storage(&self) -> impl Fn(sled::Error) -> CacheError + '_ {
        storage(&self.path)
    }

    /// The generation the stored metadata names, if any.
    pub(super) fn stored_generation(&self) -> Result<Option<u64>, CacheError> {
        Ok(self
            .db
            .get(key(P_META, META_PHONES_GEN.as_bytes()))
            .map_err(self.storage())?
            .and_then(|v| be_u64(&v)))
    }

    /// Opens the file the metadata names; `None` when there is none or it is unusable.
    pub(super) fn open_current(&self) -> Result<Option<PhoneFile>, CacheError> {
        let Some(generation) = self.stored_generation()? else {
            return Ok(None);
        };
        match PhoneFile::open(&file_path(&self.path, generation), generation) {
            Ok(f) => Ok(Some(f)),
            Err(e) => {
                warn!(error = %e, "the phone index cannot be used; rebuilding it");
                Ok(None)
            }
        }
    }

    pub(super) fn count_delta(&self) -> u64 {
        self.db.scan_prefix([P_CHANGED]).keys().count() as u64
    }

    /// Index files and temporary files other than generation `keep` (left by an older build,
    /// a kill, or a file still mapped when it was replaced, which Windows cannot delete), and
    /// the sort folders of killed builds (beside the cache; no other build can be running: the
    /// cache's lock is ours).
    pub(super) fn remove_stale(&self, keep: u64) {
        let keep = file_path(&self.path, keep);
        if let Some(Ok(dir)) = self.path.parent().map(std::fs::read_dir) {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(SORT_DIR_PREFIX) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let Ok(dir) = std::fs::read_dir(&self.path) else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let ours = (name.starts_with("phones-") && name.ends_with(".idx"))
                || (name.starts_with(".phones-") && name.ends_with(".tmp"));
            if ours && e.path() != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Builds a new file from the records and makes it current. `held`: the caller holds the
    /// writer lock (no write can run meanwhile), so the counters are recomputed too and the
    /// whole delta goes. Otherwise writes go on during the build (see the module docs).
    /// Returns `false` when cancelled.
    pub(super) fn rebuild(&self, held: bool) -> Result<bool, CacheError> {
        let lock = || {
            (!held).then(|| {
                self.writer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            })
        };
        let (mark, epoch) = {
            let _w = lock();
            if held {
                self.phones.epoch.fetch_add(1, Ordering::AcqRel);
            }
            (
                self.db.generate_id().map_err(self.storage())?,
                self.phones.epoch.load(Ordering::Acquire),
            )
        };
        let started = std::time::Instant::now();
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut index_total = 0u64;
        let mut failed: Option<CacheError> = None;
        let mut seen = 0u64;
        let cancel = &self.phones.cancel;
        let entries = self
            .db
            .scan_prefix([P_RECORD])
            .map_while(|item| {
                seen += 1;
                if seen.is_multiple_of(4096) {
                    collect_garbage();
                    if cancel.load(Ordering::Relaxed) {
                        return None;
                    }
                }
                match item {
                    Ok((_, v)) => Some(decode::<CachedRecord>(RECORD_FORMAT, &v)),
                    Err(e) => {
                        failed = Some(storage(&self.path)(e));
                        None
                    }
                }
            })
            .flatten()
            .flat_map(|r| {
                *counts.entry(r.kind.api_name().into()).or_default() += 1;
                let id = r.id.as_str().to_owned();
                index_entries(&r).into_iter().map(move |e| {
                    let mut k = Vec::with_capacity(8 + id.len() + 1 + e.field.len());
                    k.extend_from_slice(&e.code.to_be_bytes());
                    k.extend_from_slice(id.as_bytes());
                    k.push(0);
                    k.extend_from_slice(e.field.as_bytes());
                    SortItem(
                        k,
                        bincode::serde::encode_to_vec(&e.entry, bincode::config::standard())
                            .unwrap_or_default(),
                    )
                })
            })
            .inspect(|_| index_total += 1);
        let sort_space = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheError::SortSpace {
                path: path.clone(),
                source,
            }
        };
        let sort_dir = tempfile::Builder::new()
            .prefix(SORT_DIR_PREFIX)
            .tempdir_in(self.path.parent().unwrap_or(Path::new(".")))
            .map_err(sort_space(&self.path))?;
        let sorted = extsort::ExternalSorter::new()
            .with_segment_size(200_000)
            .with_sort_dir(sort_dir.path().to_owned())
            .sort(entries)
            .map_err(sort_space(sort_dir.path()))?;
        let final_path = file_path(&self.path, mark);
        let write_err = sort_space(&final_path);
        let mut out = PhoneWriter::create(&final_path, mark).map_err(&write_err)?;
        for (i, item) in sorted.enumerate() {
            // A closing cache does not wait for the rest of the file.
            if i.is_multiple_of(4096) && cancel.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let SortItem(k, v) = item.map_err(sort_space(sort_dir.path()))?;
            let Some((code, rest)) = k.split_first_chunk::<8>() else {
                continue;
            };
            let Some(sep) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let id = std::str::from_utf8(&rest[..sep]).unwrap_or_default();
            let field = std::str::from_utf8(&rest[sep + 1..]).unwrap_or_default();
            out.push(u64::from_be_bytes(*code), id, field, &v)
                .map_err(&write_err)?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if cancel.load(Ordering::Relaxed) {
            return Ok(false);
        }
        out.finish().map_err(&write_err)?;
        let file = PhoneFile::open(&final_path, mark).map_err(|e| CacheError::SortSpace {
            path: final_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let numbers = file.numbers();

        // Make it current: the generation (and, when nothing else could write, the counters
        // and the repair flag) in one batch, then the file in memory, in that order under the
        // file's write lock so that no lookup pairs the old file with a trimmed delta.
        let _w = lock();
        if self.phones.epoch.load(Ordering::Acquire) != epoch {
            drop(file);
            let _ = std::fs::remove_file(&final_path);
            return Ok(false);
        }
        let mut batch = sled::Batch::default();
        batch.insert(key(P_META, META_PHONES_GEN.as_bytes()), &mark.to_be_bytes());
        let bulk_since = self
            .db
            .get(key(P_META, META_BULK_STAMP.as_bytes()))
            .map_err(self.storage())?
            .and_then(|v| be_u64(&v));
        if bulk_since.is_none_or(|s| s < mark) {
            batch.insert(key(P_META, META_NEEDS_REINDEX.as_bytes()), vec![0]);
        }
        if held {
            for kind in ObjectKind::ALL {
                let n = counts.get(kind.api_name()).copied().unwrap_or(0);
                batch.insert(key(P_COUNT, kind.api_name().as_bytes()), &n.to_be_bytes());
            }
            batch.insert(
                key(P_COUNT, COUNT_INDEX.as_bytes()),
                &index_total.to_be_bytes(),
            );
        }
        {
            let mut slot = self
                .phones
                .file
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.db.apply_batch(batch).map_err(self.storage())?;
            *slot = Some(Arc::new(file));
        }
        // The delta's entries older than the file, now redundant, in bounded batches.
        let mut batch = sled::Batch::default();
        let (mut n, mut left) = (0usize, 0u64);
        for item in self.db.scan_prefix([P_CHANGED]) {
            let (k, v) = item.map_err(self.storage())?;
            let id = RecordId::parse(std::str::from_utf8(&k[1..]).unwrap_or_default());
            match (parse_changed(&v), id) {
                (Some((stamp, codes)), Some(id)) if stamp < mark => {
                    for c in codes {
                        batch.remove(delta_key(c, &id));
                        n += 1;
                    }
                    batch.remove(k);
                    n += 1;
                }
                (Some(_), Some(_)) => left += 1,
                // Undecodable: drop it (the file has the record as it is now).
                _ => {
                    batch.remove(k);
                    n += 1;
                }
            }
            if n >= REINDEX_BATCH {
                self.db
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(self.storage())?;
                n = 0;
            }
        }
        self.db.apply_batch(batch).map_err(self.storage())?;
        self.phones.set_delta(left);
        self.db.flush().map_err(self.storage())?;
        drop(_w);
        self.remove_stale(mark);
        crate::release_free_memory();
        info!(
            numbers,
            seconds = started.elapsed().as_secs_f32(),
            delta_left = left,
            "phone index built"
        );
        Ok(true)
    }
}

impl Cache {
    /// Every index entry under `number`, ordered by Id and field: the file's, corrected by the
    /// delta. A damaged part of the file is answered from the records themselves (slow, but
    /// right) and the file is rebuilt.
    pub fn hits(&self, number: &PhoneKey) -> Result<Vec<IndexHit>, CacheError> {
        self.check_org()?;
        let code = phones::code(number);
        // Held for the whole lookup: a rebuild swaps the file under the write lock before it
        // trims the delta, so a lookup never pairs the old file with the trimmed delta.
        let slot = self
            .ix
            .phones
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut hits = match slot.as_deref().map(|f| f.hits(code)) {
            Some(Ok(h)) => h,
            None => Vec::new(),
            Some(Err(why)) => {
                drop(slot);
                self.flag_damage(&format!("phone index: {why}"));
                self.compact();
                return self.scan_hits(code);
            }
        };
        if self.ix.phones.delta() > 0 {
            let prefix = {
                let mut p = vec![P_DELTA];
                p.extend_from_slice(&code.to_be_bytes());
                p
            };
            for item in self.db.scan_prefix(&prefix) {
                let (k, v) = item.map_err(storage(&self.path))?;
                let id = std::str::from_utf8(&k[prefix.len()..])
                    .ok()
                    .and_then(RecordId::parse);
                let list = decode::<Vec<(String, IndexEntry)>>(INDEX_FORMAT, &v);
                let (Some(id), Some(list)) = (id, list) else {
                    drop(slot);
                    self.flag_damage("undecodable delta entry");
                    self.compact();
                    return self.scan_hits(code);
                };
                hits.retain(|h| h.id != id);
                hits.extend(list.into_iter().map(|(field, entry)| IndexHit {
                    id: id.clone(),
                    field,
                    entry,
                }));
            }
            hits.sort_by(|a, b| (&a.id, &a.field).cmp(&(&b.id, &b.field)));
        }
        Ok(hits)
    }

    /// The entries under `code` read from every record: the answer when the index is damaged.
    fn scan_hits(&self, code: u64) -> Result<Vec<IndexHit>, CacheError> {
        let mut out = Vec::new();
        for r in self.records() {
            let r = r?;
            for e in index_entries(&r) {
                if e.code == code {
                    out.push(IndexHit {
                        id: r.id.clone(),
                        field: e.field,
                        entry: e.entry,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.id, &a.field).cmp(&(&b.id, &b.field)));
        Ok(out)
    }

    /// Makes every record's phone keys `normalizer`'s (from the numbers as typed) when they
    /// were made by other rules or for another region, then rebuilds the index: a lookup after
    /// an upgrade or a change of `phone.default_region` meets what the cache holds. Local work,
    /// no sync. Returns whether anything was rekeyed.
    pub fn rekey(&self, normalizer: &callsync_core::phone::Normalizer) -> Result<bool, CacheError> {
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
                    *p = callsync_core::record::StoredPhone::of(&p.field, &p.raw, normalizer);
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
            // Rebuilt with the lock still held: the delta's entries carry the old keys.
            self.ix.rebuild(true)?;
        }
        self.db
            .insert(key(P_META, META_KEYS.as_bytes()), want.as_bytes())
            .map_err(storage(&self.path))?;
        self.flush()?;
        Ok(has_records)
    }

    /// Rebuilds the phone index (and the counters) from the records now, with writes held
    /// back: after a bulk load, at open when the file is missing or damaged, on request.
    pub fn reindex(&self) -> Result<(), CacheError> {
        let _w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        info!("building the phone index from cached records");
        self.ix.rebuild(true).map(|_| ())
    }

    /// Folds the delta into a new index file in the background (lookups go on, served by the
    /// old file and the delta), unless one is being built or there is nothing to fold.
    pub fn compact(&self) {
        let phones = &self.ix.phones;
        if phones.delta() == 0 && !self.meta_flag(META_NEEDS_REINDEX).unwrap_or(false) {
            return;
        }
        if phones.building.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut slot = self
            .builder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(done) = slot.take() {
            let _ = done.join();
        }
        let ix = self.ix.clone();
        let spawned = std::thread::Builder::new()
            .name("callsync-index".into())
            .spawn(move || {
                // Again while the writes made during a build leave the delta over the mark.
                loop {
                    match ix.rebuild(false) {
                        Ok(true) if ix.phones.delta() >= COMPACT_AT => continue,
                        Ok(_) => break,
                        Err(e) => {
                            warn!(error = %e, "the phone index could not be rebuilt; lookups use the previous one and the changes since");
                            break;
                        }
                    }
                }
                ix.phones.building.store(false, Ordering::Release);
            });
        match spawned {
            Ok(h) => *slot = Some(h),
            Err(e) => {
                warn!(error = %e, "cannot start the index builder");
                phones.building.store(false, Ordering::Release);
            }
        }
    }

    /// Waits for a background rebuild to end (tests, and a process about to exit that wants
    /// the new file rather than a cancelled one).
    pub fn wait_for_index(&self) {
        let h = self
            .builder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }

    /// Records changed since the index file was built (they are answered from the delta).
    pub fn index_delta(&self) -> u64 {
        self.ix.phones.delta()
    }

    /// The current index file's size on disk.
    pub(super) fn index_file_size(&self) -> u64 {
        self.ix.phones.current().map(|f| f.size()).unwrap_or(0)
    }

    /// The index file in use, for tests that damage it.
    pub fn index_file(&self) -> Option<PathBuf> {
        self.ix.phones.current().map(|f| f.path().to_owned())
    }
}
