//! A real proxy (tinyproxy on 127.0.0.1) carrying sign-in, sync and Task writes, refusing wrong
//! credentials without losing the queue, and going down and coming back. Linux only: it runs
//! Debian's tinyproxy, which the Windows build under Wine cannot start.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callsync_core::wire::{Secret, SfError};
use callsync_salesforce::client::{Client, NetSettings};
use callsync_salesforce::writer::Sender;
use callsync_sim::{Sim, SimOptions};
use callsync_store::outbox::{Op, Outbox};
use serde_json::json;

use crate::common;
use crate::network::{cfg, sign_in_and_sync, task, KEY};
use common::free_port;

struct Proxy {
    child: Child,
    log: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl Proxy {
    fn start(dir: &Path, port: u16, basic_auth: Option<(&str, &str)>) -> Proxy {
        std::fs::create_dir_all(dir).unwrap();
        // tinyproxy drops to `nobody`: its log folder must be writable by it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let log = dir.join("access.log");
        let mut conf = format!(
            "User nobody\nGroup nogroup\nPort {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\nMaxClients 50\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
            log.display()
        );
        if let Some((u, p)) = basic_auth {
            conf.push_str(&format!("BasicAuth {u} {p}\n"));
        }
        let conf_path = dir.join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Proxy {
            child,
            log,
            port,
            dir: dir.to_owned(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.clone()
    }
}

fn have_tinyproxy() -> bool {
    let have = Command::new("sh")
        .args(["-c", "command -v tinyproxy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        assert!(
            std::env::var("CALLSYNC_REQUIRE_PROXY").is_err(),
            "tinyproxy is not installed"
        );
        eprintln!("skipping: tinyproxy not installed");
    }
    have
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_goes_through_a_real_proxy_and_survives_its_failures() {
    if !have_tinyproxy() {
        return;
    }
    let sim = Sim::start(
        SimOptions {
            jwt_public_key_pem: common::jwt_public_key(),
            records: 300,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let sim_port = sim.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("proxy");
    let port = free_port();
    let proxy = Proxy::start(&pdir, port, None);
    let pem = std::fs::read(KEY).unwrap();
    let net = NetSettings {
        proxy: Some(proxy.url()),
        ..NetSettings::default()
    };
    let c = cfg(&sim.url(), net);

    // Sign-in, sync and a Task write, all through the proxy.
    let (store, client, _cache) = sign_in_and_sync(&c, &pem, dir.path()).await;
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    outbox
        .enqueue("via-proxy", Op::Create, task("via-proxy"))
        .unwrap();
    let sender = Sender {
        client: &client,
        outbox: &outbox,
        external_id: Some("Call_Id__c".into()),
        event_external_id: None,
        errors: None,
        awaiting_refresh: Default::default(),
    };
    assert_eq!(sender.send_due().await.unwrap().sent, 1);
    // tinyproxy writes its log a moment later.
    let mut log = proxy.log();
    for _ in 0..40 {
        if log.contains("via-proxy") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = proxy.log();
    }
    for path in [
        "/services/oauth2/token",
        "/services/data/v62.0/query",
        "/services/data/v62.0/sobjects/Task/Call_Id__c/via-proxy",
    ] {
        assert!(
            log.contains(&format!("127.0.0.1:{sim_port}{path}")),
            "proxy log lacks {path}:\n{log}"
        );
    }

    // The proxy goes down: the call is queued, not lost, and sent once it is back.
    let pdir = proxy.stop();
    outbox
        .enqueue("while-down", Op::Create, task("while-down"))
        .unwrap();
    let rep = sender.send_due().await.unwrap();
    assert_eq!((rep.sent, rep.retried_later), (0, 1), "{rep:?}");
    let why = outbox.items().unwrap()[0]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(why.contains("proxy") || why.contains("refused"), "{why}");
    let proxy = Proxy::start(&pdir, port, None);
    let mut item = outbox.items().unwrap().remove(0);
    item.not_before = 0;
    outbox.put(&item).unwrap();
    assert_eq!(sender.send_due().await.unwrap().sent, 1);
    assert_eq!(
        sim.org()
            .rows("Task")
            .iter()
            .filter(|t| t["CallObject"] == json!("while-down"))
            .count(),
        1
    );
    let pdir = proxy.stop();

    // The proxy wants credentials: the wrong ones give a clear, retryable error; the queue stays.
    let proxy = Proxy::start(&pdir, port, Some(("agent", "right-password")));
    let wrong = NetSettings {
        proxy: Some(proxy.url()),
        proxy_user: Some("agent".into()),
        proxy_password: Some(Secret::new("wrong")),
        ..NetSettings::default()
    };
    let client = Client::from_store(cfg(&sim.url(), wrong), store.clone()).unwrap();
    outbox
        .enqueue("auth-needed", Op::Create, task("auth-needed"))
        .unwrap();
    let sender = Sender {
        client: &client,
        outbox: &outbox,
        external_id: Some("Call_Id__c".into()),
        event_external_id: None,
        errors: None,
        awaiting_refresh: Default::default(),
    };
    let rep = sender.send_due().await.unwrap();
    assert_eq!(rep.sent, 0);
    assert_eq!(outbox.counts().unwrap(), (1, 0), "kept, not parked");
    let why = outbox.items().unwrap()[0]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        why.contains("proxy refused: authentication required"),
        "{why}"
    );
    let e = client.get(&client.data_path("/limits")).await.unwrap_err();
    assert!(matches!(e, SfError::Network(_)) && e.is_retryable(), "{e}");
    // The right password: through.
    let right = NetSettings {
        proxy: Some(proxy.url()),
        proxy_user: Some("agent".into()),
        proxy_password: Some(Secret::new("right-password")),
        ..NetSettings::default()
    };
    let client = Client::from_store(cfg(&sim.url(), right), store).unwrap();
    let mut item = outbox.items().unwrap().remove(0);
    item.not_before = 0;
    outbox.put(&item).unwrap();
    let sender = Sender {
        client: &client,
        outbox: &outbox,
        external_id: Some("Call_Id__c".into()),
        event_external_id: None,
        errors: None,
        awaiting_refresh: Default::default(),
    };
    assert_eq!(sender.send_due().await.unwrap().sent, 1);
    proxy.stop();
}
