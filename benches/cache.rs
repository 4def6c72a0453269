//! Cache benchmark: `cargo bench --bench cache` (100,000 and 1,000,000 records in one run; set
//! `CALLSYNC_BENCH_RECORDS=N[,N…]` for other sizes).
//!
//! Per size, each phase in its own process so that each memory figure belongs to one job: a
//! child ingests the synthetic records into a fresh cache (sled records + the phone index
//! file); a child reopens it and serves lookups (80 % hits, 20 % misses; full lookup:
//! normalization, index, delta, rules), then makes 1,000 incremental upserts and serves again
//! (the delta path), then 20,000 more (a background rebuild); a third child does the same
//! after the OS dropped the cache's pages (`posix_fadvise(DONTNEED)`: the first lookup after a
//! reboot). The parent runs the same lookups against an in-memory `HashMap` (the floor).
//!
//! `CALLSYNC_BENCH_KEEP_ORG=FILE` writes the generated org to FILE and stops: the ingest phase
//! can then be run (and profiled) alone with `CALLSYNC_BENCH_PHASE=ingest
//! CALLSYNC_BENCH_DIR=<new dir> CALLSYNC_BENCH_LOOKUPS=FILE` on the bench executable.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use callsync_core::lookup::{rank, IndexEntry, IndexHit, LookupRules};
use callsync_core::phone::Normalizer;
use callsync_core::record::{from_sobject, CachedRecord};
use callsync_sim::synth::{self, SynthSpec};
use callsync_store::cache::{Cache, CacheOptions, Change};
use callsync_store::import;
use callsync_store::lookup;
use rayon::prelude::*;

const SEED: u64 = 20261121;
const BATCH: usize = 2_000;
const LOOKUPS: usize = 100_000;

fn sizes() -> Vec<usize> {
    std::env::var("CALLSYNC_BENCH_RECORDS")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

fn cache_mb() -> u64 {
    std::env::var("CALLSYNC_BENCH_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CacheOptions::default().cache_capacity / (1024 * 1024))
}

fn opts() -> CacheOptions {
    CacheOptions {
        cache_capacity: cache_mb() * 1024 * 1024,
        ..CacheOptions::default()
    }
}

fn normalizer() -> Normalizer {
    Normalizer::from_codes("JP", &[]).expect("JP")
}

mod common;
use common::{memory_mib, rss_mib};

/// The `p` quantile in µs.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    common::percentile(sorted, p).as_secs_f64() * 1e6
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn to_records(chunk: &[serde_json::Value], n: &Normalizer) -> Vec<Change> {
    chunk
        .par_iter()
        .map(|v| from_sobject(v, None, n, &()).map(Change::Upsert))
        .collect::<Result<Vec<_>, _>>()
        .expect("synthetic records convert")
}

fn phase_ingest(dir: &Path, file: &Path) {
    let n = normalizer();
    Normalizer::warm_up();
    let (cache, _) = Cache::open(dir, &opts()).expect("open");
    let mut last_report = Instant::now();
    let mut peak_during = 0f64;
    let t = Instant::now();
    let report = import::import_jsonl(file, &cache, &n, &LookupRules::default(), |bytes| {
        if last_report.elapsed() > Duration::from_secs(2) {
            let (rss, _) = rss_mib();
            peak_during = peak_during.max(rss);
            eprint!(
                "\r  ingest: {} MiB read, RSS {rss:.0} MiB   ",
                bytes / 1048576
            );
            last_report = Instant::now();
        }
    })
    .expect("import");
    let stats = cache.stats().expect("stats");
    // As `cache import` does: reopened once, so that sled's log is replayed now, not at the
    // agent's next start.
    drop(cache);
    let (cache, _) = Cache::open(dir, &opts()).expect("reopen");
    let busy = t.elapsed();
    let (rss, hwm) = rss_mib();
    drop(cache);
    eprintln!();
    assert_eq!(report.rejected_total, 0);
    println!("ingest_records {}", report.imported);
    println!(
        "ingest_rate {:.0}",
        report.imported as f64 / busy.as_secs_f64()
    );
    println!("ingest_seconds {:.2}", busy.as_secs_f64());
    println!("ingest_index_entries {}", stats.index_entries);
    println!("ingest_rss_end {rss:.0}");
    println!("ingest_rss_peak {hwm:.0}");
    println!("disk_bytes {}", dir_size(dir));
}

/// Upserts into the full cache (what a delta sync does): `count` existing records get a new
/// number, through the normal path (the delta). Returns records/s.
fn incremental(cache: &Cache, n: &Normalizer, count: usize, salt: u64) -> f64 {
    let mut rng = fastrand::Rng::with_seed(SEED ^ salt);
    let updates: Vec<serde_json::Value> = synth::generate(&SynthSpec::new(SEED, count))
        .map(|r| {
            let mut v = r.json;
            let fresh = format!("+{}", synth::fresh_number(&mut rng));
            v["Phone"] = serde_json::Value::String(synth::typed_form(&mut rng, &fresh));
            v
        })
        .collect();
    let t = Instant::now();
    for chunk in updates.chunks(500) {
        cache.apply(&to_records(chunk, n), &[]).expect("apply");
    }
    cache.flush().expect("flush");
    updates.len() as f64 / t.elapsed().as_secs_f64()
}

fn read_lookups(path: &Path) -> Vec<String> {
    let f = std::fs::File::open(path).expect("lookups file");
    std::io::BufReader::new(f)
        .lines()
        .map(|l| l.expect("line"))
        .collect()
}

/// Asks the OS to drop the cache's files from its page cache, as after a reboot.
#[cfg(unix)]
fn drop_page_cache(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("cache dir").flatten() {
        if e.path().is_file() {
            let f = std::fs::File::open(e.path()).expect("open");
            let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
        }
    }
}

#[cfg(not(unix))]
fn drop_page_cache(_: &Path) {}

/// One pass of lookups: full lookups (and the cache's own share after each), found count.
fn serve_pass(cache: &Cache, inputs: &[String], n: &Normalizer, prefix: &str) {
    let rules = LookupRules::default();
    let mut lat = Vec::with_capacity(inputs.len());
    let mut key_lat = Vec::with_capacity(inputs.len());
    let mut found = 0usize;
    for raw in inputs {
        let t = Instant::now();
        let r = lookup::lookup(cache, n, &rules, raw).expect("lookup");
        lat.push(t.elapsed());
        if r.best.is_some() {
            found += 1;
        }
        // The cache's own share: index + delta + rules, number already normalized (and its
        // pages just touched by the full lookup).
        let key = n.key(raw).expect("key");
        let t = Instant::now();
        let hits = cache.hits(&key).expect("hits");
        let _ = rank(hits, &rules);
        key_lat.push(t.elapsed());
    }
    lat.sort();
    key_lat.sort();
    let (rss, _) = rss_mib();
    let (anon, file, private) = memory_mib();
    println!("{prefix}_found {found}");
    for (name, v) in [("full", &lat), ("cache", &key_lat)] {
        println!("{prefix}_{name}_p50 {:.2}", percentile(v, 0.50));
        println!("{prefix}_{name}_p99 {:.2}", percentile(v, 0.99));
        println!("{prefix}_{name}_p999 {:.2}", percentile(v, 0.999));
    }
    println!("{prefix}_rss {rss:.0}");
    println!("{prefix}_anon {anon:.1}");
    println!("{prefix}_file {file:.1}");
    println!("{prefix}_private {private:.1}");
}

fn phase_serve(dir: &Path, lookups_file: &Path, cold: bool) {
    let inputs = read_lookups(lookups_file);
    let n = normalizer();
    let rules = LookupRules::default();
    if cold {
        drop_page_cache(dir);
    }
    let t = Instant::now();
    let (cache, report) = Cache::open(dir, &opts()).expect("reopen");
    let open = t.elapsed();
    let first = lookup::lookup(&cache, &n, &rules, &inputs[0]).expect("first lookup");
    let first_total = t.elapsed();
    assert!(report.rebuilt.is_none() && !report.reindexed);
    let _ = first;
    println!("serve_open_ms {:.1}", open.as_secs_f64() * 1e3);
    println!(
        "serve_first_lookup_ms {:.1}",
        first_total.as_secs_f64() * 1e3
    );
    serve_pass(&cache, &inputs, &n, "serve");
    // 1,000 incremental upserts: lookups now consult the delta too.
    let rate = incremental(&cache, &n, 1_000, 0x5EED);
    println!("delta_records {}", cache.index_delta());
    serve_pass(&cache, &inputs, &n, "delta");
    println!("delta_upsert_rate {rate:.0}");
    // 20,000 more: past the threshold, a background rebuild folds the delta into a new file.
    let rate = incremental(&cache, &n, 20_000, 0xF00D);
    let t = Instant::now();
    cache.wait_for_index();
    println!("incremental_rate {rate:.0}");
    println!("rebuild_wait_s {:.1}", t.elapsed().as_secs_f64());
    println!("after_rebuild_delta {}", cache.index_delta());
    let (_, hwm) = rss_mib();
    println!("serve_rss_peak {hwm:.0}");
}

fn run_child(phase: &str, dir: &Path, lookups: &Path) -> HashMap<String, String> {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .env("CALLSYNC_BENCH_PHASE", phase)
        .env("CALLSYNC_BENCH_DIR", dir)
        .env("CALLSYNC_BENCH_LOOKUPS", lookups)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("spawn phase");
    assert!(out.status.success(), "phase {phase} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn main() {
    if let Ok(phase) = std::env::var("CALLSYNC_BENCH_PHASE") {
        let dir = PathBuf::from(std::env::var("CALLSYNC_BENCH_DIR").expect("dir"));
        let file = PathBuf::from(std::env::var("CALLSYNC_BENCH_LOOKUPS").expect("file"));
        match phase.as_str() {
            "ingest" => phase_ingest(&dir, &file),
            "serve" => phase_serve(&dir, &file, false),
            "cold" => phase_serve(&dir, &file, true),
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    println!(
        "callsync cache benchmark: sled cache_capacity {} MiB, {LOOKUPS} lookups (80 % hits) per pass",
        cache_mb()
    );
    for total in sizes() {
        bench_size(total);
    }
}

/// Generates `total` records, measures the cache against the HashMap floor and prints a table.
fn bench_size(total: usize) {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("cache");
    let lookups_path = work.path().join("lookups.txt");

    // Lookup inputs and the in-memory reference, from the same generated data.
    let n = normalizer();
    let mut rng = fastrand::Rng::with_seed(SEED ^ 0xABCD);
    let mut all_numbers: HashSet<String> = HashSet::new();
    let mut hit_pool: Vec<String> = Vec::new();
    let mut reference: HashMap<Vec<u8>, Vec<IndexHit>> = HashMap::new();
    let t = Instant::now();
    let gen: Vec<serde_json::Value> = synth::generate(&SynthSpec::new(SEED, total))
        .map(|r| {
            for num in &r.numbers {
                all_numbers.insert(num.clone());
                if rng.usize(0..total.max(1)) < LOOKUPS {
                    hit_pool.push(num.clone());
                }
            }
            r.json
        })
        .collect();
    let gen_time = t.elapsed();
    let t = Instant::now();
    for chunk in gen.chunks(BATCH) {
        for change in to_records(chunk, &n) {
            let Change::Upsert(r) = change else { continue };
            add_to_reference(&mut reference, &r);
        }
    }
    let ref_build = t.elapsed();
    let mut inputs = Vec::with_capacity(LOOKUPS);
    while inputs.len() < LOOKUPS {
        if rng.u8(0..100) < 80 && !hit_pool.is_empty() {
            let d = &hit_pool[rng.usize(0..hit_pool.len())];
            inputs.push(synth::typed_form(&mut rng, d));
        } else {
            let d = synth::fresh_number(&mut rng);
            if !all_numbers.contains(&d) {
                inputs.push(synth::typed_form(&mut rng, &d));
            }
        }
    }
    rng.shuffle(&mut inputs);
    let mut f = std::fs::File::create(&lookups_path).expect("lookups");
    for i in &inputs {
        writeln!(f, "{i}").expect("write");
    }
    drop(f);
    eprintln!(
        "{total} records: generated in {:.1} s; reference HashMap built in {:.1} s",
        gen_time.as_secs_f64(),
        ref_build.as_secs_f64()
    );

    let org_path = work.path().join("org.jsonl");
    let mut org = std::io::BufWriter::new(std::fs::File::create(&org_path).expect("org file"));
    for v in &gen {
        writeln!(org, "{v}").expect("write");
    }
    org.flush().expect("flush");
    drop(org);
    drop(gen);
    if let Ok(keep) = std::env::var("CALLSYNC_BENCH_KEEP_ORG") {
        std::fs::copy(&org_path, keep).expect("keep");
        return;
    }
    let ingest = run_child("ingest", &dir, &org_path);
    let index_bytes = index_file_size(&dir);
    let serve = run_child("serve", &dir, &lookups_path);
    let cold = run_child("cold", &dir, &lookups_path);

    // The floor: the same lookups against the HashMap (normalize + get + rules).
    let rules = LookupRules::default();
    let mut lat = Vec::with_capacity(inputs.len());
    let mut key_lat = Vec::with_capacity(inputs.len());
    let mut found = 0;
    for raw in &inputs {
        let t = Instant::now();
        let key = n.key(raw).expect("key");
        let hits = reference
            .get(&key.index_bytes())
            .cloned()
            .unwrap_or_default();
        if !rank(hits, &rules).is_empty() {
            found += 1;
        }
        lat.push(t.elapsed());
        let t = Instant::now();
        let hits = reference
            .get(&key.index_bytes())
            .cloned()
            .unwrap_or_default();
        let _ = rank(hits, &rules);
        key_lat.push(t.elapsed());
    }
    lat.sort();
    key_lat.sort();
    let (ref_rss, _) = rss_mib();

    let g = |m: &HashMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_else(|| "?".into());
    let f = |m: &HashMap<String, String>, k: &str| g(m, k).parse::<f64>().unwrap_or(f64::NAN);
    let floor = |v: &[Duration]| {
        format!(
            "{:.2} / {:.2} / {:.2}",
            percentile(v, 0.5),
            percentile(v, 0.99),
            percentile(v, 0.999)
        )
    };
    // Three figures of one child, "a / b / c".
    let three = |m: &HashMap<String, String>, p: &str, names: [&str; 3]| {
        names.map(|n| g(m, &format!("{p}_{n}"))).join(" / ")
    };
    let lat3 = |m: &HashMap<String, String>, p: &str| three(m, p, ["p50", "p99", "p999"]);
    let mem = |m: &HashMap<String, String>, p: &str| three(m, p, ["anon", "private", "rss"]);
    let ref_p50 = percentile(&lat, 0.5);
    println!();
    println!("### {total} records");
    println!();
    println!("| measure | callsync cache | in-memory HashMap (floor) |");
    println!("|---|---|---|");
    println!(
        "| ingest: `cache import` into an empty cache (records/s, incl. JSON parsing, normalization, index build) | {} ({} s) | – |",
        g(&ingest, "ingest_rate"),
        g(&ingest, "ingest_seconds")
    );
    println!(
        "| peak RSS during ingest (MiB) | {} | – |",
        g(&ingest, "ingest_rss_peak")
    );
    println!(
        "| on disk: sled + index file (MiB) | {:.0} (index file {:.0}) | – |",
        f(&ingest, "disk_bytes") / 1048576.0,
        index_bytes as f64 / 1048576.0
    );
    println!(
        "| index entries | {} | {} numbers |",
        g(&ingest, "ingest_index_entries"),
        reference.len()
    );
    println!(
        "| reopen → first answer (ms), warm / cold page cache | {} / {} | – |",
        g(&serve, "serve_first_lookup_ms"),
        g(&cold, "serve_first_lookup_ms")
    );
    println!(
        "| full lookup p50 / p99 / p99.9 (µs) | {} | {} |",
        lat3(&serve, "serve_full"),
        floor(&lat)
    );
    println!(
        "| full lookup p50 ratio to the floor | {:.2}× | 1× |",
        f(&serve, "serve_full_p50") / ref_p50
    );
    println!(
        "| cache part (number normalized) p50 / p99 / p99.9 (µs) | {} | {} |",
        lat3(&serve, "serve_cache"),
        floor(&key_lat)
    );
    println!(
        "| full lookup, cold page cache p50 / p99 / p99.9 (µs) | {} | – |",
        lat3(&cold, "serve_full")
    );
    println!(
        "| full lookup after 1,000 upserts (delta {}) p50 / p99 / p99.9 (µs) | {} | – |",
        g(&serve, "delta_records"),
        lat3(&serve, "delta_full")
    );
    println!(
        "| memory serving: private (RssAnon) / Linux private / RSS (MiB) | {} | {ref_rss:.0} RSS (whole bench process) |",
        mem(&serve, "serve")
    );
    println!(
        "| memory serving after 1,000 upserts (same) | {} | – |",
        mem(&serve, "delta")
    );
    println!(
        "| memory serving, cold start (same) | {} | – |",
        mem(&cold, "serve")
    );
    println!(
        "| lookups that found a record | {} | {found} |",
        g(&serve, "serve_found")
    );
    println!(
        "| incremental upserts, number changed (records/s); background rebuild after 20,000 (s to wait) | {} ({} s, delta left {}) | – |",
        g(&serve, "incremental_rate"),
        g(&serve, "rebuild_wait_s"),
        g(&serve, "after_rebuild_delta")
    );
}

fn index_file_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("phones-"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn add_to_reference(map: &mut HashMap<Vec<u8>, Vec<IndexHit>>, r: &CachedRecord) {
    if !r.is_indexed() {
        return;
    }
    let entry = IndexEntry::of_record(r);
    for p in &r.phones {
        if let Some(k) = &p.key {
            map.entry(k.index_bytes()).or_default().push(IndexHit {
                id: r.id.clone(),
                field: p.field.clone(),
                entry: entry.clone(),
            });
        }
    }
}
