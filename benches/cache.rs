//! Cache benchmark: `cargo bench --bench cache` (1,000,000 records; set
//! `CALLSYNC_BENCH_RECORDS` for another size).
//!
//! Three phases, so that each RSS figure belongs to one job: a child process ingests the
//! synthetic records into a fresh sled cache; a second child reopens it and serves lookups
//! (80 % hits, 20 % misses, full lookup: normalization, prefix scan, decoding, priority rules);
//! the parent runs the same lookups against an in-memory `HashMap` built from the same data.

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

fn records_n() -> usize {
    std::env::var("CALLSYNC_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
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
use common::rss_mib;

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
    let busy = t.elapsed();
    let stats = cache.stats().expect("stats");
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

/// Incremental upserts into the full cache (what a delta sync does): existing records get a
/// new number, through the normal path that moves their index entries.
fn incremental(cache: &Cache, n: &Normalizer) -> f64 {
    let mut rng = fastrand::Rng::with_seed(SEED ^ 0x5EED);
    let updates: Vec<serde_json::Value> = synth::generate(&SynthSpec::new(SEED, 20_000))
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

fn phase_serve(dir: &Path, lookups_file: &Path) {
    let inputs = read_lookups(lookups_file);
    let n = normalizer();
    let rules = LookupRules::default();
    let (rss_before, _) = rss_mib();
    let t = Instant::now();
    let (cache, report) = Cache::open(dir, &opts()).expect("reopen");
    let open = t.elapsed();
    let (rss_open, _) = rss_mib();
    let first = lookup::lookup(&cache, &n, &rules, &inputs[0]).expect("first lookup");
    let first_total = t.elapsed();
    assert!(report.rebuilt.is_none() && !report.reindexed);
    let _ = first;
    let mut lat = Vec::with_capacity(inputs.len());
    let mut key_lat = Vec::with_capacity(inputs.len());
    let mut found = 0usize;
    for raw in &inputs {
        let t = Instant::now();
        let r = lookup::lookup(&cache, &n, &rules, raw).expect("lookup");
        lat.push(t.elapsed());
        if r.best.is_some() {
            found += 1;
        }
        // The cache's own share: scan + decode + rules, number already normalized.
        let key = n.key(raw).expect("key");
        let t = Instant::now();
        let hits = cache.hits(&key).expect("hits");
        let _ = rank(hits, &rules);
        key_lat.push(t.elapsed());
    }
    lat.sort();
    key_lat.sort();
    let (rss, hwm) = rss_mib();
    println!("serve_rss_before_open {rss_before:.0}");
    println!("serve_open_ms {:.1}", open.as_secs_f64() * 1e3);
    println!("serve_rss_after_open {rss_open:.0}");
    println!(
        "serve_first_lookup_ms {:.1}",
        first_total.as_secs_f64() * 1e3
    );
    println!("serve_found {found}");
    for (name, v) in [("full", &lat), ("cache", &key_lat)] {
        println!("serve_{name}_p50 {:.2}", percentile(v, 0.50));
        println!("serve_{name}_p99 {:.2}", percentile(v, 0.99));
        println!("serve_{name}_p999 {:.2}", percentile(v, 0.999));
    }
    println!("serve_rss {rss:.0}");
    println!("serve_rss_peak {hwm:.0}");
    println!("incremental_rate {:.0}", incremental(&cache, &n));
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
        match phase.as_str() {
            "ingest" => phase_ingest(
                &dir,
                Path::new(&std::env::var("CALLSYNC_BENCH_LOOKUPS").expect("file")),
            ),
            "serve" => phase_serve(
                &dir,
                Path::new(&std::env::var("CALLSYNC_BENCH_LOOKUPS").expect("lookups")),
            ),
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    let total = records_n();
    let cache_mb_default = cache_mb();
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("cache");
    let lookups_path = work.path().join("lookups.txt");
    println!(
        "callsync cache benchmark: {total} records, sled cache_capacity {} MiB, {LOOKUPS} lookups (80 % hits)",
        cache_mb()
    );

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
        "  generated in {:.1} s; reference HashMap built in {:.1} s",
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
    let ingest = run_child("ingest", &dir, &org_path);
    let serve = run_child("serve", &dir, &lookups_path);
    // The same serving run at other sled cache sizes (memory against tail latency).
    let sizes: Vec<u64> = std::env::var("CALLSYNC_BENCH_SERVE_MB")
        .unwrap_or_else(|_| "16,32,128,256".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let mut tradeoff = Vec::new();
    for mb in sizes {
        std::env::set_var("CALLSYNC_BENCH_CACHE_MB", mb.to_string());
        tradeoff.push((mb, run_child("serve", &dir, &lookups_path)));
    }

    // Reference: the same lookups against the HashMap (normalize + get + rules).
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
    let ref_p50 = percentile(&lat, 0.5);
    let ref_key_p50 = percentile(&key_lat, 0.5);
    println!();
    println!("| measure | sled cache | in-memory HashMap | target |");
    println!("|---|---|---|---|");
    println!(
        "| ingest: `cache import` of a JSONL file into an empty cache (records/s, incl. JSON parsing, normalization, index build) | {} | – | ≥ 30,000 |",
        g(&ingest, "ingest_rate")
    );
    println!(
        "| ingest time (s) | {} | – | – |",
        g(&ingest, "ingest_seconds")
    );
    println!(
        "| incremental upserts into the full cache, number changed (records/s) | {} | – | – |",
        g(&serve, "incremental_rate")
    );
    println!(
        "| peak RSS during ingest (MiB) | {} | – | – |",
        g(&ingest, "ingest_rss_peak")
    );
    println!(
        "| on-disk size (MiB) | {:.0} | – | – |",
        f(&ingest, "disk_bytes") / 1048576.0
    );
    println!(
        "| index entries | {} | {} keys | – |",
        g(&ingest, "ingest_index_entries"),
        reference.len()
    );
    println!(
        "| reopen + first lookup (ms) | {} (open {}) | – | ≤ 1000 |",
        g(&serve, "serve_first_lookup_ms"),
        g(&serve, "serve_open_ms")
    );
    for (label, sk, rp50, rl) in [
        ("full lookup", "full", ref_p50, &lat),
        (
            "cache part (number normalized)",
            "cache",
            ref_key_p50,
            &key_lat,
        ),
    ] {
        println!(
            "| {label} p50 / p99 / p99.9 (µs) | {} / {} / {} | {:.2} / {:.2} / {:.2} | p99 ≤ 50 |",
            g(&serve, &format!("serve_{sk}_p50")),
            g(&serve, &format!("serve_{sk}_p99")),
            g(&serve, &format!("serve_{sk}_p999")),
            rp50,
            percentile(rl, 0.99),
            percentile(rl, 0.999)
        );
        println!(
            "| {label} p50 ratio sled / HashMap | {:.1}× | 1× | ≤ 5× |",
            f(&serve, &format!("serve_{sk}_p50")) / rp50
        );
    }
    println!(
        "| lookups that found a record | {} | {found} | – |",
        g(&serve, "serve_found")
    );
    println!(
        "| RSS after reopen / while serving lookups (MiB) | {} / {} (peak {}) | {ref_rss:.0} (whole bench process) | ≤ 150 |",
        g(&serve, "serve_rss_after_open"),
        g(&serve, "serve_rss"),
        g(&serve, "serve_rss_peak")
    );
    let mut rows = vec![(cache_mb_default, serve)];
    rows.extend(tradeoff);
    rows.sort_by_key(|(mb, _)| *mb);
    print_tradeoff(&rows);
}

fn print_tradeoff(rows: &[(u64, HashMap<String, String>)]) {
    println!();
    println!("| sled cache (MiB) | RSS serving (MiB) | full lookup p50 / p99 / p99.9 (µs) | reopen + first lookup (ms) |");
    println!("|---|---|---|---|");
    for (mb, m) in rows {
        let g = |k: &str| m.get(k).cloned().unwrap_or_else(|| "?".into());
        println!(
            "| {mb} | {} | {} / {} / {} | {} |",
            g("serve_rss"),
            g("serve_full_p50"),
            g("serve_full_p99"),
            g("serve_full_p999"),
            g("serve_first_lookup_ms")
        );
    }
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
