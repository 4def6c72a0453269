//! What the CLI and the agent share: the configuration and data directory turned into stores,
//! a Salesforce client, the sync engine and a status report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use callsync_config::Config;
use callsync_core::record::ObjectKind;
use callsync_core::wire::{SfError, TokenResponse};
use callsync_salesforce::auth::{self, AuthStore, HistoryEntry, SignInError, StoredAuth};
use callsync_salesforce::client::{Client, ClientConfig};
use callsync_salesforce::sync::{self, SyncEngine, SyncReport, SyncSettings};
use callsync_store::cache::{Cache, CacheError, OpenReport};
use callsync_store::paths::DataDir;

#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub data: DataDir,
    /// The user settings file in use (`--config`), for "Open settings file".
    pub settings_file: Option<PathBuf>,
    /// Opened once: probing the OS credential store is a D-Bus round trip on Linux, and the
    /// agent asks for the sign-in every cycle.
    auth_store: Arc<std::sync::OnceLock<Arc<dyn AuthStore>>>,
}

/// `callsync status`.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub signed_in: Option<SignedIn>,
    pub contact_retrieval: bool,
    pub records: Vec<ObjectStatus>,
    pub index_entries: u64,
    /// Task writes waiting for Salesforce (None: the running agent holds the queue).
    pub pending_tasks: Option<u64>,
    /// Task writes parked on a permanent error (`callsync queue`).
    pub parked_tasks: Option<u64>,
    pub api_usage: Option<ApiUsage>,
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug, Serialize)]
pub struct SignedIn {
    pub org_id: String,
    pub user_id: String,
    pub username: String,
    pub instance_url: String,
    pub method: String,
    pub since: String,
    pub token_store: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ObjectStatus {
    pub object: String,
    pub records: u64,
    pub last_sync: Option<String>,
    pub last_full: Option<String>,
    pub load_in_progress: bool,
}

/// What [`App::apply_sign_in`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SignInApplied {
    pub cache: callsync_store::cache::Claim,
    pub queue: callsync_store::outbox::Adoption,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum BackupNote {
    Available {
        taken_at: String,
    },
    OtherOrg {
        taken_at: String,
        org_id: String,
        username: String,
    },
}

#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct ApiUsage {
    pub used: u64,
    pub max: u64,
}

const STATE_API_USAGE: &str = "api_usage";

impl App {
    pub fn new(config: Config, data: DataDir) -> App {
        App {
            config,
            data,
            settings_file: None,
            auth_store: Arc::default(),
        }
    }

    /// The configured call logs, opened (`calls tail` and the agent follow the same ones).
    pub fn call_logs(&self) -> Result<Vec<Box<dyn callsync_calllog::Source>>, String> {
        self.config
            .calllog
            .sources
            .iter()
            .map(|s| s.open())
            .collect()
    }

    /// Follows `sources` on a thread, resuming at the positions saved under `cursors` (a name
    /// in `<data>/calllog/`): batches arrive on the channel, and a position moves only when its
    /// batch is acknowledged.
    pub fn follow_calls(
        &self,
        sources: Vec<Box<dyn callsync_calllog::Source>>,
        cursors: &str,
    ) -> std::io::Result<(
        std::sync::mpsc::Receiver<callsync_calllog::follow::Delivery>,
        std::thread::JoinHandle<()>,
    )> {
        use callsync_calllog::{cursor::CursorStore, follow};
        let store = CursorStore::new(self.data.root().join("calllog").join(cursors));
        let follower = follow::Follower::new(sources, store)?;
        let waker = follow::Waker::new(follower.dirs(), Duration::from_millis(20))
            .map_err(|e| std::io::Error::other(format!("cannot watch the call logs: {e}")))?;
        follow::spawn(
            follower,
            waker,
            Duration::from_secs(self.config.calllog.poll_secs),
        )
    }

    /// The outbox's writer with the configured external-id fields (the agent's and the
    /// demo's).
    pub fn sender<'a>(
        &self,
        client: &'a Client,
        outbox: &'a callsync_store::outbox::Outbox,
        errors: Option<&'a callsync_store::errorlog::ErrorLog>,
    ) -> callsync_salesforce::writer::Sender<'a> {
        callsync_salesforce::writer::Sender {
            client,
            outbox,
            external_id: self.config.activity.external_id(),
            event_external_id: self.config.meeting.external_id(),
            errors,
            awaiting_refresh: Default::default(),
        }
    }

    pub fn auth_file(&self) -> PathBuf {
        self.data.root().join("auth.json")
    }

    pub fn history_file(&self) -> PathBuf {
        self.data.auth_history()
    }

    pub fn auth_store(&self) -> Arc<dyn AuthStore> {
        self.auth_store
            .get_or_init(|| auth::open_store(&self.config.auth.store, &self.auth_file()))
            .clone()
    }

    pub fn client_config(&self) -> ClientConfig {
        let s = &self.config.salesforce;
        let p = &self.config.proxy;
        let ca = &self.config.tls.extra_ca_file;
        let (extra_ca_pem, extra_ca_error) = if ca.is_empty() {
            (None, None)
        } else {
            match std::fs::read(ca) {
                Ok(pem) => (Some(pem), None),
                Err(e) => (
                    None,
                    Some(format!("cannot read tls.extra_ca_file {ca}: {e}")),
                ),
            }
        };
        let net = callsync_salesforce::client::NetSettings {
            proxy: (!p.url.is_empty()).then(|| p.url.clone()),
            proxy_user: (!p.user.is_empty()).then(|| p.user.clone()),
            proxy_password: (!p.user.is_empty())
                .then(|| {
                    auth::secret_get(self.data.root(), &auth::proxy_secret_name(&p.user, &p.url))
                })
                .flatten(),
            no_proxy: (!p.no_proxy.is_empty()).then(|| p.no_proxy.clone()),
            extra_ca_pem,
            extra_ca_error,
        };
        ClientConfig {
            net,
            login_url: s.login_url.trim_end_matches('/').to_owned(),
            client_id: s.client_id.clone(),
            api_version: s.api_version.clone(),
            timeout: Duration::from_secs(s.timeout_secs),
        }
    }

    /// The cache's settings from the configuration (`cache.memory_mb`: sled's page cache).
    pub(crate) fn cache_options(&self) -> callsync_store::cache::CacheOptions {
        callsync_store::cache::CacheOptions {
            cache_capacity: self.config.cache.memory_mb * 1024 * 1024,
            ..Default::default()
        }
    }

    /// Opens the cache for the org signed in to: lookups refuse another org's records.
    pub fn open_cache(&self) -> Result<(Cache, OpenReport), CacheError> {
        let (cache, report) = Cache::open(&self.data.cache(), &self.cache_options())?;
        if let Ok(n) = self.config.normalizer() {
            cache.rekey(&n)?;
        }
        let org = self.auth_store().load().ok().flatten().map(|a| a.org_id);
        cache.serve_org(org.as_deref());
        Ok((cache, report))
    }

    /// The one rule after every sign-in, whoever made it (`callsync connect`, the tray, a
    /// sign-in the agent notices): the cache becomes the org's (another org's records go), and
    /// the queue resumes for its own org, or is held for another's (`send_queue_here` hands it
    /// over).
    pub fn apply_sign_in(
        &self,
        org: &str,
        cache: &Cache,
        outbox: &callsync_store::outbox::Outbox,
        send_queue_here: bool,
    ) -> Result<SignInApplied, String> {
        let cache = cache.claim(org).map_err(|e| e.to_string())?;
        let queue = outbox
            .adopt_sign_in(org, send_queue_here)
            .map_err(|e| e.to_string())?;
        if let callsync_store::cache::Claim::Switched { from } = &cache {
            tracing::info!(from = %from, to = %org, "signed in to another org: its cache is loaded at the next sync");
        }
        Ok(SignInApplied { cache, queue })
    }

    /// What the settings backup means for a sign-in to `org`: none, one for this org (restore
    /// applies it), or one from another org (its field names and users may not exist here).
    pub fn backup_note(&self, org: &str) -> Result<Option<BackupNote>, String> {
        Ok(
            match callsync_config::settings::Backup::load(&self.data.settings_backup())
                .map_err(|e| e.to_string())?
            {
                Some(b) if b.org_id != org => Some(BackupNote::OtherOrg {
                    taken_at: b.taken_at,
                    org_id: b.org_id,
                    username: b.username,
                }),
                Some(b) => Some(BackupNote::Available {
                    taken_at: b.taken_at,
                }),
                None => None,
            },
        )
    }

    pub fn client(&self) -> Result<Client, SfError> {
        Client::from_store(self.client_config(), self.auth_store())
    }

    /// `current` again while the store holds the same account, else a new client. A new client
    /// re-reads the system's root certificates and opens a new session: the long-running agent
    /// would pay that on every cycle.
    pub fn client_reusing(&self, current: Option<&Client>) -> Result<Client, SfError> {
        let stored = self
            .auth_store()
            .load()
            .map_err(|e| SfError::Store(e.to_string()))?
            .ok_or(SfError::NotConnected)?;
        match current {
            Some(c) if c.auth().same_account(&stored) => Ok(c.clone()),
            _ => self.client(),
        }
    }

    /// Signs in the way the configuration says: JWT bearer when a user and key are set,
    /// otherwise the browser (PKCE), `open` showing the user the sign-in page. Returns the
    /// token and the method's name.
    pub async fn sign_in(
        &self,
        open: impl FnOnce(&str),
        timeout: Duration,
    ) -> Result<(TokenResponse, &'static str), SignInError> {
        let cfg = self.client_config();
        if cfg.client_id.is_empty() {
            return Err(SignInError::Settings("salesforce.client_id is not set: put the connected app's consumer key in the configuration (IT usually does this in the managed file)".into()));
        }
        let sf = &self.config.salesforce;
        if !sf.jwt_username.is_empty() && !sf.jwt_key_file.is_empty() {
            let key = std::fs::read(&sf.jwt_key_file).map_err(|e| {
                SignInError::Settings(format!(
                    "cannot read salesforce.jwt_key_file {}: {e}",
                    sf.jwt_key_file
                ))
            })?;
            auth::sign_in_jwt(&cfg, &sf.jwt_username, &key)
                .await
                .map(|t| (t, "jwt"))
        } else {
            auth::sign_in_pkce(&cfg, sf.redirect_port, open, timeout)
                .await
                .map(|t| (t, "pkce"))
        }
    }

    /// Revokes the token at Salesforce (best effort: it is forgotten here either way) and
    /// forgets it. `Ok(false)`: nobody was signed in.
    pub async fn sign_out(&self) -> Result<bool, SfError> {
        match self.client() {
            Ok(client) => {
                if let Err(e) = client.revoke().await {
                    tracing::warn!(error = %e, "could not revoke the token at Salesforce; it is forgotten here anyway");
                }
            }
            Err(SfError::NotConnected) => return Ok(false),
            Err(e) => tracing::warn!(error = %e, "signing out"),
        }
        self.auth_store()
            .clear()
            .map_err(|e| SfError::Store(e.to_string()))?;
        Ok(true)
    }

    /// Stores a fresh sign-in and records it in the history; returns what was stored.
    pub async fn complete_sign_in(
        &self,
        t: &TokenResponse,
        method: &str,
    ) -> Result<StoredAuth, SignInError> {
        let cfg = self.client_config();
        let username = auth::identity(&cfg, t)
            .await
            .ok()
            .and_then(|v| v["username"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut stored = auth::stored_from(&cfg, t, &username, method);
        if method == "jwt" {
            stored.username = self.config.salesforce.jwt_username.clone();
            stored.jwt_key_file = Some(self.config.salesforce.jwt_key_file.clone());
        }
        self.auth_store()
            .save(&stored)
            .map_err(|e| SfError::Store(e.to_string()))?;
        let entry = HistoryEntry {
            at: stored.connected_at.clone(),
            org_id: stored.org_id.clone(),
            user_id: stored.user_id.clone(),
            username: stored.username.clone(),
            instance_url: stored.instance_url.clone(),
            method: method.into(),
        };
        if let Err(e) = auth::append_history(&self.history_file(), &entry) {
            tracing::warn!(error = %e, "could not append to the authentication history");
        }
        tracing::info!(org = %stored.org_id, user = %stored.user_id, method, "signed in");
        Ok(stored)
    }

    /// One sync (full where needed); records API usage for `status`.
    pub async fn sync(
        &self,
        cache: &Cache,
        client: &Client,
        full: bool,
        progress: sync::Progress<'_>,
    ) -> Result<SyncReport, sync::SyncError> {
        let normalizer = self
            .config
            .normalizer()
            .map_err(|e| SfError::Protocol(e.to_string()))?;
        let rules = self.config.lookup_rules();
        let engine = SyncEngine {
            client,
            cache,
            normalizer: &normalizer,
            rules: &rules,
            settings: SyncSettings {
                contact_retrieval: self.config.sync.contact_retrieval,
                overlap: Duration::from_secs(self.config.sync.overlap_secs),
                bulk_threshold: self.config.sync.bulk_threshold,
                ..SyncSettings::default()
            },
        };
        let report = engine.run(full, progress).await;
        if let Some((used, max)) = client.api_usage() {
            let v = serde_json::to_vec(&ApiUsage { used, max }).unwrap_or_default();
            cache.apply(&[], &[(STATE_API_USAGE, v)])?;
        }
        report
    }

    /// Records and sync state per object, from the cache alone.
    pub(crate) fn object_status(&self, cache: &Cache) -> Result<Vec<ObjectStatus>, CacheError> {
        let mut records = Vec::new();
        for kind in ObjectKind::ALL {
            let st = sync::load_state(cache, kind)?;
            let load_in_progress = st.load_in_progress();
            records.push(ObjectStatus {
                object: kind.api_name().into(),
                records: cache.count(kind)?,
                last_sync: st.last_sync,
                last_full: st.last_full,
                load_in_progress,
            });
        }
        Ok(records)
    }

    pub fn status(&self, cache: &Cache) -> Result<Status, CacheError> {
        let outbox = callsync_store::outbox::Outbox::open(&self.data.outbox()).ok();
        self.status_with(cache, outbox.as_ref())
    }

    /// [`App::status`] with the queue the caller already holds open (`None`: it cannot be
    /// opened, and the status says nothing about pending Tasks).
    pub fn status_with(
        &self,
        cache: &Cache,
        outbox: Option<&callsync_store::outbox::Outbox>,
    ) -> Result<Status, CacheError> {
        let store = self.auth_store();
        let signed_in = store.load().ok().flatten().map(|a| SignedIn {
            org_id: a.org_id,
            user_id: a.user_id,
            username: a.username,
            instance_url: a.instance_url,
            method: a.method,
            since: a.connected_at,
            token_store: store.describe(),
        });
        let records = self.object_status(cache)?;
        let counts = outbox.and_then(|o| o.counts().ok());
        let api_usage = cache
            .state(STATE_API_USAGE)?
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(Status {
            signed_in,
            contact_retrieval: self.config.sync.contact_retrieval,
            records,
            index_entries: cache.stats()?.index_entries,
            pending_tasks: counts.map(|c| c.0 as u64),
            parked_tasks: counts.map(|c| c.1 as u64),
            api_usage,
            data_dir: self.data.root().to_owned(),
        })
    }
}

/// The sync loop's pacing, one rule for the agent and `sync --watch`: failures in a row back
/// off, a rate limit waits longer, API use above the threshold slows down, and each cycle draws
/// its own jitter so that a floor of agents does not sync in step.
pub struct Pacing {
    input: callsync_core::schedule::ScheduleInput,
    rng: fastrand::Rng,
}

impl Pacing {
    pub fn new(config: &callsync_config::SyncConfig) -> Pacing {
        Pacing {
            input: config.schedule(),
            rng: fastrand::Rng::new(),
        }
    }

    /// After a sync attempt: `None` when there was no client to sync with.
    pub fn synced(&mut self, outcome: Option<(Result<(), &sync::SyncError>, &Client)>) {
        let i = &mut self.input;
        match outcome {
            None => i.failures = i.failures.max(1),
            Some((r, client)) => {
                match r {
                    Ok(()) => {
                        i.failures = 0;
                        i.rate_limited = false;
                    }
                    Err(e) => {
                        i.failures += 1;
                        i.rate_limited =
                            matches!(e, sync::SyncError::Salesforce(s) if s.is_rate_limited());
                    }
                }
                i.api_share = client.api_usage().map(|(u, m)| u as f64 / m.max(1) as f64);
            }
        }
        i.jitter = self.rng.f64();
    }

    /// The wait before the next sync, given what the calls say now.
    pub fn delay(&self, calls_flowing: bool, idle: bool) -> Duration {
        callsync_core::schedule::next_delay(callsync_core::schedule::ScheduleInput {
            calls_flowing,
            idle,
            ..self.input
        })
    }
}
