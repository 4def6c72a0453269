//! `callsync doctor`: checks that explain themselves. Each check says what it found and, when it
//! fails, what to do: the network path (proxy, trust roots, route, clock), the sign-in and the
//! connected app (OAuth errors mapped to the seed's steps 3–6), API access and budget, object
//! permissions, the configured fields and assignees, person accounts, the call-log sources, disk
//! space, and the health of the cache and the Task queue.

use serde::Serialize;

use crate::app::App;
use callsync_core::wire::{plain_words, SfError};
use callsync_salesforce::client::http_client;

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn check(name: &str, ok: bool, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
        fix: if ok { None } else { fix.map(str::to_owned) },
    }
}

/// Which proxy requests take, in words.
/// The proxy in use, and whether it answers at all (a TCP connection to its address): a proxy
/// that is down is named as such, not blamed on Salesforce.
async fn proxy_check(app: &App) -> Check {
    let shown = proxy_in_use(app);
    let Some((url, from)) = app.client_config().net.proxy_in_use() else {
        return check("proxy", true, shown, None);
    };
    let addr = url::Url::parse(&url).ok().and_then(|u| {
        Some(format!(
            "{}:{}",
            u.host_str()?.trim_start_matches('[').trim_end_matches(']'),
            u.port_or_known_default()?
        ))
    });
    let Some(addr) = addr else {
        return check(
            "proxy",
            false,
            format!("{url} (from {from}) is not a proxy address"),
            Some("Set proxy.url to http://HOST:PORT."),
        );
    };
    let reached = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(&addr),
    )
    .await;
    match reached {
        Ok(Ok(_)) => check("proxy", true, format!("{shown}; it answers"), None),
        Ok(Err(e)) => check(
            "proxy",
            false,
            format!("{shown}; it does not answer at {addr}: {e}"),
            Some(&format!(
                "Start the proxy, or correct {from}. Nothing is lost meanwhile: Tasks stay queued."
            )),
        ),
        Err(_) => check(
            "proxy",
            false,
            format!("{shown}; no answer from {addr} within 5 s"),
            Some(&format!(
                "Check that the proxy is running and reachable, or correct {from}."
            )),
        ),
    }
}

pub fn proxy_in_use(app: &App) -> String {
    let p = &app.config.proxy;
    if !p.url.is_empty() {
        let auth = if p.user.is_empty() {
            String::new()
        } else {
            format!(" as {} (password in the credential store)", p.user)
        };
        return format!("{} from the configuration{auth}", p.url);
    }
    for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                // Never print credentials embedded in the URL.
                let shown = match url::Url::parse(&v) {
                    Ok(mut u) => {
                        let _ = u.set_password(None);
                        u.to_string()
                    }
                    Err(_) => "(unparsable)".into(),
                };
                return format!("{shown} from {var}");
            }
        }
    }
    if cfg!(any(windows, target_os = "macos")) {
        "the system proxy settings (none configured here)".into()
    } else {
        "none (direct connection)".into()
    }
}

/// Which trust roots verify Salesforce's certificate, in words.
pub(crate) fn trust_roots(app: &App) -> (bool, String) {
    let f = &app.config.tls.extra_ca_file;
    if f.is_empty() {
        return (true, "the operating system's trust store".into());
    }
    match std::fs::read(f) {
        Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(c) if !c.is_empty() => (
                true,
                format!(
                    "the operating system's trust store plus {} certificate(s) from {f}",
                    c.len()
                ),
            ),
            _ => (false, format!("{f} holds no PEM certificate")),
        },
        Err(e) => (false, format!("cannot read {f}: {e}")),
    }
}

/// Free space below this fails the check (the cache of a large org needs a few hundred MB).
const MIN_FREE_BYTES: u64 = 200 * 1024 * 1024;
/// A clock further off than this breaks JWT sign-in and shifts sync windows.
const MAX_SKEW_SECS: i64 = 60;

pub async fn run(app: &App) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(proxy_check(app).await);
    let (roots_ok, roots) = trust_roots(app);
    out.push(check("trust roots", roots_ok, roots, Some("Point tls.extra_ca_file at your company's CA certificate (PEM), or install it in the system trust store.")));

    // The route: the login host's version list is free and needs no sign-in.
    let cfg = app.client_config();
    let mut server_date = None;
    let route = match http_client(&cfg) {
        Ok(http) => match http
            .get(format!("{}/services/data/", cfg.login_url))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                server_date = r
                    .headers()
                    .get(reqwest::header::DATE)
                    .and_then(|d| d.to_str().ok())
                    .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
                check(
                    "route to Salesforce",
                    true,
                    format!("{} answers", cfg.login_url),
                    None,
                )
            }
            Ok(r) if r.status().as_u16() == 407 => check(
                "route to Salesforce",
                false,
                plain_words("407 Proxy Authentication Required"),
                Some("Set proxy.user and run `callsync proxy password`."),
            ),
            Ok(r) => check(
                "route to Salesforce",
                false,
                format!("{} answered {}", cfg.login_url, r.status()),
                Some("Check salesforce.login_url."),
            ),
            Err(e) => {
                let m = match callsync_salesforce::client::network(e, &cfg.net) {
                    SfError::Network(m) => m,
                    other => other.to_string(),
                };
                check(
                    "route to Salesforce",
                    false,
                    m,
                    Some("Check the network, the proxy settings and the trust roots above."),
                )
            }
        },
        Err(e) => check(
            "route to Salesforce",
            false,
            e.to_string(),
            Some("Fix the setting named above."),
        ),
    };
    let route_ok = route.ok;
    out.push(route);
    if let Some(d) = server_date {
        let skew = (chrono::Utc::now() - d.with_timezone(&chrono::Utc)).num_seconds();
        out.push(check(
            "clock",
            skew.abs() <= MAX_SKEW_SECS,
            if skew == 0 {
                "in step with Salesforce".to_owned()
            } else {
                format!(
                    "{}s {} Salesforce",
                    skew.abs(),
                    if skew > 0 { "ahead of" } else { "behind" }
                )
            },
            Some("Turn on automatic time synchronisation (NTP) on this PC: sign-in assertions and sync windows depend on the clock."),
        ));
    }

    if route_ok {
        org_checks(app, &mut out).await;
    } else {
        out.push(check(
            "sign-in",
            false,
            "not checked: Salesforce cannot be reached",
            Some("Fix the route first."),
        ));
    }
    local_checks(app, &mut out);
    out
}

/// Sign-in, connected app, API, permissions, fields, assignees, person accounts.
async fn org_checks(app: &App, out: &mut Vec<Check>) {
    let client = match app.client() {
        Ok(c) => c,
        Err(e) => {
            out.push(check(
                "sign-in",
                false,
                e.to_string(),
                Some("Run `callsync connect`."),
            ));
            return;
        }
    };
    // A fresh access token proves the refresh token (or the JWT key) and the connected app.
    if let Err(e) = client.refresh().await {
        let fix = match &e {
            SfError::SignInNeeded {
                code: Some(code),
                message,
            } => match callsync_salesforce::auth::explain(code, message) {
                callsync_salesforce::auth::SignInError::Refused { fix, .. } => fix,
                other => other.to_string(),
            },
            _ => "Run `callsync connect` to sign in again.".into(),
        };
        out.push(Check {
            name: "sign-in".into(),
            ok: false,
            detail: e.to_string(),
            fix: Some(fix),
        });
        return;
    }
    let a = client.auth();
    out.push(check(
        "sign-in",
        true,
        format!(
            "{} in org {} at {} (connected app allowed)",
            a.username, a.org_id, a.instance_url
        ),
        None,
    ));
    match client.get(&client.data_path("/limits")).await {
        Ok(v) => {
            out.push(check("API access", true, "the REST API answers", None));
            let max = v["DailyApiRequests"]["Max"].as_u64().unwrap_or(0);
            let left = v["DailyApiRequests"]["Remaining"].as_u64().unwrap_or(0);
            let low = max > 0 && left * 10 < max;
            out.push(check("API budget", !low, format!("{left} of {max} daily API calls left"), Some("The org is close to its daily API limit; callsync slows down by itself. Check other integrations' usage.")));
        }
        Err(e) => {
            let fix = match &e {
                SfError::Api { code, .. } if code == "API_DISABLED_FOR_ORG" => "The org or the user has no API access: give the user the \"API Enabled\" permission (profile or permission set); the org's edition must include API access.",
                e if e.is_retryable() => "Salesforce is failing for now; try again later.",
                _ => "See the message.",
            };
            out.push(check("API access", false, e.to_string(), Some(fix)));
            return;
        }
    }
    // Read access to what callsync reads.
    let cfg = &app.config;
    let mut read: Vec<&str> = Vec::new();
    if cfg.sync.contact_retrieval {
        read.extend(["Contact", "Account", "Lead"]);
    }
    read.push("User");
    let mut missing = Vec::new();
    let mut account = None;
    for object in &read {
        match crate::checks::describe(&client, object).await {
            Ok(Some(info)) if info.queryable => {
                if *object == "Account" {
                    account = Some(info);
                }
            }
            Ok(_) => missing.push(*object),
            Err(e) => {
                out.push(check(
                    "read access",
                    false,
                    e.to_string(),
                    Some("See the message."),
                ));
                return;
            }
        }
    }
    out.push(check(
        "read access",
        missing.is_empty(),
        if missing.is_empty() {
            format!("the user can read {}", read.join(", "))
        } else {
            format!("the user cannot read {}", missing.join(", "))
        },
        Some(&format!("Give the user Read on {} (profile or permission set → Object Settings); User needs \"View All Users\" or sharing for forwarding owners and assignees.", missing.join(", "))),
    ));
    if let Some(acc) = account {
        let person = acc.fields.contains_key("IsPersonAccount");
        out.push(check(
            "person accounts",
            true,
            if person {
                "enabled: person accounts are matched by Phone and PersonMobilePhone"
            } else {
                "not enabled in this org: Accounts are business accounts"
            },
            None,
        ));
    }
    // The enabled groups against the org: objects, custom fields, status, assignees.
    match crate::checks::check_against_org(&client, cfg).await {
        Ok(findings) if findings.is_empty() => {
            let mut what = Vec::new();
            if cfg.activity.enabled {
                what.push("Tasks can be created with the configured fields");
            }
            if cfg.meeting.enabled {
                what.push("Events can be created with the configured fields");
            }
            if cfg.assignee.enabled {
                what.push("the assignees are active users");
            }
            if what.is_empty() {
                what.push("every integration group is disabled");
            }
            out.push(check("integration settings", true, what.join("; "), None));
        }
        Ok(findings) => {
            for f in findings {
                out.push(Check {
                    name: f.item,
                    ok: false,
                    detail: f.problem,
                    fix: Some(f.fix),
                });
            }
        }
        Err(e) => out.push(check(
            "integration settings",
            false,
            e.to_string(),
            Some("See the message."),
        )),
    }
}

/// What is on this PC: call-log sources, disk space, the cache and the queue.
fn local_checks(app: &App, out: &mut Vec<Check>) {
    let sources = &app.config.calllog.sources;
    if sources.is_empty() {
        out.push(check("call-log sources", false, "none configured: no call becomes a Task", Some("Add your softphone's call log to calllog.sources (e.g. `[[calllog.sources]] kind = \"linphone\"`; see `callsync config example`).")));
    }
    for s in sources {
        let name = format!("call log {}", s.display_name());
        match s.resolved_path() {
            None => out.push(check(&name, false, "no path", Some("Set its path."))),
            Some(p) => match std::fs::File::open(&p) {
                Ok(_) => out.push(check(&name, true, format!("{} is readable", p.display()), None)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.push(check(
                    &name,
                    p.parent().is_some_and(|d| d.is_dir()),
                    format!("{} does not exist yet", p.display()),
                    Some("Check the path: neither the file nor its folder exists (the softphone creates the file at its first call)."),
                )),
                Err(e) => out.push(check(
                    &name,
                    false,
                    format!("{}: {e}", p.display()),
                    Some("Let this user read the file (permissions), or fix the path."),
                )),
            },
        }
    }
    let root = app.data.root();
    let probe = if root.exists() {
        root
    } else {
        root.parent().unwrap_or(root)
    };
    match fs4::available_space(probe) {
        Ok(free) => out.push(check(
            "disk space",
            free >= MIN_FREE_BYTES,
            format!("{} MB free for {}", free / 1_048_576, root.display()),
            Some("Free some disk space: the cache and the Task queue need room to grow."),
        )),
        Err(e) => out.push(check(
            "disk space",
            false,
            format!("cannot tell for {}: {e}", root.display()),
            Some("Check that the data folder is on a mounted disk."),
        )),
    }
    match app.open_cache() {
        Ok((cache, report)) => {
            // The cache alone: the queue has its own check below.
            let objects = app.object_status(&cache).unwrap_or_default();
            let records: u64 = objects.iter().map(|r| r.records).sum();
            let synced = objects.iter().filter_map(|r| r.last_sync.clone()).max();
            let (ok, detail) = match (&report.rebuilt, report.cleared, &synced) {
                (Some((why, aside)), _, _) => (false, format!("was damaged ({why}) and rebuilt empty; old files in {}", aside.display())),
                (None, true, _) => (true, "was from another version and was cleared; the next sync refills it".to_owned()),
                (None, false, None) if app.config.sync.contact_retrieval => {
                    (false, format!("{records} records, never synced"))
                }
                (None, false, s) => (true, format!("{records} records, last sync {}", s.clone().unwrap_or_else(|| "never (contact retrieval is off)".into()))),
            };
            out.push(check("cache", ok, detail, Some("Run `callsync sync` (or let the agent run) to fill the cache.")));
        }
        Err(callsync_store::cache::CacheError::Locked(_)) => {
            out.push(check("cache", true, "in use by the running agent", None))
        }
        Err(e) => out.push(check("cache", false, e.to_string(), Some("Run `callsync cache clear` and `callsync sync --full`, or move the cache folder aside."))),
    }
    match callsync_store::outbox::Outbox::open(&app.data.outbox()) {
        Ok(outbox) => {
            let (waiting, parked) = outbox.counts().unwrap_or_default();
            let paused = outbox.paused().ok().flatten();
            let detail = format!(
                "{waiting} waiting, {parked} parked{}",
                paused.as_ref().map(|p| format!("; sending paused: {p}")).unwrap_or_default()
            );
            let fix = if parked > 0 {
                "See `callsync queue` for each parked Task's reason and fix, then `callsync queue retry --all`."
            } else {
                "Run `callsync connect` to resume sending."
            };
            out.push(check("Task queue", parked == 0 && paused.is_none(), detail, Some(fix)));
        }
        Err(callsync_store::outbox::OutboxError::Locked(_)) => {
            out.push(check("Task queue", true, "in use by the running agent (`callsync status` shows it)", None))
        }
        Err(e) => out.push(check("Task queue", false, e.to_string(), Some("The queue holds calls not yet in Salesforce: do not delete it; contact support with `callsync doctor --json`."))),
    }
}
