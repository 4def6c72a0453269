use super::*;
use callsync_core::phone::Normalizer;
use callsync_core::record::StoredPhone;

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
        c.apply_bulk(&records, &[]).unwrap();
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
    c.apply_bulk(&[Change::Upsert(moved)], &[]).unwrap();
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
