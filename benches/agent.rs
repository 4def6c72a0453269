//! Agent resource benchmark: `cargo bench --bench agent`.
//!
//! Sets up a real desktop session as the tray test does (`tests/common/desktop.rs`: Xvfb, a
//! private D-Bus session bus, xfce4-panel as the StatusNotifier host, dunst as the notification
//! server), a simulated org in its own process and a data folder with about 100,000 cached records
//! (`CALLSYNC_BENCH_RECORDS` generated rows; 75,000 → ~100k records). Then it measures the
//! `callsync run` process (not this one):
//!
//! - start → tray visible: from spawning the agent to its StatusNotifierItem being registered
//!   with the host (5 starts, each stopped with the tray's Quit request);
//! - idle: CPU time (utime + stime from /proc) and RSS over `CALLSYNC_BENCH_IDLE_SECS`
//!   (default 600 s) with nothing happening, on the default sync schedule;
//! - ringing line → notification: a native call-log line is appended and flushed, and the clock
//!   stops when `dbus-monitor` sees the agent's `Notify` call reach the bus (60 calls, one at a
//!   time, half from known Contacts);
//! - Quit → process exit.
//!
//! `CALLSYNC_BENCH_WARMUP_SECS` (default 2) waits before the idle window; `CALLSYNC_BENCH_SYNC_SECS`
//! sets `sync.interval_secs` (default 300, the product's default).
//!
//! Without the desktop tools it measures idle headless only and says so.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use callsync_agent::control::{self, Request};
use callsync_store::paths::DataDir;

mod common;
#[path = "../tests/common/desktop.rs"]
mod desktop;
use common::{env_or, free_port, percentile, start_sim, wait_for_sim};
use desktop::Desktop;

/// (RSS MiB, CPU seconds) of a process, from /proc.
fn proc_usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    (rss, stat_cpu(&stat))
}

/// utime + stime in seconds from a `/proc/…/stat` line (10 ms ticks).
fn stat_cpu(stat: &str) -> f64 {
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let ticks = 100.0; // CLK_TCK on Linux
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / ticks
}

/// CPU seconds per live thread (tid → name, seconds), from /proc: the scheduler's
/// `se.sum_exec_runtime` (milliseconds, to the nanosecond) where the kernel shows it, else
/// utime + stime (10 ms ticks, too coarse for threads that wake briefly).
fn threads_cpu(pid: u32) -> std::collections::BTreeMap<u32, (String, f64)> {
    let mut m = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return m;
    };
    for t in dir.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map(|(n, _)| n.to_owned())
            .unwrap_or_default();
        let precise = std::fs::read_to_string(t.path().join("sched"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("se.sum_exec_runtime"))
                    .and_then(|l| l.rsplit(':').next())
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .map(|ms| ms / 1000.0);
        let cpu = precise.unwrap_or_else(|| stat_cpu(&stat));
        m.insert(tid, (name, cpu));
    }
    m
}

fn wait(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The desktop session (`tests/common/desktop.rs`, shared with the tray test), or `None` with
/// the reason printed.
fn desktop() -> Option<Desktop> {
    if !desktop::have("dbus-monitor") {
        println!("(no desktop session: `dbus-monitor` is missing; measuring headless only)");
        return None;
    }
    match Desktop::start(2) {
        Ok(d) => Some(d),
        Err(why) => {
            println!("(no desktop session: {why}; measuring headless only)");
            None
        }
    }
}

fn registered(env: &[(String, String)], pid: u32) -> bool {
    Command::new("dbus-send")
        .envs(env.iter().cloned())
        .args([
            "--session",
            "--print-reply",
            "--dest=org.kde.StatusNotifierWatcher",
            "/StatusNotifierWatcher",
            "org.freedesktop.DBus.Properties.Get",
            "string:org.kde.StatusNotifierWatcher",
            "string:RegisteredStatusNotifierItems",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("-{pid}-")))
        .unwrap_or(false)
}

fn agent(dir: &Path, env: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_callsync"))
        .arg("run")
        .env("CALLSYNC_DATA_DIR", dir.join("data"))
        .env("CALLSYNC_CONFIG", dir.join("user.toml"))
        .env("CALLSYNC_MANAGED_CONFIG", dir.join("managed.toml"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("DISPLAY")
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn quit(data: &DataDir, mut child: Child) -> Duration {
    let t = Instant::now();
    control::call(data, &Request::Quit, Duration::from_secs(5)).unwrap();
    child.wait().unwrap();
    t.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let records: usize = env_or("CALLSYNC_BENCH_RECORDS", 75_000);
    let idle_secs: u64 = env_or("CALLSYNC_BENCH_IDLE_SECS", 600);
    let (mut sim, url) = start_sim(records);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let data = DataDir::new(d.join("data"));
    let log = d.join("calls.jsonl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Sign in and load the cache here, so the agent starts with a full cache.
    let (cached, known) = rt.block_on(async {
        wait_for_sim(&url).await;
        let app = common::sign_in(&url, data.clone()).await;
        let client = app.client().unwrap();
        let (cache, _) = app.open_cache().unwrap();
        let r = app
            .sync(&cache, &client, false, &mut |_, _, _| {})
            .await
            .unwrap();
        let page = client
            .query(
                "SELECT Phone FROM Contact WHERE Phone != null LIMIT 30",
                false,
            )
            .await
            .unwrap();
        let known: Vec<String> = page
            .records
            .iter()
            .filter_map(|r| r["Phone"].as_str().map(str::to_owned))
            .collect();
        cache.flush().unwrap();
        (r.upserted, known)
    });
    std::fs::write(
        d.join("user.toml"),
        format!(
            "[salesforce]\nlogin_url = \"{url}\"\nclient_id = \"callsync-sim-client\"\nredirect_port = {}\n\
             [auth]\nstore = \"file\"\n\
             [calllog]\nsources = [{{ kind = \"native\", path = \"{}\" }}]\n\
             [ui]\nlanguage = \"en\"\nscreen_pop = \"ringing\"\n\
             [sync]\ninterval_secs = {}\n",
            free_port(),
            log.display(),
            env_or::<u64>("CALLSYNC_BENCH_SYNC_SECS", 300)
        ),
    )
    .unwrap();
    std::fs::write(&log, "").unwrap();

    // CALLSYNC_BENCH_HEADLESS=1: no desktop (the agent runs headless), to see the tray's share.
    let desk = if env_or("CALLSYNC_BENCH_HEADLESS", 0u8) == 1 {
        None
    } else {
        desktop()
    };
    let env: Vec<(String, String)> = match &desk {
        Some(dk) => dk.env.clone(),
        None => vec![],
    };
    println!("callsync agent benchmark: {cached} cached records, idle window {idle_secs} s");
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");

    // Start → tray visible.
    let mut child = None;
    if desk.is_some() {
        let mut starts = Vec::new();
        let mut stops = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let c = agent(&d, &env);
            let pid = c.id();
            wait(20, "the tray icon", || registered(&env, pid));
            starts.push(t.elapsed());
            // Let it settle (first sync) before quitting.
            wait(30, "the control socket", || {
                control::call(&data, &Request::Status, Duration::from_secs(2)).is_ok()
            });
            std::thread::sleep(Duration::from_millis(500));
            stops.push(quit(&data, c));
            wait(20, "the icon to go", || !registered(&env, pid));
        }
        starts.sort();
        stops.sort();
        println!("| start → tray icon registered with the host, median of 5 (max) | {:.0} ms ({:.0} ms) | ≤ 1,000 ms |", ms(starts[2]), ms(starts[4]));
        println!(
            "| Quit → process exited, median of 5 (max) | {:.0} ms ({:.0} ms) | – |",
            ms(stops[2]),
            ms(stops[4])
        );
    }

    // Idle.
    let c = agent(&d, &env);
    let pid = c.id();
    wait(60, "the first sync", || {
        control::call(&data, &Request::Status, Duration::from_secs(2))
            .ok()
            .and_then(|r| r.state)
            .is_some_and(|s| s.last_sync_ms.is_some())
    });
    // Settling after start (sled's background work on a freshly loaded cache, the first
    // cycles); `CALLSYNC_BENCH_WARMUP_SECS` measures a later window.
    let warmup: u64 = env_or("CALLSYNC_BENCH_WARMUP_SECS", 2);
    std::thread::sleep(Duration::from_secs(warmup));
    let (_, cpu0) = proc_usage(pid);
    let threads0 = threads_cpu(pid);
    let t0 = Instant::now();
    let mut rss = Vec::new();
    while t0.elapsed() < Duration::from_secs(idle_secs) {
        rss.push(proc_usage(pid).0);
        std::thread::sleep(Duration::from_secs(5));
    }
    let (rss_end, cpu1) = proc_usage(pid);
    // Per thread name (tokio's workers summed); threads that ended within the window (pool
    // threads) are the rest of the process's total.
    let mut by_name = std::collections::BTreeMap::<String, f64>::new();
    for (tid, (name, c)) in threads_cpu(pid) {
        let before = threads0.get(&tid).map_or(0.0, |(_, c0)| *c0);
        *by_name.entry(name).or_default() += c - before;
    }
    let live: f64 = by_name.values().sum();
    let mut busy: Vec<(String, f64)> = by_name.into_iter().filter(|(_, c)| *c >= 0.0005).collect();
    busy.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut busy: Vec<String> = busy
        .into_iter()
        .map(|(n, c)| format!("{n} {:.0} ms", c * 1000.0))
        .collect();
    // The process total counts 10 ms ticks: this is ±10 ms.
    let ended = (cpu1 - cpu0) - live;
    if ended >= 0.005 {
        busy.push(format!("threads that ended ≈{:.0} ms", ended * 1000.0));
    }
    rss.push(rss_end);
    let per_10min = (cpu1 - cpu0) * 600.0 / t0.elapsed().as_secs_f64();
    rss.sort_by(|a, b| a.total_cmp(b));
    println!(
        "| idle CPU time per 10 min (measured over {:.0} s, from {warmup} s after start) | {per_10min:.2} s | ≤ 0.2 s |",
        t0.elapsed().as_secs_f64()
    );
    println!("| idle CPU by thread | {} | – |", busy.join(", "));
    println!(
        "| idle RSS, median (max) | {:.1} MiB ({:.1} MiB) | ≤ 60 MB |",
        rss[rss.len() / 2],
        rss[rss.len() - 1]
    );
    child.replace(c);

    // Ringing line → Notify on the bus.
    if desk.is_some() {
        let mut mon = Command::new("dbus-monitor")
            .envs(env.iter().cloned())
            .args([
                "--session",
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel::<f64>();
        let out = mon.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("method call time=") && line.contains("member=Notify") {
                    let t: f64 = line["method call time=".len()..]
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(f64::NAN);
                    let _ = tx.send(t);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let mut lat = Vec::new();
        let mut missed = 0;
        for i in 0..60 {
            let remote = if i % 2 == 0 && !known.is_empty() {
                known[(i / 2) % known.len()].clone()
            } else {
                format!("03-7000-{i:04}")
            };
            let now = chrono::Utc::now().fixed_offset().to_rfc3339();
            let line = format!("{{\"call_id\":\"bench-{i}\",\"event\":\"ringing\",\"at\":\"{now}\",\"direction\":\"inbound\",\"remote\":\"{remote}\"}}\n");
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            f.write_all(line.as_bytes()).unwrap();
            f.flush().unwrap();
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(seen) => lat.push(Duration::from_secs_f64((seen - t).max(0.0))),
                Err(_) => missed += 1,
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = mon.kill();
        let _ = mon.wait();
        lat.sort();
        if lat.is_empty() {
            println!("| ringing line → notification | no notification seen ({missed} missed) | p99 ≤ 200 ms |");
        } else {
            println!(
                "| ringing line → notification on the bus, p50 / p99 / max of {} ({missed} missed) | {:.1} / {:.1} / {:.1} ms | p99 ≤ 200 ms |",
                lat.len(),
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(lat[lat.len() - 1])
            );
        }
        let (rss_after, _) = proc_usage(pid);
        println!("| RSS after 60 calls | {rss_after:.1} MiB | – |");
    }
    if let Some(c) = child.take() {
        quit(&data, c);
    }
    drop(desk);
    let _ = sim.kill();
    let _ = sim.wait();
}
