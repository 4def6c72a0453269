//! What the running agent is doing, as one value: the core publishes it on a `watch` channel,
//! the tray renders it, and `callsync status` receives it over the control socket. `view` turns
//! it into the tray's texts and icon with no I/O, so the rules are tested as a table.

use serde::{Deserialize, Serialize};

use crate::errors::ErrorEntry;
use crate::i18n::{self, Ago, Lang, Msg};

/// Errors the menu lists (the rest are in `callsync errors`).
pub const MENU_ERRORS: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub pid: u32,
    pub started_ms: i64,
    /// Signed-in user name; `None` when not signed in.
    pub user: Option<String>,
    pub org_id: Option<String>,
    pub instance_url: Option<String>,
    /// The sign-in was refused or expired: nothing syncs or sends until it is renewed.
    pub sign_in_needed: bool,
    /// Salesforce unreachable at the last attempt (the reason, shortened).
    pub offline: Option<String>,
    /// A sync is running: its progress in percent.
    pub syncing: Option<u8>,
    pub last_sync_ms: Option<i64>,
    pub contacts: u64,
    pub accounts: u64,
    pub leads: u64,
    /// Task writes waiting for Salesforce.
    pub pending: u64,
    /// Task writes parked on a permanent error.
    pub parked: u64,
    /// Why sending is paused (tray, sign-out), if it is.
    pub paused: Option<String>,
    /// Entries in the integration error log, and the newest few (newest first).
    pub errors_total: u64,
    pub errors: Vec<ErrorEntry>,
    /// Errors logged since this agent started (these turn the icon to "attention").
    pub new_errors: u64,
    /// The last sync cycle failed for a reason that needs someone (not being offline or signed
    /// out, which have their own states): what failed and the fix. A good cycle clears it.
    #[serde(default)]
    pub sync_failing: Option<Problem>,
    /// The last call that popped with several matches: the tray's "Current call" menu.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_call: Option<CurrentCall>,
}

/// A call whose number has several matches, for the agent to choose the record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentCall {
    pub call_id: String,
    /// The number as shown.
    pub number: String,
    /// Best first: the rule's winner (or the number's remembered choice).
    pub matches: Vec<CallMatch>,
    /// The record the Task goes on when the agent chose one for this call.
    pub chosen: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallMatch {
    pub record_id: String,
    pub label: String,
}

impl CurrentCall {
    /// Where the Task goes: the agent's choice, else the first match.
    pub fn target(&self) -> Option<&str> {
        self.chosen
            .as_deref()
            .or(self.matches.first().map(|m| m.record_id.as_str()))
    }
}

/// The tray's "Current call" submenu: the matches, the rule's choice marked, the Task's ticked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallView {
    pub title: String,
    pub call_id: String,
    /// (record Id, label, ticked).
    pub items: Vec<(String, String, bool)>,
}

/// Something that fails until someone fixes it: what, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

/// The icon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Working,
    Attention,
    Error,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Working => "working",
            Health::Attention => "attention",
            Health::Error => "error",
        }
    }
}

/// Everything the tray shows, as text.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub health: Health,
    pub tooltip_title: String,
    pub status: String,
    pub records: String,
    pub pending: String,
    pub errors_label: String,
    /// One line per listed error.
    pub errors: Vec<String>,
    pub pause_label: String,
    pub sign_label: String,
    pub signed_in: bool,
    pub paused: bool,
    pub call: Option<CallView>,
}

fn call_view(c: &CurrentCall, lang: Lang) -> CallView {
    let target = c.target();
    CallView {
        title: i18n::text(lang, &Msg::CurrentCall(&c.number)),
        call_id: c.call_id.clone(),
        items: c
            .matches
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let label = if i == 0 {
                    format!("{} — {}", m.label, i18n::text(lang, &Msg::BestMatch))
                } else {
                    m.label.clone()
                };
                (
                    m.record_id.clone(),
                    label,
                    Some(m.record_id.as_str()) == target,
                )
            })
            .collect(),
    }
}

pub fn health(s: &AgentState) -> Health {
    if s.sign_in_needed || s.user.is_none() {
        Health::Error
    } else if s.offline.is_some()
        || s.paused.is_some()
        || s.parked > 0
        || s.new_errors > 0
        || s.sync_failing.is_some()
    {
        Health::Attention
    } else if s.syncing.is_some() {
        Health::Working
    } else {
        Health::Ok
    }
}

/// The first line of the menu and of the tooltip.
pub fn status_line(s: &AgentState, lang: Lang, now_ms: i64) -> String {
    let queued = s.pending + s.parked;
    let m = if s.sign_in_needed {
        Msg::SignInNeeded
    } else if let Some(p) = s.syncing {
        Msg::Syncing(p)
    } else if s.offline.is_some() {
        Msg::Offline { queued }
    } else if s.paused.is_some() {
        Msg::Paused { queued }
    } else if s.sync_failing.is_some() {
        Msg::SyncFailing {
            synced: Ago::between(s.last_sync_ms, now_ms),
        }
    } else if let Some(user) = &s.user {
        Msg::Connected {
            user,
            synced: Ago::between(s.last_sync_ms, now_ms),
        }
    } else if s.started_ms == 0 {
        Msg::Starting
    } else {
        Msg::NotSignedIn
    };
    i18n::text(lang, &m)
}

/// An error as one menu line: when, where, what (shortened: menus are narrow).
pub(crate) fn error_line(e: &ErrorEntry) -> String {
    // Stored in UTC; shown in the agent's local time.
    let when = chrono::DateTime::parse_from_str(&e.at, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| e.at.get(5..16).unwrap_or(&e.at).replace('T', " "));
    let mut reason: String = e.reason.chars().take(70).collect();
    if e.reason.chars().count() > 70 {
        reason.push('…');
    }
    format!("{when} {}: {reason}", e.area)
}

/// What to do about an error, for its explanation (Salesforce entries carry their own fix).
pub(crate) fn fix_for(e: &ErrorEntry) -> &'static str {
    match e.area.as_str() {
        "calllog" => "callsync skipped this line and carries on. If it happens often, check the softphone's call-log settings or the source's kind in [calllog]; `callsync calls import FILE` lists every problem in a file.",
        "network" => "Nothing is lost: Tasks stay queued and sending resumes by itself. `callsync doctor` checks the proxy, the trust roots and the route and says what to change.",
        "salesforce" => "`callsync queue` shows the parked Task and why; after the fix, `callsync queue retry` sends it again.",
        "sync" => "Lookups answer from the cache meanwhile; callsync retries with backoff and the entry clears itself once a sync succeeds. `callsync doctor` checks access and fields.",
        "sign-in" => "Choose \"Sign in again\" in the menu (or run `callsync connect`).",
        _ => "`callsync errors` lists every entry with its details.",
    }
}

/// An error's notification when it is clicked in the menu: (title, body with the place and the
/// fix; Salesforce entries already carry theirs).
pub fn explanation(e: &ErrorEntry) -> (String, String) {
    let place = match (&e.file, e.line) {
        (Some(f), Some(l)) => format!("\n{f}:{l}"),
        (Some(f), None) => format!("\n{f}"),
        _ => String::new(),
    };
    let fix = if e.reason.contains("Fix:") {
        ""
    } else {
        fix_for(e)
    };
    (
        format!("{} — {}", e.area, e.source),
        format!("{}{place}\n\n{fix}", e.reason),
    )
}

pub fn view(s: &AgentState, lang: Lang, now_ms: i64) -> View {
    let h = health(s);
    View {
        health: h,
        tooltip_title: match h {
            Health::Ok | Health::Working => "callsync".into(),
            Health::Attention | Health::Error => "callsync !".into(),
        },
        status: status_line(s, lang, now_ms),
        records: i18n::text(
            lang,
            &Msg::Records {
                contacts: s.contacts,
                accounts: s.accounts,
                leads: s.leads,
            },
        ),
        pending: i18n::text(
            lang,
            &Msg::Pending {
                pending: s.pending,
                parked: s.parked,
            },
        ),
        errors_label: i18n::text(lang, &Msg::Errors(s.errors_total)),
        errors: s.errors.iter().take(MENU_ERRORS).map(error_line).collect(),
        pause_label: i18n::text(
            lang,
            if s.paused.is_some() {
                &Msg::ResumeSending
            } else {
                &Msg::PauseSending
            },
        ),
        sign_label: i18n::text(
            lang,
            if s.user.is_some() && !s.sign_in_needed {
                &Msg::SignOut
            } else {
                &Msg::SignInAgain
            },
        ),
        signed_in: s.user.is_some() && !s.sign_in_needed,
        paused: s.paused.is_some(),
        call: s
            .current_call
            .as_ref()
            .filter(|c| c.matches.len() > 1)
            .map(|c| call_view(c, lang)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn connected() -> AgentState {
        AgentState {
            pid: 1,
            started_ms: NOW - 600_000,
            user: Some("taro@acme".into()),
            last_sync_ms: Some(NOW - 120_000),
            ..Default::default()
        }
    }

    #[test]
    fn status_and_health_table() {
        let cases: Vec<(&str, AgentState, Health, &str)> = vec![
            (
                "connected",
                connected(),
                Health::Ok,
                "Connected as taro@acme — synced 2 min ago",
            ),
            (
                "syncing",
                AgentState {
                    syncing: Some(45),
                    ..connected()
                },
                Health::Working,
                "Syncing 45 %",
            ),
            (
                "offline",
                AgentState {
                    offline: Some("timed out".into()),
                    pending: 3,
                    ..connected()
                },
                Health::Attention,
                "Offline — 3 calls queued",
            ),
            (
                "paused",
                AgentState {
                    paused: Some("tray".into()),
                    pending: 2,
                    parked: 1,
                    ..connected()
                },
                Health::Attention,
                "Sending paused — 3 queued",
            ),
            (
                "sign-in needed beats syncing",
                AgentState {
                    sign_in_needed: true,
                    syncing: Some(10),
                    ..connected()
                },
                Health::Error,
                "Sign-in needed",
            ),
            (
                "never signed in",
                AgentState {
                    started_ms: NOW,
                    ..Default::default()
                },
                Health::Error,
                "Not signed in",
            ),
            (
                "sync failing",
                AgentState {
                    sync_failing: Some(Problem {
                        what: "Salesforce refused the sync query".into(),
                        fix: "x".into(),
                    }),
                    ..connected()
                },
                Health::Attention,
                "Sync failing — last synced 2 min ago",
            ),
            (
                "new error",
                AgentState {
                    new_errors: 1,
                    errors_total: 4,
                    ..connected()
                },
                Health::Attention,
                "Connected as taro@acme — synced 2 min ago",
            ),
        ];
        for (name, s, h, line) in cases {
            assert_eq!(health(&s), h, "{name}");
            assert_eq!(status_line(&s, Lang::En, NOW), line, "{name}");
        }
    }

    #[test]
    fn every_area_has_a_fix() {
        let e = |area: &str| ErrorEntry::now(area, "x", "y");
        for (area, needle) in [
            ("calllog", "calls import"),
            ("network", "doctor"),
            ("salesforce", "queue retry"),
            ("sync", "doctor"),
            ("sign-in", "Sign in again"),
            ("other", "callsync errors"),
        ] {
            assert!(fix_for(&e(area)).contains(needle), "{area}");
        }
    }

    #[test]
    fn view_texts() {
        let s = AgentState {
            contacts: 1_200,
            accounts: 300,
            leads: 45,
            pending: 2,
            errors_total: 12,
            errors: vec![ErrorEntry {
                at: "2026-11-21T09:15:02.000+0000".into(),
                area: "salesforce".into(),
                source: "Task".into(),
                file: None,
                line: None,
                reason: "x".repeat(100),
            }],
            ..connected()
        };
        let v = view(&s, Lang::En, NOW);
        assert_eq!(
            v.records,
            "Cached: 1,200 contacts · 300 accounts · 45 leads"
        );
        assert_eq!(v.pending, "Pending Tasks: 2");
        assert_eq!(v.errors_label, "Errors (12)");
        assert_eq!(v.errors.len(), 1);
        let local = chrono::DateTime::parse_from_rfc3339("2026-11-21T09:15:02Z")
            .unwrap()
            .with_timezone(&chrono::Local)
            .format("%m-%d %H:%M")
            .to_string();
        assert!(
            v.errors[0].starts_with(&format!("{local} salesforce: xxx")),
            "{}",
            v.errors[0]
        );
        assert!(v.errors[0].ends_with('…'));
        assert_eq!(v.pause_label, "Pause sending");
        assert_eq!(v.sign_label, "Sign out");
        assert_eq!(v.call, None);
        let mut s = s;
        s.current_call = Some(CurrentCall {
            call_id: "c1".into(),
            number: "03-1234-5678".into(),
            matches: vec![
                CallMatch {
                    record_id: "003A".into(),
                    label: "Acme / Taro (Contact)".into(),
                },
                CallMatch {
                    record_id: "00QB".into(),
                    label: "Lee (Lead)".into(),
                },
            ],
            chosen: None,
        });
        let c = view(&s, Lang::En, NOW).call.unwrap();
        assert_eq!(c.title, "Current call: 03-1234-5678");
        assert_eq!(
            c.items,
            vec![
                (
                    "003A".into(),
                    "Acme / Taro (Contact) — best match".into(),
                    true
                ),
                ("00QB".into(), "Lee (Lead)".into(), false)
            ]
        );
        s.current_call.as_mut().unwrap().chosen = Some("00QB".into());
        let c = view(&s, Lang::En, NOW).call.unwrap();
        assert_eq!((c.items[0].2, c.items[1].2), (false, true));
        // One match: nothing to choose.
        s.current_call.as_mut().unwrap().matches.truncate(1);
        assert_eq!(view(&s, Lang::En, NOW).call, None);
        let ja = view(&s, Lang::Ja, NOW);
        assert_eq!(ja.errors_label, "エラー (12)");
        assert_eq!(ja.status, "taro@acme で接続中 — 2 分前に同期");
    }
}
