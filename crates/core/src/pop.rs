//! Screen pop: who is calling, the moment the phone rings (or is answered). The rules — which
//! event pops, what it says, which record it opens — are pure; showing it is the agent's.

use serde::{Deserialize, Serialize};

use crate::event::{CallEvent, Direction, EventKind};
use crate::i18n::{self, Lang, Msg};
use crate::lookup::LookupResult;

/// When to pop (`[ui] screen_pop`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PopMode {
    Off,
    #[default]
    Ringing,
    Answer,
}

/// Older events are a backlog being read after a restart, not a phone ringing now.
pub const FRESH_MS: i64 = 60_000;

/// Does this event pop? Only inbound calls, only at the configured moment, only while fresh.
pub fn wanted(mode: PopMode, e: &CallEvent, direction: Direction, now_ms: i64) -> bool {
    let moment = matches!(
        (mode, &e.kind),
        (PopMode::Ringing, EventKind::Ringing) | (PopMode::Answer, EventKind::Answered)
    );
    moment && direction == Direction::Inbound && now_ms - e.at.timestamp_millis() <= FRESH_MS
}

/// What the notification says and opens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pop {
    pub call_id: String,
    pub summary: String,
    pub body: String,
    /// The best match's record page in Lightning.
    pub url: Option<String>,
    /// The other matches the agent may choose instead (the pop's buttons, where the
    /// notification server has them).
    #[serde(default)]
    pub choices: Vec<PopChoice>,
    /// An answer for a pop already shown for this call (a "Looking up…"): it replaces it.
    #[serde(default)]
    pub replaces: bool,
}

/// A button choosing another match for the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopChoice {
    pub record_id: String,
    pub label: String,
}

/// Buttons a notification can hold beside "Open" (servers show three or four at most).
pub const MAX_CHOICES: usize = 3;

/// The pop shown at once for a number the cache does not know while Salesforce is asked.
pub fn looking_up(call_id: &str, r: &LookupResult, lang: Lang, region: &str) -> Pop {
    Pop {
        call_id: call_id.to_owned(),
        summary: i18n::text(lang, &Msg::LookingUp),
        body: r.key.display_for(region),
        url: None,
        choices: Vec::new(),
        replaces: false,
    }
}

/// A match in one line for menus and buttons: the name (or company) and its kind.
pub fn match_label(m: &crate::lookup::Match) -> String {
    let name = m.display.one_line();
    if name.is_empty() {
        m.kind_label().to_owned()
    } else {
        format!("{name} ({})", m.kind_label())
    }
}

/// `{instance_url}/lightning/r/{Object}/{Id}/view`.
pub(crate) fn record_url(instance_url: &str, object: &str, id: &str) -> String {
    format!(
        "{}/lightning/r/{object}/{id}/view",
        instance_url.trim_end_matches('/')
    )
}

/// The seed's display rules: the person's name as the headline and the company under it; a
/// business Account has only the company. Several matches: the best plus "N more".
pub fn content(
    call_id: &str,
    r: &LookupResult,
    lang: Lang,
    region: &str,
    instance_url: Option<&str>,
) -> Pop {
    let number = r.key.display_for(region);
    match &r.best {
        None => Pop {
            call_id: call_id.to_owned(),
            summary: i18n::text(lang, &Msg::UnknownCaller),
            body: number,
            url: None,
            choices: Vec::new(),
            replaces: false,
        },
        Some(m) => {
            let (summary, company) = match (&m.display.person, &m.display.company) {
                (Some(p), c) if !p.is_empty() => (p.clone(), c.clone()),
                (_, Some(c)) => (c.clone(), None),
                _ => (number.clone(), None),
            };
            let mut lines = Vec::new();
            if let Some(c) = company.filter(|c| !c.is_empty()) {
                lines.push(c);
            }
            let mut second = format!("{} · {number}", m.kind_label());
            if r.chosen_at.is_some() {
                second.push_str(&format!(" · {}", i18n::text(lang, &Msg::ChosenBefore)));
            }
            if !r.others.is_empty() {
                second.push_str(&format!(
                    " · {}",
                    i18n::text(lang, &Msg::MoreMatches(r.others.len()))
                ));
            }
            lines.push(second);
            Pop {
                call_id: call_id.to_owned(),
                summary,
                body: lines.join("\n"),
                url: instance_url.map(|base| record_url(base, m.kind.api_name(), m.id.as_str())),
                choices: r
                    .others
                    .iter()
                    .take(MAX_CHOICES)
                    .map(|o| PopChoice {
                        record_id: o.id.as_str().to_owned(),
                        label: i18n::text(lang, &Msg::ItIs(&match_label(o))),
                    })
                    .collect(),
                replaces: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CallInfo;
    use crate::lookup::{DisplayName, Match};
    use crate::phone::{Normalizer, PhoneKey};
    use crate::record::{ObjectKind, RecordId};

    const NOW: i64 = 1_800_000_000_000;

    fn event(kind: EventKind, age_ms: i64) -> CallEvent {
        CallEvent {
            source: "s".into(),
            call_id: "c1".into(),
            at: chrono::DateTime::from_timestamp_millis(NOW - age_ms)
                .unwrap()
                .fixed_offset(),
            kind,
            info: Some(CallInfo {
                direction: Direction::Inbound,
                remote: "0312345678".into(),
                local: None,
                agent: None,
                origin: Default::default(),
                record_id: None,
            }),
        }
    }

    #[test]
    fn which_events_pop() {
        use Direction::*;
        use EventKind::*;
        let cases = [
            (PopMode::Ringing, Ringing, Inbound, 100, true),
            (PopMode::Ringing, Ringing, Outbound, 100, false),
            (PopMode::Ringing, Ringing, Internal, 100, false),
            (PopMode::Ringing, Answered, Inbound, 100, false),
            (PopMode::Ringing, Ringing, Inbound, FRESH_MS + 1, false),
            (PopMode::Answer, Answered, Inbound, 100, true),
            (PopMode::Answer, Ringing, Inbound, 100, false),
            (PopMode::Off, Ringing, Inbound, 100, false),
            (PopMode::Off, Answered, Inbound, 100, false),
        ];
        for (mode, kind, dir, age, want) in cases {
            let e = event(kind.clone(), age);
            assert_eq!(
                wanted(mode, &e, dir, NOW),
                want,
                "{mode:?} {kind:?} {dir:?} {age}"
            );
        }
    }

    fn m(kind: ObjectKind, id: &str, person: Option<&str>, company: Option<&str>) -> Match {
        Match {
            kind,
            id: RecordId::parse(id).unwrap(),
            person_account: false,
            field: "Phone".into(),
            display: DisplayName {
                company: company.map(str::to_owned),
                person: person.map(str::to_owned),
            },
            account_id: None,
            person_contact_id: None,
            last_modified: 0,
        }
    }

    fn result(best: Option<Match>, others: Vec<Match>) -> LookupResult {
        let n = Normalizer::from_codes("JP", &[])
            .unwrap()
            .normalize("03-1234-5678")
            .unwrap();
        LookupResult {
            input: "03-1234-5678".into(),
            key: n.key,
            extension: None,
            best,
            others,
            chosen_at: None,
        }
    }

    #[test]
    fn contents() {
        let contact = m(
            ObjectKind::Contact,
            "003000000000001AAA",
            Some("山田 太郎"),
            Some("Acme株式会社"),
        );
        let account = m(
            ObjectKind::Account,
            "001000000000001AAA",
            None,
            Some("Globex"),
        );
        let lead = m(
            ObjectKind::Lead,
            "00Q000000000001AAA",
            Some("Lee"),
            Some("Initech"),
        );

        let p = content(
            "c1",
            &result(Some(contact.clone()), vec![]),
            Lang::Ja,
            "JP",
            Some("https://acme.my.salesforce.com/"),
        );
        assert_eq!(p.summary, "山田 太郎");
        assert_eq!(p.body, "Acme株式会社\nContact · 03-1234-5678");
        assert_eq!(
            p.url.as_deref(),
            Some("https://acme.my.salesforce.com/lightning/r/Contact/003000000000001AAA/view")
        );

        let p = content("c1", &result(Some(account), vec![]), Lang::En, "JP", None);
        assert_eq!(p.summary, "Globex");
        assert_eq!(p.body, "Account · 03-1234-5678");
        assert_eq!(p.url, None);

        let p = content(
            "c1",
            &result(Some(contact), vec![lead.clone(), lead]),
            Lang::En,
            "JP",
            Some("https://x"),
        );
        assert!(p.body.ends_with("· 2 more"), "{}", p.body);
        // The other matches are the pop's choices, labelled for a button.
        assert_eq!(p.choices.len(), 2);
        assert_eq!(p.choices[0].record_id, "00Q000000000001AAA");
        assert_eq!(p.choices[0].label, "It's Initech / Lee (Lead)");
        // A remembered choice says so.
        let mut r = result(
            Some(m(ObjectKind::Lead, "00Q000000000001AAA", Some("Lee"), None)),
            vec![],
        );
        r.chosen_at = Some(1);
        let p = content("c1", &r, Lang::En, "JP", None);
        assert_eq!(p.body, "Lead · 03-1234-5678 · your choice");
        assert!(p.choices.is_empty());
        let p = looking_up("c1", &r, Lang::Ja, "JP");
        assert_eq!(
            (p.summary.as_str(), p.body.as_str()),
            ("検索中…", "03-1234-5678")
        );

        let p = content(
            "c1",
            &result(None, vec![]),
            Lang::En,
            "JP",
            Some("https://x"),
        );
        assert_eq!(p.summary, "Unknown caller");
        assert_eq!(p.body, "03-1234-5678");
        assert_eq!(p.url, None);
        // A number from abroad stays international.
        let p = content("c1", &result(None, vec![]), Lang::En, "US", None);
        assert_eq!(p.body, "+81 3-1234-5678");
        assert!(matches!(result(None, vec![]).key, PhoneKey::E164(_)));
    }
}
