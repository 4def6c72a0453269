//! A real softphone: linphonec processes on loopback making calls while the follower reads
//! their call-history.db. Linux only: it drives Debian's linphonec, which the Windows build
//! under Wine cannot run.
#![cfg(unix)]

use crate::common;
use callsync_calllog::cursor::CursorStore;
use callsync_calllog::follow::Follower;
use callsync_calllog::linphone::LinphoneSource;
use callsync_calllog::Source;
use callsync_core::event::{CallEvent, Direction, EventKind, Outcome};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A linphonec process on loopback with its own HOME and configuration, driven through its
/// console (a pipe) and read through its console output.
struct Phone {
    name: &'static str,
    port: u16,
    child: std::process::Child,
    console: PathBuf,
    home: PathBuf,
}

impl Phone {
    fn start(dir: &Path, name: &'static str, port: u16) -> Phone {
        let home = dir.join(name);
        // liblinphone 5.1 does not create its data folder; without it no history is written.
        std::fs::create_dir_all(home.join(".local/share/linphone")).unwrap();
        let rc = home.join("linphonerc");
        std::fs::write(
            &rc,
            format!(
                "[sip]\nsip_port={port}\nsip_tcp_port=0\nsip_tls_port=0\nbind_address=127.0.0.1\nuse_ipv6=0\n\
                 guess_hostname=0\ncontact=\"{name}\" <sip:{name}@127.0.0.1:{port}>\ninc_timeout=30\n\
                 [rtp]\nbind_address=127.0.0.1\naudio_rtp_port={}\nvideo_rtp_port={}\ntext_rtp_port={}\n\
                 [video]\ncapture=0\ndisplay=0\n",
                port + 10_000,
                port + 10_002,
                port + 10_004
            ),
        )
        .unwrap();
        let console = home.join("console.txt");
        let child = std::process::Command::new("linphonec")
            .arg("-c")
            .arg(&rc)
            .env("HOME", &home)
            .stdin(std::process::Stdio::piped())
            .stdout(std::fs::File::create(&console).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut p = Phone {
            name,
            port,
            child,
            console,
            home,
        };
        p.wait_for("linphonec>", 1);
        p
    }

    fn history(&self) -> PathBuf {
        self.home.join(".local/share/linphone/call-history.db")
    }

    fn send(&mut self, cmd: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits until `pattern` has appeared `n` times in the console.
    fn wait_for(&mut self, pattern: &str, n: usize) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.console).unwrap_or_default();
            if text.matches(pattern).count() >= n {
                return;
            }
            assert!(
                Instant::now() < end,
                "{}: no {pattern:?} ×{n} in:\n{text}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn call(&mut self, other: &Phone) {
        self.send(&format!("call sip:{}@127.0.0.1:{}", other.name, other.port));
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.send("quit");
        let end = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real softphone: two linphonec instances call each other on loopback (outgoing answered,
/// incoming missed, incoming answered, outgoing declined) while the follower reads alice's
/// history as linphone writes it, without locks. Every call comes once, with linphone's own
/// SIP Call-ID (a read disturbed by a write must never make a synthetic one). Needs
/// linphone-cli (`.ci/run` installs it and sets CALLSYNC_REQUIRE_SOFTPHONE=1 so that a
/// missing one fails).
#[test]
fn a_real_linphone_history_followed_live() {
    let have = std::process::Command::new("sh")
        .args(["-c", "command -v linphonec"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        assert!(
            std::env::var("CALLSYNC_REQUIRE_SOFTPHONE").is_err(),
            "linphonec is missing"
        );
        eprintln!("skipping: linphonec not installed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let base = common::free_port().clamp(20_000, 50_000);
    let mut alice = Phone::start(d.path(), "alice", base);
    let mut bob = Phone::start(d.path(), "bob", base + 10);
    let db = alice.history();
    let sources: Vec<Box<dyn Source>> = vec![Box::new(LinphoneSource::new("linphone", &db))];
    let mut f = Follower::new(sources, CursorStore::new(d.path().join("cur.json"))).unwrap();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<CallEvent>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The follower reads all along, as the agent does, while linphone writes.
    let reader = {
        let (events, stop) = (events.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut problems = Vec::new();
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                let (batches, _) = f.poll();
                for b in &batches {
                    problems.extend(b.problems.iter().cloned());
                    events.lock().unwrap().extend(b.events.iter().cloned());
                    f.ack(b).unwrap();
                }
                if done {
                    return problems;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // 1. alice → bob, answered, alice hangs up.
    alice.call(&bob);
    bob.wait_for("Receiving new incoming call", 1);
    bob.send("answer");
    alice.wait_for("established", 1);
    std::thread::sleep(Duration::from_secs(1));
    alice.send("terminate");
    alice.wait_for(" ended (", 1);
    // 2. bob → alice, not answered: missed at alice.
    bob.call(&alice);
    alice.wait_for("Receiving new incoming call", 1);
    std::thread::sleep(Duration::from_secs(1));
    bob.send("terminate");
    alice.wait_for(" ended (", 2);
    // 3. bob → alice, answered, bob hangs up.
    bob.call(&alice);
    alice.wait_for("Receiving new incoming call", 2);
    alice.send("answer");
    bob.wait_for("established", 2);
    std::thread::sleep(Duration::from_secs(1));
    bob.send("terminate");
    alice.wait_for(" ended (", 3);
    // 4. alice → bob, declined.
    alice.call(&bob);
    bob.wait_for("Receiving new incoming call", 2);
    std::thread::sleep(Duration::from_millis(500));
    bob.send("terminate");
    alice.wait_for(" ended (", 4);
    // The row is written before linphonec prints "ended"; one more read catches it.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let problems = reader.join().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let events = events.lock().unwrap().clone();
    let calls: Vec<(Direction, Outcome)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Ended { outcome, .. } => {
                Some((e.info.as_ref().unwrap().direction, *outcome))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        [
            (Direction::Outbound, Outcome::Answered),
            (Direction::Inbound, Outcome::NoAnswer),
            (Direction::Inbound, Outcome::Answered),
            (Direction::Outbound, Outcome::Rejected),
        ],
        "{events:#?}"
    );
    // linphone's own Call-IDs, each call once.
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let ids: Vec<String> = conn
        .prepare("SELECT call_id FROM call_history ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids.len(), 4);
    for e in &events {
        assert!(
            ids.contains(&e.call_id),
            "{} is not linphone's Call-ID ({ids:?})",
            e.call_id
        );
        assert_eq!(e.info.as_ref().unwrap().remote, "bob");
    }
    let mut ended: Vec<&str> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Ended { .. }))
        .map(|e| e.call_id.as_str())
        .collect();
    ended.dedup();
    assert_eq!(ended.len(), 4);
}
