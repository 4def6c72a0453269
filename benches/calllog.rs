//! Call-log benchmark: `cargo bench --bench calllog`. Prints parse throughput of the native log
//! (lines/s, from a real file) and the latency from a line appended to the `CallEvent` coming
//! out of the follower (notify + debounce + read + parse), p50/p99 over 300 lines.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callsync_calllog::cursor::{Cursor, CursorStore};
use callsync_calllog::follow::{Follower, Waker};
use callsync_calllog::native::NativeSource;
use callsync_calllog::Source;

fn line(i: usize) -> String {
    format!(
        "{{\"v\":1,\"call_id\":\"call-{i}\",\"event\":\"ringing\",\"at\":\"2026-11-21T10:00:00+09:00\",\"direction\":\"inbound\",\"remote\":\"03-1234-{:04}\",\"agent\":\"taro\"}}\n",
        i % 10_000
    )
}

mod common;

/// The `p` quantile in ms.
fn pct(v: &[Duration], p: f64) -> f64 {
    common::percentile(v, p).as_secs_f64() * 1e3
}

fn main() {
    let dir = tempfile::tempdir().unwrap();

    // Throughput: 200,000 lines from a file.
    let big = dir.path().join("big.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    const N: usize = 200_000;
    for i in 0..N {
        f.write_all(line(i).as_bytes()).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let mut src = NativeSource::new("bench", &big);
    let t = Instant::now();
    let p = src.poll(&Cursor::default());
    let took = t.elapsed();
    assert_eq!(p.events.len(), N);
    let rate = N as f64 / took.as_secs_f64();

    // Latency: appends every 20 ms, timed from just before the write to the event.
    let log = dir.path().join("live.jsonl");
    std::fs::write(&log, "").unwrap();
    let sources: Vec<Box<dyn Source>> = vec![Box::new(NativeSource::new("live", &log))];
    let mut follower =
        Follower::new(sources, CursorStore::new(dir.path().join("cur.json"))).unwrap();
    let mut waker = Waker::new(follower.dirs(), Duration::from_millis(10)).unwrap();
    follower.poll();
    const M: usize = 300;
    let written: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; M]));
    let writer = {
        let written = written.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            for i in 0..M {
                std::thread::sleep(Duration::from_millis(20));
                written.lock().unwrap()[i] = Some(Instant::now());
                f.write_all(line(i).as_bytes()).unwrap();
            }
        })
    };
    let mut lat = Vec::with_capacity(M);
    let deadline = Instant::now() + Duration::from_secs(60);
    while lat.len() < M && Instant::now() < deadline {
        waker.wait(Duration::from_secs(2));
        let (batches, _) = follower.poll();
        let now = Instant::now();
        for b in &batches {
            for e in &b.events {
                let i: usize = e.call_id.trim_start_matches("call-").parse().unwrap();
                if let Some(w) = written.lock().unwrap()[i] {
                    lat.push(now - w);
                }
            }
            follower.ack(b).unwrap();
        }
    }
    writer.join().unwrap();
    lat.sort();
    println!("callsync call-log benchmark");
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| native log parse throughput ({N} lines from a file) | {rate:.0} lines/s | ≥ 100,000 |"
    );
    println!(
        "| line appended → CallEvent (notify, 10 ms debounce, read, parse), p50 / p99 over {} lines | {:.1} / {:.1} ms | p99 ≤ 100 ms |",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}
