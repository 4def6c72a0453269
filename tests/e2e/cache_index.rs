//! The phone index file under kills: `callsync cache rebuild` killed (SIGKILL; TerminateProcess
//! on Windows) at random moments of its build, and an import that fills the delta killed
//! likewise. After every kill the next process serves exactly what the records say.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use callsync_sim::synth::{self, SynthSpec};
use serde_json::Value;

use crate::common::command;

const RECORDS: usize = 30_000;

fn write_jsonl(path: &Path, records: impl Iterator<Item = Value>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for r in records {
        writeln!(f, "{r}").unwrap();
    }
    f.flush().unwrap();
}

/// Names in `dir` containing `part`.
fn names(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

/// `lookup --json` for each number: what the agent would pop (exit status and answer).
fn answers(dir: &Path, numbers: &[String]) -> Vec<(Option<i32>, Value)> {
    numbers
        .iter()
        .map(|n| {
            let out = command(dir).args(["lookup", "--json", n]).output().unwrap();
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            (out.status.code(), v)
        })
        .collect()
}

fn run_ok(dir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = command(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// Starts `args` and kills it after `after`; returns whether it was still running.
fn kill_after(dir: &Path, args: &[&str], after: Duration) -> bool {
    let mut child = command(dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

#[test]
fn kills_during_index_rebuilds_and_delta_writes_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("user.toml"), "").unwrap();
    let seed = std::env::var("CALLSYNC_INDEX_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("index kill test seed: {seed} (CALLSYNC_INDEX_KILL_SEED={seed} reproduces it)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let base: Vec<synth::SynthRecord> = synth::generate(&SynthSpec::new(seed, RECORDS)).collect();
    let org = dir.join("org.jsonl");
    write_jsonl(&org, base.iter().map(|r| r.json.clone()));
    run_ok(dir, &["cache", "import", org.to_str().unwrap()]);

    // 3,000 records get a new number: below the rebuild threshold, so they live in the delta.
    let mut changed = Vec::new();
    let updates: Vec<Value> = base
        .iter()
        .take(3_000)
        .map(|r| {
            let mut v = r.json.clone();
            let fresh = format!("+{}", synth::fresh_number(&mut rng));
            v["Phone"] = Value::String(fresh.clone());
            changed.push(fresh);
            v
        })
        .collect();
    let delta = dir.join("delta.jsonl");
    write_jsonl(&delta, updates.iter().cloned());
    run_ok(dir, &["cache", "import", delta.to_str().unwrap()]);

    // The sample: numbers that moved (old and new), untouched ones, one never seen.
    let mut sample: Vec<String> = Vec::new();
    for i in 0..8 {
        let r = &base[rng.usize(0..3_000)];
        sample.extend(r.numbers.first().cloned());
        sample.push(changed[rng.usize(0..changed.len())].clone());
        let r = &base[rng.usize(3_000..RECORDS)];
        sample.extend(r.numbers.first().cloned());
        if i == 0 {
            sample.push(format!("+{}", synth::fresh_number(&mut rng)));
        }
    }
    let expected = answers(dir, &sample);
    assert!(
        expected.iter().filter(|(code, _)| *code == Some(0)).count() >= 12,
        "the sample should mostly match: {expected:?}"
    );

    let build = run_ok(dir, &["cache", "rebuild"]);
    assert_eq!(answers(dir, &sample), expected, "after a clean rebuild");
    // Back to a delta to fold: the same changes again, then kills at random moments.
    run_ok(dir, &["cache", "import", delta.to_str().unwrap()]);
    let mut killed_running = 0;
    // Until three kills landed mid-build (a build's time varies with the machine's load, so
    // some kills come after it ended), at most 15 rounds.
    for round in 0..15 {
        if killed_running >= 3 {
            break;
        }
        let at = build.mul_f64(rng.f64() * 0.7);
        if kill_after(dir, &["cache", "rebuild"], at) {
            killed_running += 1;
        }
        assert_eq!(
            answers(dir, &sample),
            expected,
            "after a rebuild killed at {at:?} (round {round}, seed {seed})"
        );
    }
    assert!(
        killed_running >= 3,
        "three kills should land mid-build ({killed_running} in 15 rounds; a build takes {build:?})"
    );
    // An import that changes the same records again, killed part-way: each batch is atomic,
    // so every sampled number answers either as before or as after, never anything else,
    // and the next complete import gives exactly the answers it gave before.
    for _ in 0..2 {
        let at = Duration::from_millis(rng.u64(50..600));
        kill_after(dir, &["cache", "import", delta.to_str().unwrap()], at);
        assert_eq!(answers(dir, &sample), expected, "import killed at {at:?}");
    }
    let files = names(&dir.join("data/cache"), "phones-");
    assert_eq!(files.len(), 1, "stale index files left: {files:?}");
    let sort_dirs = names(&dir.join("data"), ".callsync-index-");
    assert!(
        sort_dirs.is_empty(),
        "sort folders of killed builds left: {sort_dirs:?}"
    );
}
