//! `callsync doctor`: checks that explain themselves. Each check says what it found and, when it
//! fails, what to do. This stage covers the network path (proxy, trust roots, the route to the
//! login host), the sign-in and the API; the integration-lifecycle stage adds the rest.

use serde::Serialize;

use crate::app::App;
use crate::salesforce::{http_client, plain_words, SfError};

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
pub fn trust_roots(app: &App) -> (bool, String) {
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

pub async fn run(app: &App) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(check("proxy", true, proxy_in_use(app), None));
    let (roots_ok, roots) = trust_roots(app);
    out.push(check("trust roots", roots_ok, roots, Some("Point tls.extra_ca_file at your company's CA certificate (PEM), or install it in the system trust store.")));

    // The route: the login host's version list is free and needs no sign-in.
    let cfg = app.client_config();
    let route = match http_client(&cfg) {
        Ok(http) => match http
            .get(format!("{}/services/data/", cfg.login_url))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => check(
                "route to Salesforce",
                true,
                format!("{} answers", cfg.login_url),
                None,
            ),
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
                let m = match crate::salesforce::network(e) {
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

    // Sign-in and API.
    match app.client() {
        Err(e) => out.push(check(
            "sign-in",
            false,
            e.to_string(),
            Some("Run `callsync connect`."),
        )),
        Ok(client) if route_ok => match client.get(&client.data_path("/limits")).await {
            Ok(v) => {
                let a = client.auth();
                out.push(check(
                    "sign-in",
                    true,
                    format!("{} in org {} at {}", a.username, a.org_id, a.instance_url),
                    None,
                ));
                let max = v["DailyApiRequests"]["Max"].as_u64().unwrap_or(0);
                let left = v["DailyApiRequests"]["Remaining"].as_u64().unwrap_or(0);
                let low = max > 0 && left * 10 < max;
                out.push(check("API budget", !low, format!("{left} of {max} daily API calls left"), Some("The org is close to its daily API limit; callsync slows down by itself. Check other integrations' usage.")));
            }
            Err(e) => {
                let fix = match &e {
                    SfError::SignInNeeded(_) => "Run `callsync connect` to sign in again.",
                    SfError::Api { code, .. } if code == "API_DISABLED_FOR_ORG" => "The org or the user has no API access: give the user the \"API Enabled\" permission (an edition with API access is needed).",
                    _ => "See the message.",
                };
                out.push(check("sign-in", false, e.to_string(), Some(fix)));
            }
        },
        Ok(_) => out.push(check(
            "sign-in",
            false,
            "not checked: Salesforce cannot be reached",
            Some("Fix the route first."),
        )),
    }
    out
}
