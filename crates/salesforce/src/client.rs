//! The Salesforce REST client: sessions, refresh on `401 INVALID_SESSION_ID` (once, then retry
//! once), rotated refresh tokens persisted before they are used, typed errors that say whether
//! a retry can help, and API-usage tracking from `Sforce-Limit-Info`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use serde_json::Value;
use tokio::sync::Mutex;

use callsync_core::wire::{
    api_error, csv_records, parse_limit_info, plain_words, BulkPage, QueryPage, Secret, SfError,
    TokenResponse, WriteRules,
};

use crate::auth::{AuthStore, StoredAuth};

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
    let net = &cfg.net;
    if let Some(e) = &net.extra_ca_error {
        return Err(SfError::Store(e.clone()));
    }
    let extra = match &net.extra_ca_pem {
        Some(pem) => {
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
            certs
        }
        None => Vec::new(),
    };
    if extra.is_empty() {
        return builder(cfg)?.build().map_err(|e| network(e, net));
    }
    // The OS verifier with the extra CA added to its roots: on Windows a chain engine with
    // extra roots, which Windows 7 and Wine refuse (E_INVALIDARG). Then: the OS trust store
    // read once, plus the extra CA, verified by rustls.
    match builder(cfg)?.tls_certs_merge(extra.clone()).build() {
        Ok(c) => Ok(c),
        Err(e) => {
            tracing::warn!(error = %e, "the OS verifier cannot take tls.extra_ca_file; using the OS trust store's certificates with it");
            let mut roots = extra;
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!(error = %e, "a certificate of the OS trust store cannot be read");
            }
            roots.extend(
                native
                    .certs
                    .iter()
                    .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok()),
            );
            builder(cfg)?
                .tls_certs_only(roots)
                .build()
                .map_err(|e| network(e, net))
        }
    }
}

/// Everything but the trust roots.
fn builder(cfg: &ClientConfig) -> Result<reqwest::ClientBuilder, SfError> {
    let net = &cfg.net;
    let mut b = reqwest::Client::builder();
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
    Ok(b.timeout(cfg.timeout)
        .connect_timeout(Duration::from_secs(10))
        .gzip(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("callsync/", env!("CARGO_PKG_VERSION"))))
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
    pub(crate) async fn send_raw(
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
    pub(crate) async fn known_write_rules(&self, object: &str) -> Option<WriteRules> {
        self.write_rules.lock().await.get(object).cloned()
    }

    pub(crate) async fn write_rules(&self, object: &str) -> WriteRules {
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

    pub(crate) async fn next_page(&self, next_url: &str) -> Result<QueryPage, SfError> {
        QueryPage::from_value(self.get(next_url).await?)
    }

    /// Starts a Bulk API 2.0 query job; returns its id.
    pub(crate) async fn bulk_query_start(&self, soql: &str) -> Result<String, SfError> {
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
    pub(crate) async fn bulk_wait(&self, job: &str) -> Result<(), SfError> {
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
