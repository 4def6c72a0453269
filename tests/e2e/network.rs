//! Corporate networks for real: the simulated org on HTTPS with a private CA (refused with a
//! plain "unknown issuer" explanation, accepted with `tls.extra_ca_file`), and a real proxy
//! (tinyproxy on 127.0.0.1) carrying sign-in, sync and Task writes, refusing wrong credentials
//! without losing the queue, and going down and coming back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use callsync_core::wire::{Secret, SfError};
use callsync_salesforce::auth::{self, AuthStore, FileStore};
use callsync_salesforce::client::{Client, ClientConfig, NetSettings};
use callsync_salesforce::writer::Sender;
use callsync_sim::{Sim, SimOptions};
use callsync_store::outbox::{Op, Outbox};
use serde_json::json;

use crate::common;
use common::free_port;

/// JWT sign-in, stored in `dir`, and one full sync into a cache in `dir`, all over `c`'s network
/// settings.
async fn sign_in_and_sync(
    c: &ClientConfig,
    pem: &[u8],
    dir: &Path,
) -> (Arc<dyn AuthStore>, Client, callsync_store::cache::Cache) {
    let t = auth::sign_in_jwt(c, "agent@sim.example.com", pem)
        .await
        .unwrap();
    let store: Arc<dyn AuthStore> = Arc::new(FileStore::new(dir.join("auth.json")));
    let mut stored = auth::stored_from(c, &t, "agent@sim.example.com", "jwt");
    stored.jwt_key_file = Some(KEY.into());
    store.save(&stored).unwrap();
    let client = Client::from_store(c.clone(), store.clone()).unwrap();
    let (cache, _) =
        callsync_store::cache::Cache::open(&dir.join("cache"), &Default::default()).unwrap();
    let n = callsync_core::phone::Normalizer::from_codes("JP", &[]).unwrap();
    let rules = callsync_core::lookup::LookupRules::default();
    let engine = callsync_salesforce::sync::SyncEngine {
        client: &client,
        cache: &cache,
        normalizer: &n,
        rules: &rules,
        settings: Default::default(),
    };
    engine.run(false, &mut |_, _, _| {}).await.unwrap();
    (store, client, cache)
}

const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt-test-key.pem"
);

fn cfg(url: &str, net: NetSettings) -> ClientConfig {
    ClientConfig {
        net,
        ..common::client_config(url)
    }
}

/// A private CA and a `localhost` server certificate it signed: (ca pem, chain pem, key pem).
fn private_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "ACME TLS Inspection CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn task(call: &str) -> callsync_core::activity::Fields {
    [
        ("Subject", json!("Call")),
        ("Status", json!("Completed")),
        ("CallObject", json!(call)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_needs_the_extra_ca_file() {
    let (ca, chain, key) = private_ca();
    let sim = Sim::start_tls(
        SimOptions {
            jwt_public_key_pem: common::jwt_public_key(),
            records: 300,
            ..Default::default()
        },
        0,
        chain.as_bytes(),
        key.as_bytes(),
    )
    .await
    .unwrap();
    assert!(sim.url().starts_with("https://localhost:"));
    let pem = std::fs::read(KEY).unwrap();

    // The OS trust store does not know the company CA: refused, in plain words.
    let e = auth::sign_in_jwt(
        &cfg(&sim.url(), NetSettings::default()),
        "agent@sim.example.com",
        &pem,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("TLS inspection CA may be missing") && e.contains("tls.extra_ca_file"),
        "{e}"
    );

    // The doctor says the same, and names the trust roots in use.
    let dir0 = tempfile::tempdir().unwrap();
    let mut config = callsync_config::Config::default();
    config.salesforce.login_url = sim.url();
    config.salesforce.client_id = "callsync-sim-client".into();
    let app = callsync_app::app::App::new(
        config.clone(),
        callsync_store::paths::DataDir::new(dir0.path()),
    );
    let checks = callsync_app::doctor::run(&app).await;
    let route = checks
        .iter()
        .find(|c| c.name == "route to Salesforce")
        .unwrap();
    assert!(
        !route.ok && route.detail.contains("TLS inspection CA may be missing"),
        "{route:?}"
    );
    let ca_file = dir0.path().join("company-ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    config.tls.extra_ca_file = ca_file.display().to_string();
    let app = callsync_app::app::App::new(config, callsync_store::paths::DataDir::new(dir0.path()));
    let checks = callsync_app::doctor::run(&app).await;
    assert!(
        checks
            .iter()
            .find(|c| c.name == "route to Salesforce")
            .unwrap()
            .ok,
        "{checks:?}"
    );
    let roots = checks.iter().find(|c| c.name == "trust roots").unwrap();
    assert!(
        roots.ok && roots.detail.contains("plus 1 certificate(s)"),
        "{roots:?}"
    );

    // With the CA as tls.extra_ca_file: sign-in, sync and Task writes over HTTPS.
    let net = NetSettings {
        extra_ca_pem: Some(ca.into_bytes()),
        ..NetSettings::default()
    };
    let c = cfg(&sim.url(), net);
    let dir = tempfile::tempdir().unwrap();
    let (_, client, cache) = sign_in_and_sync(&c, &pem, dir.path()).await;
    assert!(
        cache
            .count(callsync_core::record::ObjectKind::Contact)
            .unwrap()
            > 0
    );
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    outbox.enqueue("tls-1", Op::Create, task("tls-1")).unwrap();
    let rep = Sender {
        client: &client,
        outbox: &outbox,
        external_id: Some("Call_Id__c".into()),
        event_external_id: None,
        errors: None,
    }
    .send_due()
    .await
    .unwrap();
    assert_eq!(rep.sent, 1);
}

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
    };
    assert_eq!(sender.send_due().await.unwrap().sent, 1);
    proxy.stop();
}

/// Defect: with `proxy.url` set and the proxy down, the message blamed Salesforce ("cannot
/// reach Salesforce: the connection was refused (… tunnel error …)") and `doctor` called the
/// proxy "ok". The proxy is named, with its address and the fix, and doctor checks it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_is_down_is_named_not_salesforce() {
    let sim = Sim::start(
        SimOptions {
            records: 50,
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dead = free_port();
    common::agent_setup(
        &sim,
        d,
        &d.join("calls.jsonl"),
        3600,
        &format!("[proxy]\nurl = \"http://127.0.0.1:{dead}\"\n"),
    )
    .await;
    let out = common::command(d).arg("sync").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        err.contains(&format!("cannot reach the proxy http://127.0.0.1:{dead}"))
            && err.contains("proxy.url")
            && !err.contains("cannot reach Salesforce"),
        "{err}"
    );
    let out = common::command(d)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let proxy = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "proxy")
        .unwrap();
    assert_eq!(proxy["ok"], false, "{proxy}");
    assert!(
        proxy["detail"]
            .as_str()
            .unwrap()
            .contains("does not answer"),
        "{proxy}"
    );
    assert!(
        proxy["fix"].as_str().unwrap().contains("proxy.url"),
        "{proxy}"
    );
}
