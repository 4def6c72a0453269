use super::index::delta_key;
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

/// A damaged delta entry or index file never gives a wrong answer: the lookup is answered from
/// the records, and the index is rebuilt (at once in the background, and at the next open).
#[test]
fn damage_to_the_index_is_answered_around_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let id = RecordId::parse(C1).unwrap();
    {
        let c = open(&path);
        let r = record(ObjectKind::Contact, C1, &[("Phone", "0312345678")]);
        c.apply(&[Change::Upsert(r)], &[]).unwrap();
        let code = phones::code(&k("0312345678"));
        c.db.insert(delta_key(code, &id), vec![99, 1, 2]).unwrap();
        assert_eq!(c.hits(&k("0312345678")).unwrap().len(), 1);
        c.wait_for_index();
        assert_eq!(c.index_delta(), 0, "rebuilt at once");
        assert_eq!(c.hits(&k("0312345678")).unwrap().len(), 1);
    }
    let (c, report) = Cache::open(&path, &CacheOptions::default()).unwrap();
    assert!(!report.reindexed);
    assert_eq!(c.hits(&k("0312345678")).unwrap().len(), 1);
    // The file itself damaged where the entry is: refused at open, rebuilt.
    let file = c.index_file().unwrap();
    drop(c);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let (c, report) = Cache::open(&path, &CacheOptions::default()).unwrap();
    let hits = c.hits(&k("0312345678")).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, id);
    drop((c, report));
    // Gone altogether, or cut short: the same.
    for damage in [0, 1] {
        let (c, _) = Cache::open(&path, &CacheOptions::default()).unwrap();
        let file = c.index_file().unwrap();
        drop(c);
        if damage == 0 {
            std::fs::remove_file(&file).unwrap();
        } else {
            let len = std::fs::metadata(&file).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(len - 5)
                .unwrap();
        }
        let (c, report) = Cache::open(&path, &CacheOptions::default()).unwrap();
        assert!(report.reindexed);
        assert_eq!(c.hits(&k("0312345678")).unwrap().len(), 1);
    }
}

/// The index is a file beside sled's, rebuilt into a new one; older files and a build's
/// leftovers are removed.
#[test]
fn one_index_file_is_left_after_rebuilds_and_kills() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let c = open(&path);
    let r = record(ObjectKind::Contact, C1, &[("Phone", "0312345678")]);
    c.apply(&[Change::Upsert(r)], &[]).unwrap();
    c.reindex().unwrap();
    c.reindex().unwrap();
    drop(c);
    std::fs::write(path.join(".phones-abc.tmp"), b"half").unwrap();
    let c = open(&path);
    let files: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("phones-"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(c.hits(&k("0312345678")).unwrap().len(), 1);
}

/// Model-based: random records, numbers and change sequences (upserts, deletes, bulk loads
/// finished or killed, rebuilds in the foreground and in the background with writes going on,
/// reopening) against a plain map of records. After every step every number's hits equal the
/// model's: the rules applied to the records as they are.
mod model {
    use super::*;
    use proptest::prelude::*;

    const IDS: usize = 10;
    const NUMBERS: [&str; 8] = [
        "03-1234-5678",
        "06-6123-4567",
        "090-1111-2222",
        "+1 212 555 0100",
        "011-968-9173",
        "1234",
        "0312345670",
        "045-000-1111",
    ];

    #[derive(Clone, Debug)]
    struct Rec {
        id: usize,
        kind: u8,
        flag: bool,
        phones: Vec<(bool, usize)>,
        stamp: i64,
    }

    #[derive(Clone, Debug)]
    enum Op {
        Upsert(Vec<Rec>),
        Delete(usize),
        Bulk(Vec<Rec>, bool),
        Rebuild,
        /// A background rebuild with these writes made while it runs.
        Compact(Vec<Rec>),
        Reopen,
    }

    fn rec() -> impl Strategy<Value = Rec> {
        (
            0..IDS,
            0..3u8,
            any::<bool>(),
            prop::collection::vec((any::<bool>(), 0..NUMBERS.len()), 0..3),
            0..5i64,
        )
            .prop_map(|(id, kind, flag, phones, stamp)| Rec {
                id,
                kind,
                flag,
                phones,
                stamp,
            })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec(rec(), 1..4).prop_map(Op::Upsert),
            2 => (0..IDS).prop_map(Op::Delete),
            1 => (prop::collection::vec(rec(), 1..6), any::<bool>()).prop_map(|(r, f)| Op::Bulk(r, f)),
            1 => Just(Op::Rebuild),
            2 => prop::collection::vec(rec(), 0..6).prop_map(Op::Compact),
            1 => Just(Op::Reopen),
        ]
    }

    fn id_of(i: usize) -> String {
        format!("00{}{:012}AAA", ["3", "1", "Q"][i % 3], i)
    }

    fn to_record(r: &Rec) -> CachedRecord {
        let kind = [ObjectKind::Contact, ObjectKind::Account, ObjectKind::Lead][r.id % 3];
        let phones: Vec<(&str, &str)> = r
            .phones
            .iter()
            .map(|(mobile, n)| {
                let field = match (kind, mobile) {
                    (_, false) => "Phone",
                    (ObjectKind::Account, true) => "PersonMobilePhone",
                    (_, true) => "MobilePhone",
                };
                (field, NUMBERS[*n])
            })
            .collect();
        let mut c = record(kind, &id_of(r.id), &phones);
        c.name = format!("{} v{}", c.name, r.stamp);
        c.last_modified = r.stamp;
        match kind {
            ObjectKind::Account => c.is_person_account = r.flag,
            ObjectKind::Lead => c.is_converted = r.flag && r.kind == 0,
            _ => {}
        }
        c
    }

    fn expected(model: &BTreeMap<String, CachedRecord>, number: &PhoneKey) -> Vec<IndexHit> {
        let code = phones::code(number);
        let mut out: Vec<IndexHit> = model
            .values()
            .flat_map(|r| {
                index_entries(r)
                    .into_iter()
                    .filter(|e| e.code == code)
                    .map(|e| IndexHit {
                        id: r.id.clone(),
                        field: e.field,
                        entry: e.entry,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| (&a.id, &a.field).cmp(&(&b.id, &b.field)));
        out
    }

    fn check(c: &Cache, model: &BTreeMap<String, CachedRecord>, step: usize) {
        for n in NUMBERS {
            let key = k(n);
            assert_eq!(
                c.hits(&key).unwrap(),
                expected(model, &key),
                "step {step}, {n}"
            );
        }
        let indexed: u64 = model.values().map(|r| index_entries(r).len() as u64).sum();
        assert_eq!(c.stats().unwrap().index_entries, indexed, "step {step}");
    }

    fn upserts(model: &mut BTreeMap<String, CachedRecord>, recs: &[Rec]) -> Vec<Change> {
        recs.iter()
            .map(|r| {
                let c = to_record(r);
                model.insert(c.id.as_str().to_owned(), c.clone());
                Change::Upsert(c)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn the_index_answers_what_the_records_say(ops in prop::collection::vec(op(), 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c");
            let mut c = open(&path);
            let mut model: BTreeMap<String, CachedRecord> = BTreeMap::new();
            for (step, op) in ops.iter().enumerate() {
                match op {
                    Op::Upsert(recs) => {
                        let changes = upserts(&mut model, recs);
                        c.apply(&changes, &[]).unwrap();
                    }
                    Op::Delete(i) => {
                        model.remove(&id_of(*i));
                        let id = RecordId::parse(&id_of(*i)).unwrap();
                        c.apply(&[Change::Delete(id)], &[]).unwrap();
                    }
                    Op::Bulk(recs, finish) => {
                        let changes = upserts(&mut model, recs);
                        c.apply_bulk(&changes, &[]).unwrap();
                        if *finish {
                            c.finish_bulk().unwrap();
                        } else {
                            // Killed before finishing: the next open finishes it.
                            drop(c);
                            c = open(&path);
                        }
                    }
                    Op::Rebuild => c.reindex().unwrap(),
                    Op::Compact(recs) => {
                        // Something to fold, so that a build runs.
                        let seed = upserts(&mut model, &recs.iter().take(1).cloned().collect::<Vec<_>>());
                        c.apply(&seed, &[]).unwrap();
                        c.compact();
                        for r in recs.iter().skip(1) {
                            let changes = upserts(&mut model, std::slice::from_ref(r));
                            c.apply(&changes, &[]).unwrap();
                            check(&c, &model, step);
                        }
                        c.wait_for_index();
                    }
                    Op::Reopen => {
                        drop(c);
                        c = open(&path);
                    }
                }
                check(&c, &model, step);
            }
        }
    }
}
