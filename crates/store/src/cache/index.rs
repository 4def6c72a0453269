//! The phone index: its keys, lookups by number, rebuilding it in key order (after a bulk load
//! or a repair) and re-keying it when the normalization rules change.

use super::*;

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

impl Cache {
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

    /// Rebuilds the phone index and counters from the records, inserting index entries in key
    /// order (sorted on disk, so memory stays flat whatever the cache's size).
    pub(crate) fn reindex(&self) -> Result<(), CacheError> {
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
}

/// `p` number `\0` Id `\0` field.
pub(super) fn index_key(number: &PhoneKey, id: &RecordId, field: &str) -> Vec<u8> {
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

pub(super) fn index_entries(r: &CachedRecord) -> Vec<(Vec<u8>, Vec<u8>)> {
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
