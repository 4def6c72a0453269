//! The phone index file (`callsync_store::cache::phones`), two ways:
//! - any bytes, with the header's and the tables' CRCs made right so that the reader's size,
//!   offset and group checks are what is exercised: opening and looking up never panic, and a
//!   group whose CRC does not match is refused, never decoded;
//! - any entries written with `PhoneWriter` read back exactly, and nothing else is found.
#![no_main]
use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use callsync_core::lookup::IndexEntry;
use callsync_core::record::ObjectKind;
use callsync_store::cache::phones::{PhoneFile, PhoneWriter};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>, Vec<u64>),
    Written(Vec<(u8, u16, bool, String)>),
}

thread_local! {
    static DIR: tempfile::TempDir = tempfile::tempdir().expect("temp dir");
}

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn raw(dir: &std::path::Path, mut b: Vec<u8>, codes: &[u64]) {
    if b.len() >= 64 {
        let tables = u64::from_le_bytes(b[48..56].try_into().unwrap_or_default()) as usize;
        if let Some(t) = b.get(tables.min(b.len())..) {
            let c = crc(&[t]);
            b[40..44].copy_from_slice(&c.to_le_bytes());
        }
        let c = crc(&[&b[..44], &b[48..64]]);
        b[44..48].copy_from_slice(&c.to_le_bytes());
    }
    let generation = b
        .get(16..24)
        .map(|g| u64::from_le_bytes(g.try_into().unwrap_or_default()))
        .unwrap_or(0);
    let path = dir.join("raw.idx");
    std::fs::write(&path, &b).expect("write");
    if let Ok(f) = PhoneFile::open(&path, generation) {
        for code in codes.iter().copied().chain([0, u64::MAX]) {
            let _ = f.hits(code);
        }
    }
}

fn written(dir: &std::path::Path, items: &[(u8, u16, bool, String)]) {
    // (code, id, field) → name, in the writer's order.
    let mut want: BTreeMap<(u64, String, String), String> = BTreeMap::new();
    for (code, id, mobile, name) in items {
        let id = format!("003{id:012}AAA");
        let field = if *mobile { "MobilePhone" } else { "Phone" };
        want.insert(
            (u64::from(*code), id, field.into()),
            name.chars().take(40).collect(),
        );
    }
    let entry = |name: &str| IndexEntry {
        kind: ObjectKind::Contact,
        person_account: false,
        last_modified: 1,
        name: name.into(),
        company: None,
        account_id: None,
        person_contact_id: None,
    };
    let path = dir.join("written.idx");
    let mut w = PhoneWriter::create(&path, 7).expect("create");
    for ((code, id, field), name) in &want {
        let bytes = bincode::serde::encode_to_vec(entry(name), bincode::config::standard())
            .expect("encode");
        w.push(*code, id, field, &bytes).expect("push");
    }
    w.finish().expect("finish");
    let f = PhoneFile::open(&path, 7).expect("a written file opens");
    for code in 0..=256u64 {
        let got: Vec<(u64, String, String, String)> = f
            .hits(code)
            .expect("a written group reads")
            .into_iter()
            .map(|h| (code, h.id.as_str().to_owned(), h.field, h.entry.name))
            .collect();
        let expected: Vec<(u64, String, String, String)> = want
            .iter()
            .filter(|((c, _, _), _)| *c == code)
            .map(|((c, id, field), name)| (*c, id.clone(), field.clone(), name.clone()))
            .collect();
        assert_eq!(got, expected);
    }
}

fuzz_target!(|input: Input| {
    DIR.with(|d| match input {
        Input::Raw(bytes, codes) => raw(d.path(), bytes, &codes),
        Input::Written(items) => written(d.path(), &items),
    });
});
