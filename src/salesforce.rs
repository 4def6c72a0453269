//! The Salesforce REST client: sessions, refresh on `401 INVALID_SESSION_ID` (once, then retry
//! once), rotated refresh tokens persisted before they are used, typed errors that say whether
//! a retry can help, and API-usage tracking from `Sforce-Limit-Info`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::auth::{AuthStore, StoredAuth};

/// A secret string: never printed, never logged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// Salesforce's token response (all grants). There is no `expires_in`.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: Secret,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    pub instance_url: String,
    /// `https://login…/id/<org>/<user>`.
    pub id: String,
    #[serde(default)]
    pub issued_at: Option<String>,
}

impl TokenResponse {
    /// (org id, user id) from the identity URL's last two segments.
    pub fn org_and_user(&self) -> (String, String) {
        let mut parts = self.id.trim_end_matches('/').rsplit('/');
        let user = parts.next().unwrap_or_default().to_owned();
        let org = parts.next().unwrap_or_default().to_owned();
        (org, user)
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum SfError {
    /// No answer: connection refused, reset, timeout, DNS. Retry later.
    #[error("cannot reach Salesforce: {0}")]
    Network(String),
    /// The proxy requests must go through does not answer. Retry later.
    #[error("cannot reach the proxy {proxy} (set in {from}): is the proxy running, and is {from} right? Nothing is lost: Tasks stay queued and are sent when it answers again ({detail})")]
    ProxyUnreachable {
        proxy: String,
        from: String,
        detail: String,
    },
    /// The refresh token is no longer valid (revoked, expired, app blocked): sign in again.
    /// `code` is Salesforce's OAuth error (`invalid_grant`, `OAUTH_APP_BLOCKED`, …) when it
    /// gave one: the doctor turns it into a fix.
    #[error("sign-in needed: {}{message}", .code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
    SignInNeeded {
        code: Option<String>,
        message: String,
    },
    /// Not signed in at all.
    #[error("not signed in: run `callsync connect`")]
    NotConnected,
    /// An error Salesforce returned.
    #[error("Salesforce answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        fields: Vec<String>,
    },
    #[error("unexpected answer from Salesforce: {0}")]
    Protocol(String),
    #[error("cannot save the sign-in: {0}")]
    Store(String),
}

impl SfError {
    /// Whether trying again later can succeed without anyone fixing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            SfError::Network(_) | SfError::ProxyUnreachable { .. } => true,
            SfError::Api { status, code, .. } => {
                matches!(
                    code.as_str(),
                    "UNABLE_TO_LOCK_ROW" | "REQUEST_LIMIT_EXCEEDED" | "SERVER_UNAVAILABLE"
                ) || *status >= 500
            }
            SfError::Protocol(_) => true,
            SfError::SignInNeeded { .. } | SfError::NotConnected | SfError::Store(_) => false,
        }
    }

    /// The org's API limit is exhausted: back off for long.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, SfError::Api { code, .. } if code == "REQUEST_LIMIT_EXCEEDED")
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            SfError::Api { code, .. } => Some(code),
            SfError::SignInNeeded { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Sign-in needed for a reason of our own (no OAuth error code from Salesforce).
    pub fn sign_in(message: impl Into<String>) -> Self {
        SfError::SignInNeeded {
            code: None,
            message: message.into(),
        }
    }
}

/// Parses an error body: REST's `[{"errorCode", "message", "fields"}]` or OAuth's
/// `{"error", "error_description"}`; anything else (HTML from a gateway) by status.
pub fn api_error(status: u16, body: &str) -> SfError {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(e) = v.as_array().and_then(|a| a.first()) {
            return error_entry(status, e);
        }
        if let Some(code) = v["error"].as_str() {
            return SfError::Api {
                status,
                code: code.to_owned(),
                message: v["error_description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                fields: Vec::new(),
            };
        }
    }
    let code = match status {
        503 => "SERVER_UNAVAILABLE",
        502 => "BAD_GATEWAY",
        500 => "SERVER_ERROR",
        _ => "UNKNOWN",
    };
    SfError::Api {
        status,
        code: code.into(),
        message: body.chars().take(200).collect(),
        fields: Vec::new(),
    }
}

/// One entry of an error list: REST's `errorCode` or sObject Collections' `statusCode`.
pub fn error_entry(status: u16, e: &Value) -> SfError {
    SfError::Api {
        status,
        code: e["errorCode"]
            .as_str()
            .or(e["statusCode"].as_str())
            .unwrap_or("UNKNOWN")
            .to_owned(),
        message: e["message"].as_str().unwrap_or_default().to_owned(),
        fields: e["fields"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Sends a request and reads the whole answer: (status, body text).
pub(crate) async fn read(
    rb: reqwest::RequestBuilder,
    net: &NetSettings,
) -> Result<(u16, String), SfError> {
    let r = rb.send().await.map_err(|e| network(e, net))?;
    let status = r.status().as_u16();
    if is_proxy_refusal(&r) {
        return Err(proxy_refused());
    }
    let text = r.text().await.map_err(|e| network(e, net))?;
    Ok((status, text))
}

/// A failed request in plain words. With a proxy in use, a failure to connect is a failure to
/// reach the proxy (the client never connects to Salesforce itself): the proxy is named, with
/// its address and the fix, not Salesforce.
pub fn network(e: reqwest::Error, net: &NetSettings) -> SfError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    let lower = msg.to_ascii_lowercase();
    let proxy_down =
        e.is_connect() && !lower.contains("unsuccessful tunnel") && !lower.contains("certificate");
    if let (true, Some((proxy, from))) = (proxy_down, net.proxy_in_use()) {
        return SfError::ProxyUnreachable {
            proxy,
            from,
            detail: msg,
        };
    }
    SfError::Network(plain_words(&msg))
}

/// A proxy asking for credentials: `407`, or (tinyproxy and some others) `401` with a Basic
/// challenge, which Salesforce never sends (its 401 is a JSON INVALID_SESSION_ID).
fn is_proxy_refusal(r: &reqwest::Response) -> bool {
    let basic = |h: &str| {
        r.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("basic"))
    };
    r.status().as_u16() == 407
        || (r.status().as_u16() == 401
            && (basic("www-authenticate") || basic("proxy-authenticate")))
}

/// The proxy wants (other) credentials: retryable, nothing reached Salesforce.
fn proxy_refused() -> SfError {
    SfError::Network(plain_words("407 Proxy Authentication Required"))
}

/// What a network failure means, for people: certificate and proxy problems in plain words
/// (followed by the technical detail).
pub fn plain_words(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    let what = if d.contains("unknownissuer")
        || d.contains("unknown issuer")
        || d.contains("unknown ca")
    {
        "the server's certificate is signed by an authority this PC does not trust: your company's TLS inspection CA may be missing (install it in the system trust store, or set tls.extra_ca_file to its PEM file)"
    } else if d.contains("expired") || d.contains("notvalidyet") {
        "the server's certificate has expired or is not yet valid (or this PC's clock is wrong)"
    } else if d.contains("notvalidforname") || d.contains("not valid for name") {
        "the server's certificate is for another host name (check salesforce.login_url, or a proxy is intercepting TLS)"
    } else if d.contains("407") || d.contains("proxy authentication") {
        "the proxy refused: authentication required (check proxy.user and the password stored with `callsync proxy password`)"
    } else if d.contains("proxy") && (d.contains("connection refused") || d.contains("tunnel")) {
        "cannot reach the proxy (is proxy.url right and the proxy running?)"
    } else if d.contains("dns error")
        || d.contains("failed to lookup")
        || d.contains("name or service not known")
    {
        "the host name cannot be resolved (DNS): check the network or the proxy settings"
    } else if d.contains("connection refused") {
        "the connection was refused"
    } else if d.contains("timed out") || d.contains("timeout") {
        "no answer in time"
    } else {
        return detail.to_owned();
    };
    format!("{what} ({detail})")
}

/// How the client reaches the org.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub login_url: String,
    pub client_id: String,
    pub api_version: String,
    pub timeout: Duration,
    pub net: NetSettings,
}

/// Corporate-network settings: a proxy (else the environment's `HTTPS_PROXY`/`HTTP_PROXY`/
/// `NO_PROXY` and the system settings) and extra trusted CAs (a TLS-inspection CA), on top of
/// the OS trust store. There is no way to turn certificate verification off.
#[derive(Clone, Debug, Default)]
pub struct NetSettings {
    pub proxy: Option<String>,
    pub proxy_user: Option<String>,
    pub proxy_password: Option<Secret>,
    pub no_proxy: Option<String>,
    /// PEM certificates trusted in addition to the OS store.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// The extra CA file could not be read: every connection fails with this, in plain words.
    pub extra_ca_error: Option<String>,
}

impl NetSettings {
    /// The proxy requests go through and where it is set: `proxy.url`, else the environment
    /// (`HTTPS_PROXY`, `ALL_PROXY`, as reqwest reads them). Credentials in the URL are never
    /// included.
    pub fn proxy_in_use(&self) -> Option<(String, String)> {
        let shown = |v: &str| match url::Url::parse(v) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                let _ = u.set_username("");
                u.to_string().trim_end_matches('/').to_owned()
            }
            Err(_) => v.to_owned(),
        };
        if let Some(p) = self.proxy.as_deref().filter(|p| !p.is_empty()) {
            return Some((shown(p), "proxy.url".into()));
        }
        ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
            .into_iter()
            .find_map(|var| {
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (shown(&v), var.to_owned()))
            })
    }
}

struct Live {
    instance_url: String,
    access_token: Option<Secret>,
}

/// A signed-in connection to one org. Cloning is cheap and shares the session.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::ops::Deref for Client {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

pub struct Inner {
    /// What each object's describe said about writing its fields (asked once per session).
    write_rules: Mutex<std::collections::HashMap<String, WriteRules>>,
    http: reqwest::Client,
    cfg: ClientConfig,
    store: Arc<dyn AuthStore>,
    auth: StoredAuth,
    live: Mutex<Live>,
    api_used: AtomicU64,
    api_max: AtomicU64,
    calls: AtomicU64,
}

/// Builds the HTTP client every request goes through.
pub fn http_client(cfg: &ClientConfig) -> Result<reqwest::Client, SfError> {
    let mut b = reqwest::Client::builder();
    let net = &cfg.net;
    if let Some(e) = &net.extra_ca_error {
        return Err(SfError::Store(e.clone()));
    }
    if let Some(url) = net.proxy.as_deref().filter(|u| !u.is_empty()) {
        let mut p = reqwest::Proxy::all(url)
            .map_err(|e| SfError::Store(format!("bad proxy.url {url:?}: {e}")))?;
        if let Some(user) = net.proxy_user.as_deref().filter(|u| !u.is_empty()) {
            let pw = net
                .proxy_password
                .as_ref()
                .map(Secret::expose)
                .unwrap_or_default();
            p = p.basic_auth(user, pw);
        }
        p = p.no_proxy(
            net.no_proxy
                .as_deref()
                .and_then(reqwest::NoProxy::from_string),
        );
        b = b.proxy(p);
    }
    if let Some(pem) = &net.extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            SfError::Store(format!(
                "tls.extra_ca_file is not a PEM certificate bundle: {e}"
            ))
        })?;
        if certs.is_empty() {
            return Err(SfError::Store(
                "tls.extra_ca_file holds no certificate".into(),
            ));
        }
        b = b.tls_certs_merge(certs);
    }
    b.timeout(cfg.timeout)
        .connect_timeout(Duration::from_secs(10))
        .gzip(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("callsync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| network(e, net))
}

impl Client {
    /// A client for the org the store says we are signed in to.
    pub fn from_store(cfg: ClientConfig, store: Arc<dyn AuthStore>) -> Result<Client, SfError> {
        let auth = store
            .load()
            .map_err(|e| SfError::Store(e.to_string()))?
            .ok_or(SfError::NotConnected)?;
        Ok(Client {
            inner: Arc::new(Inner {
                write_rules: Mutex::default(),
                http: http_client(&cfg)?,
                live: Mutex::new(Live {
                    instance_url: auth.instance_url.clone(),
                    access_token: None,
                }),
                cfg,
                store,
                auth,
                api_used: AtomicU64::new(0),
                api_max: AtomicU64::new(0),
                calls: AtomicU64::new(0),
            }),
        })
    }
}

impl Inner {
    pub fn auth(&self) -> &StoredAuth {
        &self.auth
    }

    /// (used, max) from the last `Sforce-Limit-Info`, if any response carried one.
    pub fn api_usage(&self) -> Option<(u64, u64)> {
        let max = self.api_max.load(Ordering::Relaxed);
        (max > 0).then(|| (self.api_used.load(Ordering::Relaxed), max))
    }

    /// Requests this client sent (REST and token), for figures.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn api_version(&self) -> &str {
        &self.cfg.api_version
    }

    /// Trades the refresh token for a new access token. A rotated refresh token is saved
    /// before anything uses it: a crash after the refresh leaves the new one on disk.
    pub async fn refresh(&self) -> Result<(), SfError> {
        let mut live = self.live.lock().await;
        self.refresh_locked(&mut live).await
    }

    async fn refresh_locked(&self, live: &mut Live) -> Result<(), SfError> {
        let current = self
            .store
            .load()
            .map_err(|e| SfError::Store(e.to_string()))?
            .ok_or(SfError::NotConnected)?;
        if current.method == "jwt" {
            // No refresh token with JWT: sign a new assertion with the deployed key.
            let path = current.jwt_key_file.clone().unwrap_or_default();
            let key = std::fs::read(&path)
                .map_err(|e| SfError::sign_in(format!("cannot read the JWT key {path}: {e}")))?;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let tr = crate::auth::sign_in_jwt(&self.cfg, &current.username, &key)
                .await
                .map_err(|e| match e {
                    crate::auth::SignInError::Salesforce(s) => s,
                    // Salesforce's code kept, as for a refused refresh token: the doctor's fix
                    // depends on it (a user not pre-authorized is not a key problem).
                    crate::auth::SignInError::Refused {
                        code, description, ..
                    } => SfError::SignInNeeded {
                        code: Some(code),
                        message: description,
                    },
                    other => SfError::sign_in(other.to_string()),
                })?;
            live.instance_url = tr.instance_url;
            live.access_token = Some(tr.access_token);
            return Ok(());
        }
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", current.refresh_token.expose()),
            ("client_id", &self.cfg.client_id),
        ];
        self.calls.fetch_add(1, Ordering::Relaxed);
        let url = format!(
            "{}/services/oauth2/token",
            current.login_url.trim_end_matches('/')
        );
        let (status, text) = read(self.http.post(url).form(&form), &self.cfg.net).await?;
        if status != 200 {
            let e = api_error(status, &text);
            return Err(match e {
                SfError::Api { code, message, .. }
                    if matches!(
                        code.as_str(),
                        "invalid_grant"
                            | "invalid_client_id"
                            | "invalid_client"
                            | "OAUTH_APP_BLOCKED"
                    ) =>
                {
                    SfError::SignInNeeded {
                        code: Some(code),
                        message,
                    }
                }
                e => e,
            });
        }
        let tr: TokenResponse =
            serde_json::from_str(&text).map_err(|e| SfError::Protocol(e.to_string()))?;
        if let Some(rotated) = &tr.refresh_token {
            let mut next = current.clone();
            next.refresh_token = rotated.clone();
            next.instance_url = tr.instance_url.clone();
            self.store
                .save(&next)
                .map_err(|e| SfError::Store(e.to_string()))?;
        }
        live.instance_url = tr.instance_url;
        live.access_token = Some(tr.access_token);
        tracing::debug!("access token refreshed");
        Ok(())
    }

    /// Sends a request to a path under the instance (`/services/data/…`), refreshing the
    /// session first if there is none and once more on `401`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Option<Value>), SfError> {
        let (status, _, text) = self.send_raw(method, path, body).await?;
        let v = if text.trim().is_empty() {
            None
        } else {
            Some(serde_json::from_str(&text).map_err(|e| SfError::Protocol(e.to_string()))?)
        };
        Ok((status, v))
    }

    /// As [`Inner::send`], answering the raw text and headers (Bulk API results are CSV).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, reqwest::header::HeaderMap, String), SfError> {
        let mut refreshed = false;
        let mut stale_retried = false;
        loop {
            let (url, token) = {
                let mut live = self.live.lock().await;
                if live.access_token.is_none() {
                    self.refresh_locked(&mut live).await?;
                    refreshed = true;
                }
                let token = live.access_token.clone().unwrap_or_default();
                (
                    format!("{}{}", live.instance_url.trim_end_matches('/'), path),
                    token,
                )
            };
            let mut rb = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose());
            if let Some(b) = body {
                rb = rb.json(b);
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            let r = match rb.send().await {
                Ok(r) => r,
                // A pooled connection the peer (often a proxy without keep-alive) had closed:
                // a GET is safe to send once more on a fresh connection.
                Err(e) if method == Method::GET && !stale_retried && is_stale_connection(&e) => {
                    stale_retried = true;
                    continue;
                }
                Err(e) => return Err(network(e, &self.cfg.net)),
            };
            self.note_usage(r.headers());
            let status = r.status();
            if is_proxy_refusal(&r) {
                return Err(proxy_refused());
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                let mut live = self.live.lock().await;
                // Another task may have refreshed meanwhile: only refresh if ours is stale.
                if live.access_token.as_ref().map(Secret::expose) == Some(token.expose()) {
                    live.access_token = None;
                    self.refresh_locked(&mut live).await?;
                }
                refreshed = true;
                continue;
            }
            let headers = r.headers().clone();
            let text = r.text().await.map_err(|e| network(e, &self.cfg.net))?;
            if status.is_success() || status.as_u16() == 300 {
                return Ok((status.as_u16(), headers, text));
            }
            let e = api_error(status.as_u16(), &text);
            if status == StatusCode::UNAUTHORIZED {
                return Err(SfError::sign_in(e.to_string()));
            }
            return Err(e);
        }
    }

    /// Which of `object`'s fields may only be set when a record is created, from its describe
    /// (asked once per session). If the describe cannot be had, the standard create-only
    /// fields are assumed, so an update is never refused for naming one.
    /// The rules of an earlier describe in this session, if one was made.
    pub async fn known_write_rules(&self, object: &str) -> Option<WriteRules> {
        self.write_rules.lock().await.get(object).cloned()
    }

    pub async fn write_rules(&self, object: &str) -> WriteRules {
        if let Some(r) = self.write_rules.lock().await.get(object) {
            return r.clone();
        }
        match self
            .get(&self.data_path(&format!("/sobjects/{object}/describe")))
            .await
        {
            Ok(d) => {
                let r = WriteRules::from_describe(&d);
                self.write_rules
                    .lock()
                    .await
                    .insert(object.to_owned(), r.clone());
                r
            }
            Err(e) => {
                tracing::debug!(error = %e, object, "describe failed; standard create-only fields assumed");
                WriteRules::standard(object)
            }
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, SfError> {
        let (_, v) = self.send(Method::GET, path, None).await?;
        v.ok_or_else(|| SfError::Protocol("empty body".into()))
    }

    pub fn data_path(&self, rest: &str) -> String {
        format!("/services/data/v{}{rest}", self.cfg.api_version)
    }

    /// First page of a SOQL query (`queryAll` includes deleted rows).
    pub async fn query(&self, soql: &str, all: bool) -> Result<QueryPage, SfError> {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", soql)
            .finish();
        let path = self.data_path(&format!("/{}?{q}", if all { "queryAll" } else { "query" }));
        QueryPage::from_value(self.get(&path).await?)
    }

    pub async fn next_page(&self, next_url: &str) -> Result<QueryPage, SfError> {
        QueryPage::from_value(self.get(next_url).await?)
    }

    /// Starts a Bulk API 2.0 query job; returns its id.
    pub async fn bulk_query_start(&self, soql: &str) -> Result<String, SfError> {
        let body = serde_json::json!({
            "operation": "query", "query": soql, "contentType": "CSV",
            "columnDelimiter": "COMMA", "lineEnding": "LF",
        });
        let (_, v) = self
            .send(Method::POST, &self.data_path("/jobs/query"), Some(&body))
            .await?;
        v.and_then(|v| v["id"].as_str().map(str::to_owned))
            .ok_or_else(|| SfError::Protocol("bulk job without id".into()))
    }

    /// Waits for a Bulk query job to complete (polling 0.2 s, doubling to 5 s, for up to
    /// 15 minutes).
    pub async fn bulk_wait(&self, job: &str) -> Result<(), SfError> {
        let mut delay = Duration::from_millis(200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
        loop {
            let v = self
                .get(&self.data_path(&format!("/jobs/query/{job}")))
                .await?;
            match v["state"].as_str().unwrap_or_default() {
                "JobComplete" => return Ok(()),
                "Failed" | "Aborted" => {
                    return Err(SfError::Api {
                        status: 200,
                        code: "BULK_JOB_FAILED".into(),
                        message: v["errorMessage"]
                            .as_str()
                            .unwrap_or("the bulk query job failed")
                            .into(),
                        fields: Vec::new(),
                    })
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(SfError::Protocol(format!(
                        "bulk job {job} still running after 15 minutes"
                    )))
                }
                _ => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One page of a completed Bulk query job's results, as REST-shaped records of `object`.
    pub async fn bulk_results(
        &self,
        job: &str,
        object: &str,
        locator: Option<&str>,
        max_records: usize,
    ) -> Result<BulkPage, SfError> {
        let mut path = format!("/jobs/query/{job}/results?maxRecords={max_records}");
        if let Some(l) = locator {
            path.push_str(&format!("&locator={l}"));
        }
        let (_, headers, text) = self
            .send_raw(Method::GET, &self.data_path(&path), None)
            .await?;
        let next = headers
            .get("Sforce-Locator")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && *v != "null")
            .map(str::to_owned);
        Ok(BulkPage {
            records: csv_records(&text, object)?,
            next_locator: next,
        })
    }

    /// Revokes the refresh token (and its sessions) at Salesforce.
    pub async fn revoke(&self) -> Result<(), SfError> {
        let url = format!(
            "{}/services/oauth2/revoke",
            self.auth.login_url.trim_end_matches('/')
        );
        let rb = self
            .http
            .post(url)
            .form(&[("token", self.auth.refresh_token.expose())]);
        match read(rb, &self.cfg.net).await? {
            (200, _) => Ok(()),
            (status, text) => Err(api_error(status, &text)),
        }
    }

    fn note_usage(&self, headers: &reqwest::header::HeaderMap) {
        let Some(v) = headers
            .get("Sforce-Limit-Info")
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        if let Some((used, max)) = parse_limit_info(v) {
            self.api_used.store(used, Ordering::Relaxed);
            self.api_max.store(max, Ordering::Relaxed);
        }
    }
}

/// What an object's describe says about writing it: the fields Salesforce accepts on create
/// only (`createable` and not `updateable`, e.g. Task's `TaskSubtype`). A write that may update
/// an existing record (an update, an upsert that may match) must not name them, or Salesforce
/// refuses it with `INVALID_FIELD_FOR_INSERT_UPDATE`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteRules {
    create_only: std::collections::BTreeSet<String>,
}

impl WriteRules {
    pub fn from_describe(d: &Value) -> WriteRules {
        let create_only = d["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                f["createable"] == Value::Bool(true) && f["updateable"] == Value::Bool(false)
            })
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect();
        WriteRules { create_only }
    }

    /// The standard create-only fields of the objects callsync writes (OBJ
    /// sforce_api_objects_task / _event: TaskSubtype and EventSubtype are "Create", not
    /// "Update").
    pub fn standard(object: &str) -> WriteRules {
        let names: &[&str] = match object {
            "Task" => &["TaskSubtype"],
            "Event" => &["EventSubtype"],
            _ => &[],
        };
        WriteRules {
            create_only: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn is_create_only(&self, field: &str) -> bool {
        self.create_only.contains(field)
    }

    /// Whether an error message (`Unable to create/update fields: TaskSubtype. …`) names one
    /// of the create-only fields.
    pub fn named_in(&self, message: &str) -> bool {
        let Some(list) = message.split_once("fields:").map(|(_, l)| l) else {
            return false;
        };
        let list = list.split_once(". ").map(|(l, _)| l).unwrap_or(list);
        list.split(',')
            .map(|f| f.trim().trim_end_matches('.'))
            .any(|f| self.is_create_only(f))
    }

    /// The fields a write that may update can carry.
    pub fn for_update(
        &self,
        fields: &std::collections::BTreeMap<String, Value>,
    ) -> std::collections::BTreeMap<String, Value> {
        fields
            .iter()
            .filter(|(k, _)| !self.is_create_only(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A datetime as a SOQL literal: `2024-05-01T12:00:00Z` (SOQL accepts only `Z` or `±hh:mm`,
/// no fractions: the `…000+0000` form of API answers is refused there).
pub fn soql_datetime(d: chrono::DateTime<chrono::Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A text value inside a quoted SOQL literal.
pub fn soql_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// `api-usage=10018/100000; api-bursts=1/750` → (10018, 100000).
pub fn parse_limit_info(v: &str) -> Option<(u64, u64)> {
    let usage = v
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

/// One page of Bulk API results.
#[derive(Clone, Debug)]
pub struct BulkPage {
    pub records: Vec<Value>,
    pub next_locator: Option<String>,
}

/// Bulk CSV → records shaped as the REST API returns them: `Account.Name` columns become nested
/// objects, empty cells null, `Is…` columns booleans.
pub fn csv_records(text: &str, object: &str) -> Result<Vec<Value>, SfError> {
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = r
        .headers()
        .map_err(|e| SfError::Protocol(format!("bulk CSV: {e}")))?
        .clone();
    let mut out = Vec::new();
    for row in r.records() {
        let row = row.map_err(|e| SfError::Protocol(format!("bulk CSV: {e}")))?;
        let mut m = serde_json::Map::new();
        m.insert("attributes".into(), serde_json::json!({"type": object}));
        for (h, cell) in headers.iter().zip(row.iter()) {
            let leaf = h.rsplit('.').next().unwrap_or(h);
            let v = if cell.is_empty() {
                Value::Null
            } else if leaf.starts_with("Is") && (cell == "true" || cell == "false") {
                Value::Bool(cell == "true")
            } else {
                Value::String(cell.to_owned())
            };
            match h.split_once('.') {
                Some((rel, field)) => {
                    let e = m.entry(rel.to_owned()).or_insert(Value::Null);
                    if !v.is_null() {
                        if e.is_null() {
                            *e = serde_json::json!({});
                        }
                        // A column named both `X` and `X.Y` (no Salesforce answer has that)
                        // keeps the first.
                        if let Some(obj) = e.as_object_mut() {
                            obj.insert(field.to_owned(), v);
                        }
                    }
                }
                None => {
                    m.insert(h.to_owned(), v);
                }
            }
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

/// One page of query results.
#[derive(Clone, Debug)]
pub struct QueryPage {
    pub total_size: u64,
    pub records: Vec<Value>,
    pub next_records_url: Option<String>,
}

impl QueryPage {
    pub fn from_value(v: Value) -> Result<QueryPage, SfError> {
        let records = v["records"]
            .as_array()
            .cloned()
            .ok_or_else(|| SfError::Protocol("query result without records".into()))?;
        Ok(QueryPage {
            total_size: v["totalSize"].as_u64().unwrap_or(records.len() as u64),
            next_records_url: v["nextRecordsUrl"].as_str().map(str::to_owned),
            records,
        })
    }
}

/// hyper's "connection closed before message completed": the request went out on a kept-alive
/// connection the other end had already closed.
fn is_stale_connection(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err
            .to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info_and_errors() {
        assert_eq!(
            parse_limit_info("api-usage=10018/100000"),
            Some((10018, 100000))
        );
        assert_eq!(
            parse_limit_info("api-usage=1/750; api-bursts=1/750"),
            Some((1, 750))
        );
        assert_eq!(parse_limit_info("nonsense"), None);
        let table: &[(u16, &str, &str, bool)] = &[
            (
                401,
                r#"[{"errorCode":"INVALID_SESSION_ID","message":"Session expired or invalid"}]"#,
                "INVALID_SESSION_ID",
                false,
            ),
            (
                403,
                r#"[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"TotalRequests Limit exceeded."}]"#,
                "REQUEST_LIMIT_EXCEEDED",
                true,
            ),
            (
                400,
                r#"[{"errorCode":"UNABLE_TO_LOCK_ROW","message":"unable to obtain exclusive access"}]"#,
                "UNABLE_TO_LOCK_ROW",
                true,
            ),
            (
                400,
                r#"[{"errorCode":"INVALID_FIELD","message":"No such column"}]"#,
                "INVALID_FIELD",
                false,
            ),
            (
                400,
                r#"[{"statusCode":"REQUIRED_FIELD_MISSING","message":"Required fields are missing: [Status]"}]"#,
                "REQUIRED_FIELD_MISSING",
                false,
            ),
            (
                503,
                "<html>Service Unavailable</html>",
                "SERVER_UNAVAILABLE",
                true,
            ),
            (502, "", "BAD_GATEWAY", true),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"expired access/refresh token"}"#,
                "invalid_grant",
                false,
            ),
        ];
        for (status, body, code, retry) in table {
            let e = api_error(*status, body);
            assert_eq!(e.code(), Some(*code), "{body}");
            assert_eq!(e.is_retryable(), *retry, "{body}");
        }
        assert!(SfError::Network("reset".into()).is_retryable());
        assert!(!SfError::sign_in("x").is_retryable());
        let refused = SfError::SignInNeeded {
            code: Some("invalid_grant".into()),
            message: "expired access/refresh token".into(),
        };
        assert_eq!(refused.code(), Some("invalid_grant"));
        assert_eq!(
            refused.to_string(),
            "sign-in needed: invalid_grant: expired access/refresh token"
        );
        assert_eq!(SfError::sign_in("x").to_string(), "sign-in needed: x");
    }

    #[test]
    fn bulk_csv_becomes_rest_shaped_records() {
        let csv = "Id,Name,Account.Name,IsPersonAccount,Phone\n003A,\"Doe, Jane\",Acme,false,03-1234-5678\n003B,Solo,,true,\n";
        let r = csv_records(csv, "Contact").unwrap();
        assert_eq!(r[0]["Name"], "Doe, Jane");
        assert_eq!(r[0]["Account"]["Name"], "Acme");
        assert_eq!(r[0]["IsPersonAccount"], false);
        assert_eq!(r[0]["attributes"]["type"], "Contact");
        assert!(r[1]["Account"].is_null() && r[1]["Phone"].is_null());
        assert_eq!(r[1]["IsPersonAccount"], true);
        // Found by the salesforce_json fuzz target: a column and a relationship of one name
        // panicked (a JSON string indexed as an object).
        let r = csv_records("Account,Account.Name\nx,Acme\n", "Contact").unwrap();
        assert_eq!(r[0]["Account"], "x");
    }

    #[test]
    fn network_failures_in_plain_words() {
        let table = [
            ("error sending request: client error (Connect): invalid peer certificate: UnknownIssuer", "TLS inspection CA may be missing"),
            ("invalid peer certificate: Expired", "has expired"),
            ("invalid peer certificate: NotValidForName", "another host name"),
            ("unsuccessful tunnel: 407 Proxy Authentication Required", "proxy refused: authentication"),
            ("client error (Connect): tcp connect error: Connection refused (os error 111)", "connection was refused"),
            ("dns error: failed to lookup address information", "cannot be resolved"),
            ("something else", "something else"),
        ];
        for (detail, want) in table {
            assert!(
                plain_words(detail).contains(want),
                "{detail}: {}",
                plain_words(detail)
            );
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("00Dxx!AQsecret");
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"00Dxx!AQ","instance_url":"https://x","id":"https://login/id/00DORG/005USER"}"#).unwrap();
        assert!(!format!("{t:?}").contains("00Dxx!AQ"));
        assert_eq!(t.org_and_user(), ("00DORG".into(), "005USER".into()));
    }
}
