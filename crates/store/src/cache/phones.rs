//! The phone index file: an immutable, memory-mapped map from a number to everything a lookup
//! shows, built from the records in sled and replaced whole (a new file per generation).
//!
//! Why a file and not sled: a sled lookup that misses its page cache reads and decodes a whole
//! leaf (60–150 µs), and decoded leaves cost about twice their disk size in private memory. Here
//! a lookup is a binary search over fixed-width keys and one small group read, in file-backed
//! pages the OS shares and drops under pressure.
//!
//! Layout (little-endian):
//! - header, 64 bytes: magic, format, generation, key count, blob length, where the tables
//!   start, a CRC-32 of the tables and one of the header itself;
//! - the blob: one group per number, `len u32 | crc u32 | payload`, the CRC over the number's
//!   code and the payload, so that a group is only ever read for the number it belongs to;
//! - the tables, 8-aligned: the sorted codes (`u64`), then each code's group offset (`u64`).
//!
//! A file that is short, from another format or generation, or whose header or tables fail
//! their CRC is refused at open ([`PhoneFile::open`]); a damaged group is refused when read.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use callsync_core::lookup::{IndexEntry, IndexHit};
use callsync_core::phone::PhoneKey;
use callsync_core::record::RecordId;

const MAGIC: &[u8; 8] = b"CSYPHIX\0";
/// Bump when the layout or [`IndexEntry`] changes: a file of another format is rebuilt.
pub(crate) const FORMAT: u32 = 1;
const HEADER: usize = 64;

/// A number as a fixed-width key: bit 63 tells digits-only keys from E.164 ones, bits 57–62 hold
/// the digit count (leading zeros matter in digits-only keys), the rest the digits' value (at
/// most 17 digits: 10^17 < 2^57). E.164 keys have at most 15 digits.
pub fn code(key: &PhoneKey) -> u64 {
    let (kind, digits) = match key {
        PhoneKey::E164(e) => (0u64, e.as_str().trim_start_matches('+')),
        PhoneKey::Digits(d) => (1u64, d.as_str()),
    };
    let value = digits
        .bytes()
        .filter(u8::is_ascii_digit)
        .take(17)
        .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
    let len = digits.len().min(17) as u64;
    (kind << 63) | (len << 57) | value
}

#[derive(Debug, thiserror::Error)]
pub enum PhoneFileError {
    #[error("cannot read the phone index {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the phone index {path} is damaged or from another version: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// One open index file.
pub struct PhoneFile {
    map: memmap2::Mmap,
    path: PathBuf,
    generation: u64,
    keys: usize,
    blob_len: usize,
    tables: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The header's CRC: every header byte but the CRC's own four.
fn header_crc(h: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&h[..44]);
    c.update(&h[48..HEADER]);
    c.finalize()
}

fn group_crc(code: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&code.to_le_bytes());
    h.update(payload);
    h.finalize()
}

impl PhoneFile {
    /// Maps `path` and checks it is a whole file of this format and generation.
    pub fn open(path: &Path, generation: u64) -> Result<PhoneFile, PhoneFileError> {
        let io = |source| PhoneFileError::Io {
            path: path.to_owned(),
            source,
        };
        let invalid = |reason: &str| PhoneFileError::Invalid {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the file is ours, written once under a name no writer reuses (a new
        // generation is a new file) and never modified after the rename; every read below is
        // bounds-checked, so even a file changed behind our back gives wrong bytes, not UB in
        // our code.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let b: &[u8] = &map;
        if b.len() < HEADER || &b[..8] != MAGIC {
            return Err(invalid("not a phone index"));
        }
        if u32_at(b, 44) != Some(header_crc(&b[..HEADER])) {
            return Err(invalid("header checksum"));
        }
        if u32_at(b, 8) != Some(FORMAT) {
            return Err(invalid("another format"));
        }
        let found_gen = u64_at(b, 16).unwrap_or(0);
        if found_gen != generation {
            return Err(invalid(&format!(
                "generation {found_gen}, expected {generation}"
            )));
        }
        let keys = u64_at(b, 24).unwrap_or(u64::MAX) as usize;
        let blob_len = u64_at(b, 32).unwrap_or(u64::MAX) as usize;
        let tables = u64_at(b, 48).unwrap_or(0) as usize;
        let end = keys
            .checked_mul(16)
            .and_then(|t| t.checked_add(tables))
            .ok_or_else(|| invalid("sizes"))?;
        let blob_end = HEADER
            .checked_add(blob_len)
            .ok_or_else(|| invalid("sizes"))?;
        if !tables.is_multiple_of(8) || tables < blob_end || end != b.len() {
            return Err(invalid("truncated or sizes do not add up"));
        }
        if u32_at(b, 40) != Some(crc32fast::hash(&b[tables..end])) {
            return Err(invalid("table checksum"));
        }
        Ok(PhoneFile {
            path: path.to_owned(),
            generation,
            keys,
            blob_len,
            tables,
            map,
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many numbers the file holds.
    pub fn numbers(&self) -> usize {
        self.keys
    }

    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    fn code_at(&self, i: usize) -> u64 {
        u64_at(&self.map, self.tables + 8 * i).unwrap_or(u64::MAX)
    }

    /// The entries filed under `code` (empty when none), or `Err` when its group is damaged.
    pub fn hits(&self, code: u64) -> Result<Vec<IndexHit>, String> {
        // Binary search over the mapped codes: ~21 probes at 1.5M numbers, the first ones
        // in cache lines every lookup shares.
        let (mut lo, mut hi) = (0usize, self.keys);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.code_at(mid) < code {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo >= self.keys || self.code_at(lo) != code {
            return Ok(Vec::new());
        }
        let off =
            u64_at(&self.map, self.tables + 8 * self.keys + 8 * lo).ok_or("offset table")? as usize;
        let blob = &self.map[HEADER..HEADER + self.blob_len];
        let len = u32_at(blob, off).ok_or("group header")? as usize;
        let start = off.checked_add(8).ok_or("group header")?;
        let crc = u32_at(blob, off + 4).ok_or("group header")?;
        let payload = start
            .checked_add(len)
            .and_then(|end| blob.get(start..end))
            .ok_or("group length")?;
        if group_crc(code, payload) != crc {
            return Err("group checksum".into());
        }
        decode_group(payload).ok_or_else(|| "group contents".into())
    }
}

/// `count u16`, then per entry `id (u8 len)`, `field (u8 len)`, `entry (u16 len, bincode)`.
fn decode_group(mut p: &[u8]) -> Option<Vec<IndexHit>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (a, b) = (p.get(..n)?, p.get(n..)?);
        *p = b;
        Some(a)
    }
    let count = u16::from_le_bytes(take(&mut p, 2)?.try_into().ok()?) as usize;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let n = *take(&mut p, 1)?.first()? as usize;
        let id = RecordId::parse(std::str::from_utf8(take(&mut p, n)?).ok()?)?;
        let n = *take(&mut p, 1)?.first()? as usize;
        let field = std::str::from_utf8(take(&mut p, n)?).ok()?.to_owned();
        let n = u16::from_le_bytes(take(&mut p, 2)?.try_into().ok()?) as usize;
        let (entry, _): (IndexEntry, usize) =
            bincode::serde::decode_from_slice(take(&mut p, n)?, bincode::config::standard())
                .ok()?;
        out.push(IndexHit { id, field, entry });
    }
    p.is_empty().then_some(out)
}

/// Writes a new index file from entries sorted by (code, id, field); [`PhoneWriter::finish`]
/// makes it durable under its final name.
pub struct PhoneWriter {
    tmp: tempfile::NamedTempFile,
    out: BufWriter<File>,
    final_path: PathBuf,
    generation: u64,
    codes: Vec<u64>,
    offsets: Vec<u64>,
    blob_len: u64,
    group: Vec<u8>,
    group_code: Option<u64>,
    group_count: u16,
}

impl PhoneWriter {
    pub fn create(final_path: &Path, generation: u64) -> std::io::Result<PhoneWriter> {
        let dir = final_path.parent().unwrap_or(Path::new("."));
        // Created 0600: the index holds names.
        let tmp = tempfile::Builder::new()
            .prefix(".phones-")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp.reopen()?);
        out.write_all(&[0u8; HEADER])?;
        Ok(PhoneWriter {
            tmp,
            out,
            final_path: final_path.to_owned(),
            generation,
            codes: Vec::new(),
            offsets: Vec::new(),
            blob_len: 0,
            group: Vec::new(),
            group_code: None,
            group_count: 0,
        })
    }

    /// Adds one entry; calls must come in (code, id, field) order, one per (id, field).
    pub fn push(&mut self, code: u64, id: &str, field: &str, entry: &[u8]) -> std::io::Result<()> {
        if self.group_code != Some(code) || self.group_count == u16::MAX {
            self.end_group()?;
            self.group_code = Some(code);
            self.group.extend_from_slice(&[0, 0]);
        }
        let too_long = |what| std::io::Error::other(format!("{what} too long for the index"));
        self.group
            .push(u8::try_from(id.len()).map_err(|_| too_long("record Id"))?);
        self.group.extend_from_slice(id.as_bytes());
        self.group
            .push(u8::try_from(field.len()).map_err(|_| too_long("field name"))?);
        self.group.extend_from_slice(field.as_bytes());
        let n = u16::try_from(entry.len()).map_err(|_| too_long("entry"))?;
        self.group.extend_from_slice(&n.to_le_bytes());
        self.group.extend_from_slice(entry);
        self.group_count += 1;
        Ok(())
    }

    fn end_group(&mut self) -> std::io::Result<()> {
        let Some(code) = self.group_code.take() else {
            return Ok(());
        };
        self.group[..2].copy_from_slice(&self.group_count.to_le_bytes());
        let len = u32::try_from(self.group.len())
            .map_err(|_| std::io::Error::other("a number has too many entries"))?;
        if self.codes.last() == Some(&code) {
            // More than 65,535 entries under one number: the rest are dropped (no real org
            // has that; a lookup would show the first ones anyway).
            self.group.clear();
            self.group_count = 0;
            return Ok(());
        }
        self.codes.push(code);
        self.offsets.push(self.blob_len);
        self.out.write_all(&len.to_le_bytes())?;
        self.out
            .write_all(&group_crc(code, &self.group).to_le_bytes())?;
        self.out.write_all(&self.group)?;
        self.blob_len += 8 + u64::from(len);
        self.group.clear();
        self.group_count = 0;
        Ok(())
    }

    /// Writes the tables and header, syncs, and renames the file into place.
    pub fn finish(mut self) -> std::io::Result<PathBuf> {
        self.end_group()?;
        let tables = (HEADER as u64 + self.blob_len).div_ceil(8) * 8;
        let pad = tables - (HEADER as u64 + self.blob_len);
        self.out.write_all(&vec![0u8; pad as usize])?;
        let mut crc = crc32fast::Hasher::new();
        for v in self.codes.iter().chain(self.offsets.iter()) {
            let b = v.to_le_bytes();
            crc.update(&b);
            self.out.write_all(&b)?;
        }
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&FORMAT.to_le_bytes());
        header[16..24].copy_from_slice(&self.generation.to_le_bytes());
        header[24..32].copy_from_slice(&(self.codes.len() as u64).to_le_bytes());
        header[32..40].copy_from_slice(&self.blob_len.to_le_bytes());
        header[40..44].copy_from_slice(&crc.finalize().to_le_bytes());
        header[48..56].copy_from_slice(&tables.to_le_bytes());
        let hcrc = header_crc(&header);
        header[44..48].copy_from_slice(&hcrc.to_le_bytes());
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&header)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        self.tmp.persist(&self.final_path).map_err(|e| e.error)?;
        #[cfg(unix)]
        if let Some(dir) = self.final_path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(self.final_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callsync_core::phone::Normalizer;
    use callsync_core::record::ObjectKind;

    fn entry(name: &str) -> IndexEntry {
        IndexEntry {
            kind: ObjectKind::Contact,
            person_account: false,
            last_modified: 7,
            name: name.into(),
            company: Some("Acme".into()),
            account_id: None,
            person_contact_id: None,
        }
    }

    fn enc(e: &IndexEntry) -> Vec<u8> {
        bincode::serde::encode_to_vec(e, bincode::config::standard()).unwrap()
    }

    /// Every kind of key gets its own code: E.164 and digits-only keys with the same digits,
    /// and digits-only keys differing only by leading zeros.
    #[test]
    fn codes_tell_every_key_apart() {
        let jp = Normalizer::from_codes("JP", &[]).unwrap();
        let cases = [
            jp.key("+81 3-1234-5678").unwrap(),
            PhoneKey::Digits("81312345678".into()),
            PhoneKey::Digits("0123".into()),
            PhoneKey::Digits("123".into()),
            PhoneKey::Digits("00123".into()),
            PhoneKey::Digits("99999999999999999".into()),
            jp.key("+1 212 555 0100").unwrap(),
        ];
        let codes: std::collections::HashSet<u64> = cases.iter().map(code).collect();
        assert_eq!(codes.len(), cases.len());
    }

    fn write(dir: &Path, gen: u64, items: &[(u64, &str, &str, &str)]) -> PathBuf {
        let path = dir.join(format!("phones-{gen}.idx"));
        let mut w = PhoneWriter::create(&path, gen).unwrap();
        for (c, id, f, name) in items {
            w.push(*c, id, f, &enc(&entry(name))).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn written_entries_are_found_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let items = [
            (5, "003000000000001AAA", "MobilePhone", "a"),
            (5, "003000000000001AAA", "Phone", "a"),
            (5, "003000000000002AAA", "Phone", "b"),
            (9, "003000000000003AAA", "Phone", "c"),
        ];
        let p = write(d.path(), 3, &items);
        let f = PhoneFile::open(&p, 3).unwrap();
        assert_eq!(f.numbers(), 2);
        let h = f.hits(5).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[2].entry.name, "b");
        assert_eq!(f.hits(9).unwrap()[0].field, "Phone");
        for miss in [0, 4, 6, 10, u64::MAX] {
            assert!(f.hits(miss).unwrap().is_empty());
        }
        // An empty index is a valid file.
        let p = write(d.path(), 4, &[]);
        assert!(PhoneFile::open(&p, 4).unwrap().hits(5).unwrap().is_empty());
    }

    /// Truncation, another generation, and a flipped byte anywhere are all refused: at open
    /// for the header and tables, at the read for a group.
    #[test]
    fn damage_is_refused_never_misread() {
        let d = tempfile::tempdir().unwrap();
        let items: Vec<(u64, String)> = (0..200u64)
            .map(|i| (i * 3, format!("003{:012}AAA", i)))
            .collect();
        let refs: Vec<(u64, &str, &str, &str)> = items
            .iter()
            .map(|(c, id)| (*c, id.as_str(), "Phone", "someone"))
            .collect();
        let p = write(d.path(), 1, &refs);
        let good = std::fs::read(&p).unwrap();
        assert!(PhoneFile::open(&p, 2).is_err(), "another generation");
        let bad = d.path().join("bad.idx");
        std::fs::write(&bad, &good[..good.len() - 3]).unwrap();
        assert!(PhoneFile::open(&bad, 1).is_err(), "truncated");
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let mut b = good.clone();
            let at = rng.usize(0..b.len());
            b[at] ^= 1 << rng.u8(0..8);
            std::fs::write(&bad, &b).unwrap();
            let Ok(f) = PhoneFile::open(&bad, 1) else {
                continue;
            };
            // Opened: the flip is in a group, which reads as damaged or, if it is in padding
            // no reader looks at, as the right answer.
            for (c, id) in &items {
                if let Ok(h) = f.hits(*c) {
                    assert!(h.len() == 1 && h[0].id.as_str() == id);
                }
            }
        }
    }
}
