//! Corporate networks for real: the simulated org on HTTPS with a private CA (refused with a
//! plain "unknown issuer" explanation, accepted with `tls.extra_ca_file`), and a real proxy
//! (tinyproxy on 127.0.0.1) carrying sign-in, sync and Task writes, refusing wrong credentials
//! without losing the queue, and going down and coming back.

use std::path::Path;
use std::sync::Arc;

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
pub(crate) async fn sign_in_and_sync(
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

pub(crate) const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt-test-key.pem"
);

pub(crate) fn cfg(url: &str, net: NetSettings) -> ClientConfig {
    ClientConfig {
        net,
        ..common::client_config(url)
    }
}

/// A private CA and a `localhost` server certificate it signed: (ca pem, chain pem, key pem).
pub(crate) fn private_ca() -> (String, String, String) {
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

pub(crate) fn task(call: &str) -> callsync_core::activity::Fields {
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
        awaiting_refresh: Default::default(),
    }
    .send_due()
    .await
    .unwrap();
    assert_eq!(rep.sent, 1);
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
