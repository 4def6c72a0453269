//! Signing in: the OAuth web-server flow with PKCE on a fixed loopback redirect (the browser is
//! the user's), the JWT bearer flow for IT-managed installs, where the refresh token lives (the
//! OS credential store, or a file only the user can read where there is none), and the
//! authentication history.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{http_client, read, ClientConfig};
use callsync_core::wire::{api_error, Secret, SfError, TokenResponse};
use callsync_fs::FileStamp;

/// What callsync keeps about a sign-in.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredAuth {
    pub login_url: String,
    pub client_id: String,
    pub instance_url: String,
    pub org_id: String,
    pub user_id: String,
    #[serde(default)]
    pub username: String,
    pub refresh_token: Secret,
    /// `pkce` or `jwt`.
    pub method: String,
    pub connected_at: String,
    /// JWT sign-ins renew by signing a new assertion with this key (its path, not the key).
    #[serde(default)]
    pub jwt_key_file: Option<String>,
}

impl StoredAuth {
    /// The same user of the same org through the same login host and method: a session opened
    /// for one serves the other (a refresh reads the stored token anyway).
    pub fn same_account(&self, other: &StoredAuth) -> bool {
        (
            &self.login_url,
            &self.client_id,
            &self.org_id,
            &self.user_id,
            &self.method,
        ) == (
            &other.login_url,
            &other.client_id,
            &other.org_id,
            &other.user_id,
            &other.method,
        )
    }
}

/// Where the sign-in is kept.
pub trait AuthStore: Send + Sync {
    fn load(&self) -> io::Result<Option<StoredAuth>>;
    /// Must be durable when it returns (a rotated refresh token is only used after this).
    fn save(&self, auth: &StoredAuth) -> io::Result<()>;
    fn clear(&self) -> io::Result<()>;
    /// For messages: where the token is.
    fn describe(&self) -> String;
}

/// The whole sign-in in one JSON file, mode 0600, replaced atomically.
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }
}

impl AuthStore for FileStore {
    fn load(&self) -> io::Result<Option<StoredAuth>> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, auth: &StoredAuth) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            callsync_fs::create_private_dir(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(auth).map_err(io::Error::other)?;
        callsync_fs::write_private_atomic(&self.path, &bytes)
    }

    fn clear(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        format!("{} (readable only by you)", self.path.display())
    }
}

/// The refresh token in the OS credential store (Keychain, Credential Manager, Secret
/// Service); the rest, which is not secret, in the JSON file.
pub struct KeyringStore {
    meta: FileStore,
    vault: Box<dyn Vault>,
    /// The last sign-in read, with the metadata file's identity then: every save rewrites that
    /// file (here or in another callsync process), so an unchanged file means an unchanged
    /// sign-in and the credential store (a D-Bus round trip on Linux) need not be asked again.
    loaded: std::sync::Mutex<Option<(FileStamp, StoredAuth)>>,
}

/// The credential store's entry for one refresh token (a seam: tests count its round trips).
trait Vault: Send + Sync {
    /// `Ok(None)`: there is no entry.
    fn get(&self) -> io::Result<Option<String>>;
    fn set(&self, secret: &str) -> io::Result<()>;
    /// A missing entry is not an error.
    fn delete(&self) -> io::Result<()>;
}

/// The platform's credential store through `keyring`.
struct OsVault {
    account: String,
}

const KEYRING_SERVICE: &str = "callsync";

impl OsVault {
    fn entry(&self) -> io::Result<keyring::Entry> {
        keyring::Entry::new(KEYRING_SERVICE, &self.account).map_err(io::Error::other)
    }
}

impl Vault for OsVault {
    fn get(&self) -> io::Result<Option<String>> {
        match self.entry()?.get_password() {
            Ok(t) => Ok(Some(t)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    fn set(&self, secret: &str) -> io::Result<()> {
        self.entry()?.set_password(secret).map_err(io::Error::other)
    }

    fn delete(&self) -> io::Result<()> {
        match self.entry()?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

impl KeyringStore {
    /// `None` where the platform has no usable credential store (headless Linux).
    pub fn open(meta_path: impl Into<PathBuf>) -> Option<KeyringStore> {
        let meta_path = meta_path.into();
        let vault = OsVault {
            account: format!("refresh-token:{}", meta_path.display()),
        };
        // Probe: a missing entry is fine, a missing store is not.
        vault.get().ok()?;
        Some(KeyringStore::with_vault(meta_path, Box::new(vault)))
    }

    fn with_vault(meta_path: PathBuf, vault: Box<dyn Vault>) -> KeyringStore {
        KeyringStore {
            meta: FileStore::new(meta_path),
            vault,
            loaded: std::sync::Mutex::default(),
        }
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Option<(FileStamp, StoredAuth)>> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AuthStore for KeyringStore {
    fn load(&self) -> io::Result<Option<StoredAuth>> {
        let Some(stamp) = FileStamp::of_path(&self.meta.path)? else {
            *self.remembered() = None;
            return Ok(None);
        };
        if let Some((s, auth)) = self.remembered().as_ref() {
            if *s == stamp {
                return Ok(Some(auth.clone()));
            }
        }
        let Some(mut auth) = self.meta.load()? else {
            return Ok(None);
        };
        let Some(token) = self.vault.get()? else {
            return Ok(None);
        };
        auth.refresh_token = Secret::new(token);
        *self.remembered() = Some((stamp, auth.clone()));
        Ok(Some(auth))
    }

    fn save(&self, auth: &StoredAuth) -> io::Result<()> {
        *self.remembered() = None;
        self.vault.set(auth.refresh_token.expose())?;
        let mut meta = auth.clone();
        meta.refresh_token = Secret::default();
        self.meta.save(&meta)
    }

    fn clear(&self) -> io::Result<()> {
        *self.remembered() = None;
        self.vault.delete()?;
        self.meta.clear()
    }

    fn describe(&self) -> String {
        "the OS credential store".into()
    }
}

/// The store for `auth_file` per `auth.store` (`auto`: the OS store when there is one). A
/// sign-in already stored is found where it was stored, whatever the setting says now: a file
/// holding the refresh token (a `file` store, or a PC without a credential store) is read as
/// a file, one without (the token is in the OS store) through the OS store.
pub fn open_store(kind: &str, auth_file: &Path) -> Arc<dyn AuthStore> {
    open_store_with(kind, auth_file, || KeyringStore::open(auth_file))
}

fn open_store_with(
    kind: &str,
    auth_file: &Path,
    keyring: impl FnOnce() -> Option<KeyringStore>,
) -> Arc<dyn AuthStore> {
    let stored = FileStore::new(auth_file).load().ok().flatten();
    let kind = match &stored {
        Some(a) if !a.refresh_token.expose().is_empty() => "file",
        // JWT sign-ins have no refresh token anywhere.
        Some(a) if kind == "file" && a.method != "jwt" => "keyring",
        _ => kind,
    };
    if kind == "file" {
        return Arc::new(FileStore::new(auth_file));
    }
    match keyring() {
        Some(k) => Arc::new(k),
        None => {
            // Said once per process (tests open many stores).
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::info!(
                    "no OS credential store available; the refresh token is kept in {} (mode 0600)",
                    auth_file.display()
                )
            });
            Arc::new(FileStore::new(auth_file))
        }
    }
}

/// Where a secret lives when there is no OS credential store.
fn secret_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("secrets").join(name.replace(['/', ':', '@'], "_"))
}

/// A small secret (the proxy password) in the OS credential store, or — where there is none —
/// a file readable only by the user under `dir`.
pub fn secret_set(dir: &Path, name: &str, value: &str) -> io::Result<String> {
    if let Ok(e) = keyring::Entry::new(KEYRING_SERVICE, name) {
        if e.set_password(value).is_ok() {
            return Ok("the OS credential store".into());
        }
    }
    let path = secret_file(dir, name);
    if let Some(d) = path.parent() {
        callsync_fs::create_private_dir(d)?;
    }
    callsync_fs::write_private_atomic(&path, value.as_bytes())?;
    Ok(format!("{} (readable only by you)", path.display()))
}

pub fn secret_get(dir: &Path, name: &str) -> Option<Secret> {
    if let Ok(e) = keyring::Entry::new(KEYRING_SERVICE, name) {
        if let Ok(v) = e.get_password() {
            return Some(Secret::new(v));
        }
    }
    std::fs::read_to_string(secret_file(dir, name))
        .ok()
        .map(|v| Secret::new(v.trim_end_matches('\n')))
}

/// The credential-store name of the proxy password for `user` at `url`.
pub fn proxy_secret_name(user: &str, url: &str) -> String {
    format!("proxy:{user}@{url}")
}

/// One line of the authentication history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at: String,
    pub org_id: String,
    pub user_id: String,
    pub username: String,
    pub instance_url: String,
    pub method: String,
}

pub fn append_history(path: &Path, e: &HistoryEntry) -> io::Result<()> {
    callsync_fs::append_json_line(path, e)
}

pub fn read_history(path: &Path) -> io::Result<Vec<HistoryEntry>> {
    callsync_fs::read_json_lines(path)
}

/// What went wrong signing in, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("{message}\n\n{fix}")]
    Refused {
        code: String,
        /// Salesforce's own words (`error_description`).
        description: String,
        message: String,
        fix: String,
    },
    #[error("the browser sign-in did not come back within {0:?}")]
    TimedOut(Duration),
    #[error("the sign-in answer did not match this request (state mismatch); try again")]
    StateMismatch,
    #[error("cannot listen for the sign-in answer on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Salesforce(#[from] SfError),
    #[error("bad sign-in settings: {0}")]
    Settings(String),
}

/// Maps OAuth errors to the second seed's fix steps (3–6).
pub fn explain(code: &str, description: &str) -> SignInError {
    let fix = match code {
        "OAUTH_APP_BLOCKED" => "The connected app is blocked in your org. A Salesforce administrator: Setup → \"Connected Apps OAuth Usage\" → find the callsync app → Load Action → Unblock. If the app is \"Admin approved users are pre-authorized\", also assign your profile or permission set to it. Then run `callsync connect` again.",
        "invalid_client" if description.contains("install") => "The connected app is not installed in your org, and your user may not approve uninstalled apps. Either: an administrator installs it (Setup → \"Connected Apps OAuth Usage\" → callsync → Install), or your user gets the \"Approve Uninstalled Connected Apps\" permission (profile or permission set). Then run `callsync connect` again.",
        "invalid_client_id" | "invalid_client" => "Salesforce does not know this client id. Check `salesforce.client_id` against the connected app's consumer key (Setup → App Manager → callsync → View → Consumer Key).",
        "redirect_uri_mismatch" => "The connected app's callback URL must be exactly the redirect callsync uses (see `callsync config show`: salesforce.redirect_port); add it in the app's OAuth settings.",
        "access_denied" | "access-denied" => "The sign-in was not allowed. Run `callsync connect` again and choose Allow.",
        "invalid_grant" if description.contains("approved") => "Your user has not approved this app (JWT sign-in). An administrator pre-authorizes it: connected app → Manage → Edit Policies → \"Admin approved users are pre-authorized\", then add your profile or permission set.",
        "invalid_grant" => "Salesforce refused the sign-in (expired or already used). Run `callsync connect` again.",
        _ => "Run `callsync doctor` for a full check, or `callsync connect` to sign in again.",
    };
    SignInError::Refused {
        code: code.into(),
        description: description.into(),
        message: format!("Salesforce refused the sign-in: {code}: {description}"),
        fix: fix.into(),
    }
}

/// The PKCE web-server flow: a loopback listener on `port`, the authorize URL for the browser
/// (`open` gets it: open a browser or print it), the code traded for tokens.
pub async fn sign_in_pkce(
    cfg: &ClientConfig,
    port: u16,
    open: impl FnOnce(&str),
    timeout: Duration,
) -> Result<TokenResponse, SignInError> {
    use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope};
    let redirect = format!("http://localhost:{port}/callback");
    let login = cfg.login_url.trim_end_matches('/');
    let client = oauth2::basic::BasicClient::new(ClientId::new(cfg.client_id.clone()))
        .set_auth_uri(
            AuthUrl::new(format!("{login}/services/oauth2/authorize"))
                .map_err(|e| SignInError::Settings(e.to_string()))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect.clone()).map_err(|e| SignInError::Settings(e.to_string()))?,
        );
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("api".into()))
        .add_scope(Scope::new("refresh_token".into()))
        .set_pkce_challenge(challenge)
        .url();

    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| SignInError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<HashMap<String, String>>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |q: axum::extract::Query<HashMap<String, String>>| {
            let tx = tx.clone();
            async move {
                let ok = !q.contains_key("error");
                if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(q.0);
                }
                axum::response::Html(if ok {
                    "<h1>callsync is signed in</h1><p>You can close this window.</p>"
                } else {
                    "<h1>callsync could not sign in</h1><p>See the callsync window for what to do.</p>"
                })
            }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    open(url.as_str());
    let answer = tokio::time::timeout(timeout, rx).await;
    // Let the browser get its page before the listener goes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.abort();
    let params = match answer {
        Ok(Ok(p)) => p,
        _ => return Err(SignInError::TimedOut(timeout)),
    };
    if params.get("state").map(String::as_str) != Some(state.secret().as_str()) {
        return Err(SignInError::StateMismatch);
    }
    if let Some(code) = params.get("error") {
        return Err(explain(
            code,
            params
                .get("error_description")
                .map(String::as_str)
                .unwrap_or_default(),
        ));
    }
    let code = params
        .get("code")
        .ok_or_else(|| SignInError::Settings("the answer carried no code".into()))?;
    token_request(
        cfg,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &cfg.client_id),
            ("redirect_uri", &redirect),
            ("code_verifier", verifier.secret()),
        ],
    )
    .await
}

/// The `aud` of a JWT bearer assertion: Salesforce accepts only `https://login.salesforce.com`,
/// `https://test.salesforce.com` (sandboxes) or an Experience Cloud site's URL, whatever host
/// the assertion is posted to (a My Domain URL as `aud` is refused: `invalid_grant: audience is
/// invalid`; HELP remoteaccess_oauth_jwt_flow).
pub(crate) fn jwt_audience(login_url: &str) -> String {
    let url = login_url.trim_end_matches('/');
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host == "test.salesforce.com" || host.ends_with(".sandbox.my.salesforce.com") {
        "https://test.salesforce.com".into()
    } else if host.ends_with(".my.site.com") || host.ends_with(".force.com") {
        // An Experience Cloud site signs its users in itself.
        url.to_owned()
    } else {
        "https://login.salesforce.com".into()
    }
}

/// The JWT bearer flow: an RS256 assertion signed with the key IT deployed; no browser.
pub async fn sign_in_jwt(
    cfg: &ClientConfig,
    username: &str,
    key_pem: &[u8],
) -> Result<TokenResponse, SignInError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem).map_err(|e| {
        SignInError::Settings(format!("the JWT key is not an RSA private key in PEM: {e}"))
    })?;
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": cfg.client_id, "sub": username, "aud": jwt_audience(&cfg.login_url), "exp": now + 180,
    });
    let assertion = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| SignInError::Settings(e.to_string()))?;
    token_request(
        cfg,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ],
    )
    .await
}

async fn token_request(
    cfg: &ClientConfig,
    form: &[(&str, &str)],
) -> Result<TokenResponse, SignInError> {
    let http = http_client(cfg)?;
    let url = format!(
        "{}/services/oauth2/token",
        cfg.login_url.trim_end_matches('/')
    );
    let (status, text) = read(http.post(url).form(form), &cfg.net).await?;
    if status != 200 {
        return Err(match api_error(status, &text) {
            SfError::Api { code, message, .. } => explain(&code, &message),
            other => other.into(),
        });
    }
    serde_json::from_str(&text).map_err(|e| SfError::Protocol(e.to_string()).into())
}

/// Fetches the identity (username) for a fresh token.
pub async fn identity(cfg: &ClientConfig, t: &TokenResponse) -> Result<Value, SfError> {
    let http = http_client(cfg)?;
    let (status, text) = read(
        http.get(&t.id).bearer_auth(t.access_token.expose()),
        &cfg.net,
    )
    .await?;
    if status != 200 {
        return Err(api_error(status, &text));
    }
    serde_json::from_str(&text).map_err(|e| SfError::Protocol(e.to_string()))
}

/// Turns a token response into what is stored (refresh token required except for JWT).
pub fn stored_from(
    cfg: &ClientConfig,
    t: &TokenResponse,
    username: &str,
    method: &str,
) -> StoredAuth {
    let (org_id, user_id) = t.org_and_user();
    StoredAuth {
        login_url: cfg.login_url.clone(),
        client_id: cfg.client_id.clone(),
        instance_url: t.instance_url.clone(),
        org_id,
        user_id,
        username: username.into(),
        refresh_token: t.refresh_token.clone().unwrap_or_default(),
        method: method.into(),
        connected_at: callsync_core::record::format_sf_datetime(chrono::Utc::now()),
        jwt_key_file: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredAuth {
        StoredAuth {
            login_url: "https://login.salesforce.com".into(),
            client_id: "cid".into(),
            instance_url: "https://acme.my.salesforce.com".into(),
            org_id: "00D".into(),
            user_id: "005".into(),
            username: "taro@acme".into(),
            refresh_token: Secret::new("5Aep-secret"),
            method: "pkce".into(),
            connected_at: "2026-11-21T00:00:00.000+0000".into(),
            jwt_key_file: None,
        }
    }

    /// Defect: the demo stored the sign-in in a file (`auth.store = "file"`) and suggested a
    /// command that, on a desktop with a credential store, looked there and found nobody.
    #[test]
    fn a_sign_in_is_found_where_it_was_stored() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("auth.json");
        let vault = CountingVault::default();
        let keyring = || {
            Some(KeyringStore::with_vault(
                file.clone(),
                Box::new(vault.clone()),
            ))
        };
        // Stored in the file: every setting finds it there.
        open_store_with("file", &file, keyring)
            .save(&sample())
            .unwrap();
        for kind in ["auto", "file", "keyring"] {
            let s = open_store_with(kind, &file, keyring);
            assert_eq!(s.load().unwrap(), Some(sample()), "{kind}");
        }
        // Stored in the credential store: found there even with `auth.store = "file"`.
        std::fs::remove_file(&file).unwrap();
        open_store_with("auto", &file, keyring)
            .save(&sample())
            .unwrap();
        let meta = FileStore::new(&file).load().unwrap().unwrap();
        assert!(
            meta.refresh_token.expose().is_empty(),
            "no token in the file"
        );
        for kind in ["auto", "file"] {
            let s = open_store_with(kind, &file, keyring);
            assert_eq!(s.load().unwrap(), Some(sample()), "{kind}");
        }
    }

    #[test]
    fn jwt_audience_table() {
        for (login, aud) in [
            (
                "https://login.salesforce.com",
                "https://login.salesforce.com",
            ),
            (
                "https://acme.my.salesforce.com/",
                "https://login.salesforce.com",
            ),
            ("https://test.salesforce.com", "https://test.salesforce.com"),
            (
                "https://acme--uat.sandbox.my.salesforce.com",
                "https://test.salesforce.com",
            ),
            (
                "https://acme.my.site.com/customers",
                "https://acme.my.site.com/customers",
            ),
            ("http://127.0.0.1:8900", "https://login.salesforce.com"),
        ] {
            assert_eq!(jwt_audience(login), aud, "{login}");
        }
    }

    #[test]
    fn file_store_is_private_and_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::new(d.path().join("sub/auth.json"));
        assert_eq!(s.load().unwrap(), None);
        s.save(&sample()).unwrap();
        assert_eq!(s.load().unwrap(), Some(sample()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("sub/auth.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        s.clear().unwrap();
        assert_eq!(s.load().unwrap(), None);
        s.clear().unwrap();
    }

    /// An in-memory credential store shared by "processes", counting its round trips.
    #[derive(Clone, Default)]
    struct CountingVault(Arc<std::sync::Mutex<(Option<String>, usize)>>);

    impl Vault for CountingVault {
        fn get(&self) -> io::Result<Option<String>> {
            let mut g = self.0.lock().unwrap();
            g.1 += 1;
            Ok(g.0.clone())
        }
        fn set(&self, secret: &str) -> io::Result<()> {
            let mut g = self.0.lock().unwrap();
            g.1 += 1;
            g.0 = Some(secret.into());
            Ok(())
        }
        fn delete(&self) -> io::Result<()> {
            let mut g = self.0.lock().unwrap();
            g.1 += 1;
            g.0 = None;
            Ok(())
        }
    }

    #[test]
    fn keyring_store_asks_the_credential_store_only_when_the_sign_in_changed() {
        let d = tempfile::tempdir().unwrap();
        let meta = d.path().join("auth.json");
        let vault = CountingVault::default();
        let trips = || vault.0.lock().unwrap().1;
        let agent = KeyringStore::with_vault(meta.clone(), Box::new(vault.clone()));
        let cli = KeyringStore::with_vault(meta.clone(), Box::new(vault.clone()));
        assert_eq!(agent.load().unwrap(), None);
        assert_eq!(
            trips(),
            0,
            "no metadata file: nobody signed in, nothing to ask"
        );

        cli.save(&sample()).unwrap();
        let on_disk = std::fs::read_to_string(&meta).unwrap();
        assert!(!on_disk.contains("5Aep-secret"), "{on_disk}");
        let before = trips();
        for _ in 0..100 {
            assert_eq!(agent.load().unwrap(), Some(sample()));
        }
        assert_eq!(
            trips() - before,
            1,
            "one round trip for 100 reads of one sign-in"
        );

        // Another process signs in again (a rotated token): the next read sees it.
        let mut again = sample();
        again.refresh_token = Secret::new("5Aep-rotated");
        again.connected_at = "2026-11-21T01:00:00.000+0000".into();
        cli.save(&again).unwrap();
        assert_eq!(agent.load().unwrap(), Some(again.clone()));
        assert_eq!(
            agent.load().unwrap().unwrap().refresh_token.expose(),
            "5Aep-rotated"
        );

        // Signed out elsewhere: gone here too, without asking the store.
        cli.clear().unwrap();
        let before = trips();
        assert_eq!(agent.load().unwrap(), None);
        assert_eq!(trips(), before);
    }

    #[test]
    fn history_appends() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.jsonl");
        let e = HistoryEntry {
            at: "t".into(),
            org_id: "00D".into(),
            user_id: "005".into(),
            username: "u".into(),
            instance_url: "i".into(),
            method: "pkce".into(),
        };
        append_history(&p, &e).unwrap();
        append_history(&p, &e).unwrap();
        assert_eq!(read_history(&p).unwrap().len(), 2);
    }

    #[test]
    fn blocked_apps_get_the_seed_fix_steps() {
        let e = explain("OAUTH_APP_BLOCKED", "this app is blocked by admin").to_string();
        assert!(e.contains("Unblock"), "{e}");
        let e = explain("invalid_client", "app must be installed into org").to_string();
        assert!(
            e.contains("Approve Uninstalled Connected Apps") && e.contains("Install"),
            "{e}"
        );
    }
}
