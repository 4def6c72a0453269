//! What the integration tests share: a free loopback port, a client configuration for the
//! simulated org, a real PKCE sign-in (the test plays the browser), and the `callsync` binary
//! with a clean environment pointed at a test folder.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callsync::auth::{self, AuthStore, FileStore};
use callsync::salesforce::ClientConfig;
use callsync::sim::Sim;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn client_config(url: &str) -> ClientConfig {
    ClientConfig {
        login_url: url.to_owned(),
        client_id: "callsync-sim-client".into(),
        api_version: "62.0".into(),
        timeout: Duration::from_secs(10),
        net: Default::default(),
    }
}

/// Signs in to `sim` with the PKCE flow and stores the sign-in in `auth_file`.
pub async fn sign_in(sim: &Sim, auth_file: &Path) -> (ClientConfig, Arc<dyn AuthStore>) {
    let cfg = client_config(&sim.url());
    let t = auth::sign_in_pkce(
        &cfg,
        free_port(),
        |u| {
            tokio::spawn(callsync::sim::play_browser(u.to_owned()));
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let store: Arc<dyn AuthStore> = Arc::new(FileStore::new(auth_file));
    store
        .save(&auth::stored_from(
            &cfg,
            &t,
            "agent@sim.example.com",
            "pkce",
        ))
        .unwrap();
    (cfg, store)
}

/// `callsync` with no inherited CALLSYNC_*/RUST_LOG, its data, user and managed files in `dir`.
pub fn command(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_callsync"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CALLSYNC_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.env("CALLSYNC_DATA_DIR", dir.join("data"))
        .env("CALLSYNC_CONFIG", dir.join("user.toml"))
        .env("CALLSYNC_MANAGED_CONFIG", dir.join("managed.toml"));
    c
}
