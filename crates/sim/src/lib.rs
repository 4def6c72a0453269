//! The simulated Salesforce org: an HTTP server on loopback that speaks the REST and OAuth
//! shapes callsync uses, with generated data, an admin API (`/__sim/…`) to change records and
//! inject faults, and an API-call counter. Tests, benchmarks and `callsync demo` run against it;
//! `callsync sim` runs it on its own so anyone can curl it.

pub mod org;
pub mod schema;
pub mod soql;
pub mod synth;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub use org::{Fault, FaultKind, Org, SimOptions, WriteKind};
pub use schema::FieldType;

type Shared = Arc<Mutex<Org>>;

/// A running simulated org.
pub struct Sim {
    pub addr: SocketAddr,
    org: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sim {
    /// Starts the org on 127.0.0.1:`port` (0: any free port).
    pub async fn start(opts: SimOptions, port: u16) -> std::io::Result<Sim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let org = Arc::new(Mutex::new(Org::new(opts, &format!("http://{addr}"))));
        install_quiet_drop_hook();
        let app = router(org.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Sim {
            addr,
            org,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Starts the org on HTTPS with the given certificate chain and key (PEM), for the host name
    /// `localhost`.
    pub async fn start_tls(
        opts: SimOptions,
        port: u16,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> std::io::Result<Sim> {
        use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| std::io::Error::other(format!("certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| std::io::Error::other(format!("key: {e}")))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let org = Arc::new(Mutex::new(Org::new(
            opts,
            &format!("https://localhost:{}", addr.port()),
        )));
        install_quiet_drop_hook();
        let app = router(org.clone());
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = &mut rx => break,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust us fails the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                });
            }
        });
        Ok(Sim {
            addr,
            org,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The org's base URL (`http://127.0.0.1:…`, or `https://localhost:…` with TLS).
    pub fn url(&self) -> String {
        self.org().base_url.clone()
    }

    /// The org's state, for tests and the demo.
    pub fn org(&self) -> MutexGuard<'_, Org> {
        lock(&self.org)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Plays the user's browser against the simulated org: opens the authorize URL and follows its
/// redirect to the agent's loopback listener (demo and tests; the org signs in its login user).
pub async fn play_browser(authorize_url: String) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let r = http
        .get(&authorize_url)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let location = r
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("the authorize step did not redirect")?
        .to_owned();
    http.get(&location)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn lock(org: &Shared) -> MutexGuard<'_, Org> {
    org.lock().unwrap_or_else(|p| p.into_inner())
}

/// The payload a commit-then-drop handler panics with, to make hyper close the connection
/// without a response; the hook keeps such panics out of the output.
const DROP_MARKER: &str = "callsync-sim: commit then drop";

fn install_quiet_drop_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|s| *s == DROP_MARKER);
            if !quiet {
                previous(info);
            }
        }));
    });
}

fn router(org: Shared) -> Router {
    Router::new()
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route("/services/data/{version}/{*rest}", any(rest))
        .route("/services/oauth2/authorize", get(authorize))
        .route("/services/oauth2/token", post(token))
        .route("/services/oauth2/revoke", post(revoke))
        .route("/id/{org}/{user}", get(identity))
        .route("/__sim/state", get(admin_state))
        .route("/__sim/token", post(admin_token))
        .route("/__sim/records/{object}", post(admin_upsert))
        .route(
            "/__sim/records/{object}/{id}",
            axum::routing::patch(admin_patch).delete(admin_delete),
        )
        .route(
            "/__sim/records/{object}/{id}/undelete",
            post(admin_undelete),
        )
        .route("/__sim/rows/{object}", get(admin_rows))
        .route(
            "/__sim/faults",
            post(admin_faults).delete(admin_clear_faults),
        )
        .route("/__sim/expire-sessions", post(admin_expire))
        .route("/__sim/revoke-refresh-tokens", post(admin_revoke_refresh))
        .route("/__sim/clock", post(admin_clock))
        .route("/__sim/config", post(admin_config))
        .route(
            "/__sim/fields/{object}/{name}",
            post(admin_add_field).delete(admin_remove_field),
        )
        .with_state(org)
}

fn json_response(status: u16, body: Option<Value>, limit_info: Option<String>) -> Response {
    let mut r = match body {
        Some(b) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            Json(b),
        )
            .into_response(),
        None => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::NO_CONTENT)
            .into_response(),
    };
    if let Some(info) = limit_info.and_then(|i| i.parse().ok()) {
        r.headers_mut().insert("Sforce-Limit-Info", info);
    }
    r
}

async fn versions(State(org): State<Shared>) -> Response {
    let (v, now) = {
        let o = lock(&org);
        (o.opts.api_version.clone(), o.now())
    };
    let mut r =
        Json(json!([{"label": "Winter '25", "url": format!("/services/data/v{v}"), "version": v}]))
            .into_response();
    // The org's clock (moved by `/__sim/clock`), so that clock-skew checks can be tested.
    if let Ok(d) = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string().parse() {
        r.headers_mut().insert(header::DATE, d);
    }
    r
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

async fn rest(
    State(org): State<Shared>,
    Path((version, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/{rest}");
    let full_path = uri.path().to_owned();
    let action = lock(&org).fault_for(method.as_str(), &full_path);
    let mut drop_after = None;
    match action {
        org::FaultAction::Respond(s, b) => return json_response(s, Some(b), None),
        org::FaultAction::Html(s, html) => {
            return (
                StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                [(header::CONTENT_TYPE, "text/html")],
                html,
            )
                .into_response()
        }
        org::FaultAction::Delay(ms) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await
        }
        org::FaultAction::DropAfter(ms) => drop_after = Some(ms),
        org::FaultAction::None => {}
    }
    let (r, info) = match carry_out(&org, version, path, &method, &uri, &headers, &body) {
        Ok(done) => done,
        Err((status, body, info)) => return json_response(status, body, info),
    };
    if let Some(ms) = drop_after {
        // The write is done; the client never hears about it.
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        std::panic::panic_any(DROP_MARKER);
    }
    if let Some((text, headers)) = r.raw {
        let mut out = (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
            text,
        )
            .into_response();
        for (k, v) in headers
            .into_iter()
            .chain([("Sforce-Limit-Info".to_owned(), info)])
        {
            if let (Ok(k), Ok(v)) = (
                header::HeaderName::try_from(k),
                header::HeaderValue::try_from(v),
            ) {
                out.headers_mut().insert(k, v);
            }
        }
        return out;
    }
    json_response(r.status, r.body, Some(info))
}

/// A request refused before the org saw it: status, error body, limit header.
type Refusal = (u16, Option<Value>, Option<String>);

/// The request carried out under the org's lock (never held across an await): the org's
/// answer and its limit header, or a refusal.
fn carry_out(
    org: &Shared,
    version: String,
    path: String,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(org::Response, String), Refusal> {
    let mut o = lock(org);
    let Some(version) = version.strip_prefix('v').map(str::to_owned) else {
        return Err((
            404,
            Some(org::err(
                "NOT_FOUND",
                "The requested resource does not exist",
                &[],
            )),
            None,
        ));
    };
    if let Err(r) = o.check_version(&version) {
        return Err((r.status, r.body, None));
    }
    let Some(user_id) = bearer(headers).and_then(|t| o.user_for_access_token(&t)) else {
        return Err((
            401,
            Some(org::err(
                "INVALID_SESSION_ID",
                "Session expired or invalid",
                &[],
            )),
            None,
        ));
    };
    if let Err(e) = o.count_api_call() {
        return Err((403, Some(e), Some(o.limit_info())));
    }
    let body = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => Some(v),
            Err(e) => {
                return Err((
                    400,
                    Some(org::err("JSON_PARSER_ERROR", &e.to_string(), &[])),
                    Some(o.limit_info()),
                ))
            }
        }
    };
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let req = org::Request {
        method: method.as_str().to_owned(),
        path,
        query,
        body,
        user_id,
        version,
    };
    let r = o.dispatch(&req);
    let info = o.limit_info();
    Ok((r, info))
}

async fn authorize(
    State(org): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let redirect = params.get("redirect_uri").cloned().unwrap_or_default();
    let result = lock(&org).authorize(&params);
    let pairs = match result {
        Ok(p) => p,
        Err((e, d)) => {
            let mut p = vec![("error".to_owned(), e), ("error_description".to_owned(), d)];
            if let Some(s) = params.get("state") {
                p.push(("state".into(), s.clone()));
            }
            p
        }
    };
    if redirect.is_empty() {
        return (StatusCode::BAD_REQUEST, "redirect_uri missing").into_response();
    }
    let qs = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if redirect.contains('?') { '&' } else { '?' };
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("{redirect}{sep}{qs}"))],
    )
        .into_response()
}

async fn token(State(org): State<Shared>, uri: Uri, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut o = lock(&org);
    if let org::FaultAction::Respond(s, b) = o.fault_for("POST", uri.path()) {
        return json_response(s, Some(b), None);
    }
    let (status, v) = o.token_endpoint(&form);
    json_response(status, Some(v), None)
}

async fn revoke(State(org): State<Shared>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let ok = form.get("token").is_some_and(|t| lock(&org).revoke(t));
    if ok {
        StatusCode::OK.into_response()
    } else {
        json_response(
            400,
            Some(json!({"error": "invalid_token", "error_description": "invalid token"})),
            None,
        )
    }
}

async fn identity(
    State(org): State<Shared>,
    Path((_, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let o = lock(&org);
    let authorized = bearer(&headers).and_then(|t| o.user_for_access_token(&t));
    match (authorized, o.identity(&user)) {
        (Some(u), Some(id)) if u == user => Json(id).into_response(),
        (None, _) => (StatusCode::FORBIDDEN, "Bad_OAuth_Token").into_response(),
        _ => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
}

async fn admin_state(State(org): State<Shared>) -> Response {
    Json(lock(&org).summary()).into_response()
}

async fn admin_token(State(org): State<Shared>) -> Response {
    Json(lock(&org).direct_token()).into_response()
}

async fn admin_rows(State(org): State<Shared>, Path(object): Path<String>) -> Response {
    Json(lock(&org).rows(&object)).into_response()
}

async fn admin_upsert(
    State(org): State<Shared>,
    Path(object): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let Value::Object(fields) = body else {
        return (StatusCode::BAD_REQUEST, "expected a JSON object").into_response();
    };
    let id = lock(&org).admin_upsert(&object, fields);
    Json(json!({"id": id})).into_response()
}

async fn admin_patch(
    State(org): State<Shared>,
    Path((object, id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let Value::Object(mut fields) = body else {
        return (StatusCode::BAD_REQUEST, "expected a JSON object").into_response();
    };
    let mut o = lock(&org);
    if o.get_row(&object, &id).is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    fields.insert("Id".into(), json!(id));
    o.admin_upsert(&object, fields);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_delete(
    State(org): State<Shared>,
    Path((object, id)): Path<(String, String)>,
) -> Response {
    if lock(&org).admin_delete(&object, &id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn admin_undelete(
    State(org): State<Shared>,
    Path((object, id)): Path<(String, String)>,
) -> Response {
    if lock(&org).admin_undelete(&object, &id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn admin_faults(State(org): State<Shared>, Json(faults): Json<Vec<Fault>>) -> Response {
    lock(&org).faults = faults;
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_clear_faults(State(org): State<Shared>) -> Response {
    lock(&org).faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_expire(State(org): State<Shared>) -> Response {
    lock(&org).expire_sessions();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_revoke_refresh(State(org): State<Shared>) -> Response {
    lock(&org).revoke_refresh_tokens();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_clock(State(org): State<Shared>, Json(body): Json<Value>) -> Response {
    let secs = body["advance_secs"].as_i64().unwrap_or(0);
    let mut o = lock(&org);
    o.advance_clock(chrono::Duration::seconds(secs));
    Json(json!({"now": callsync_core::record::format_sf_datetime(o.now())})).into_response()
}

async fn admin_config(State(org): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut o = lock(&org);
    if let Some(n) = body["page_size"].as_u64() {
        o.set_page_size(n as usize);
    }
    if let Some(b) = body["rotate_refresh_tokens"].as_bool() {
        o.set_rotation(b);
    }
    if let Some(n) = body["api_daily_max"].as_u64() {
        o.opts.api_daily_max = n;
    }
    if let Some(n) = body["api_calls"].as_u64() {
        o.api_calls = n;
    }
    if let Some(d) = body.get("denied") {
        o.denied = serde_json::from_value(d.clone()).unwrap_or_default();
    }
    if let Some(d) = body.get("readonly_fields") {
        o.readonly_fields = serde_json::from_value(d.clone()).unwrap_or_default();
    }
    match &body["authorize_error"] {
        Value::Null => {}
        Value::Array(a) if a.len() == 2 => {
            o.authorize_error = Some((
                a[0].as_str().unwrap_or_default().to_owned(),
                a[1].as_str().unwrap_or_default().to_owned(),
            ))
        }
        _ => o.authorize_error = None,
    }
    Json(o.summary()).into_response()
}

async fn admin_add_field(
    State(org): State<Shared>,
    Path((object, name)): Path<(String, String)>,
    Json(ty): Json<FieldType>,
) -> Response {
    lock(&org).add_custom_field(&object, &name, ty);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_remove_field(
    State(org): State<Shared>,
    Path((object, name)): Path<(String, String)>,
) -> Response {
    lock(&org).remove_custom_field(&object, &name);
    StatusCode::NO_CONTENT.into_response()
}
