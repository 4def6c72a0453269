//! Caller identification rules (the seed's "Records and fields that can be integrated" and
//! "Integration of contacts"), as pure functions over the cache's index hits.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::phone::PhoneKey;
use crate::record::{CachedRecord, ObjectKind, RecordId};

/// Which objects answer a lookup, in priority order, and which phone fields of each are matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupRules {
    pub order: Vec<ObjectKind>,
    pub contact_fields: Vec<String>,
    pub account_fields: Vec<String>,
    pub lead_fields: Vec<String>,
    /// How long an agent's choice among several matches stays the number's winner (days; 0:
    /// never remembered).
    pub remember_choice_days: u32,
}

impl Default for LookupRules {
    /// The seed's behaviour: Contact → Account/Person Account → Lead, `Phone` and `MobilePhone`
    /// (for a person account, its `PersonMobilePhone`).
    fn default() -> Self {
        LookupRules {
            order: vec![ObjectKind::Contact, ObjectKind::Account, ObjectKind::Lead],
            contact_fields: vec!["Phone".into(), "MobilePhone".into()],
            account_fields: vec!["Phone".into(), "PersonMobilePhone".into()],
            lead_fields: vec!["Phone".into(), "MobilePhone".into()],
            remember_choice_days: 90,
        }
    }
}

impl LookupRules {
    pub fn fields(&self, kind: ObjectKind) -> &[String] {
        match kind {
            ObjectKind::Contact => &self.contact_fields,
            ObjectKind::Account => &self.account_fields,
            ObjectKind::Lead => &self.lead_fields,
            ObjectKind::User => &[],
        }
    }

    fn rank_of(&self, kind: ObjectKind) -> Option<usize> {
        self.order.iter().position(|k| *k == kind)
    }
}

/// How a match is shown to the agent: the seed's two Contacts columns.
impl crate::record::ExtraFields for LookupRules {
    /// Configured fields beyond the standard ones (custom `__c` fields) are read too.
    fn extra_fields(&self, kind: ObjectKind) -> &[String] {
        self.fields(kind)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayName {
    /// Contact → `Account.Name`; Account and person account → `Name`; Lead → `Company`.
    pub company: Option<String>,
    /// Contact, person account, Lead → `Name`; business Account → none.
    pub person: Option<String>,
}

impl DisplayName {
    /// "Acme Inc. / Taro Yamada", or whichever half exists.
    pub fn one_line(&self) -> String {
        match (&self.company, &self.person) {
            (Some(c), Some(p)) if !c.is_empty() && !p.is_empty() => format!("{c} / {p}"),
            (Some(c), _) if !c.is_empty() => c.clone(),
            (_, Some(p)) if !p.is_empty() => p.clone(),
            _ => String::new(),
        }
    }
}

/// One record that matched the number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub kind: ObjectKind,
    pub id: RecordId,
    pub person_account: bool,
    /// The field the number was found in.
    pub field: String,
    pub display: DisplayName,
    /// For the Task: Contact → its Account; Account → itself.
    pub account_id: Option<RecordId>,
    /// For the Task: a person account's hidden Contact.
    pub person_contact_id: Option<RecordId>,
    pub last_modified: i64,
}

impl Match {
    /// "Contact", "Account", "Person Account" or "Lead", as the seed names them.
    pub fn kind_label(&self) -> &'static str {
        if self.person_account {
            "Person Account"
        } else {
            self.kind.api_name()
        }
    }
}

fn display_for(e: &IndexEntry) -> DisplayName {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    match e.kind {
        ObjectKind::Contact | ObjectKind::Lead => DisplayName {
            company: e.company.as_deref().and_then(some),
            person: some(&e.name),
        },
        ObjectKind::Account if e.person_account => DisplayName {
            company: some(&e.name),
            person: some(&e.name),
        },
        ObjectKind::Account | ObjectKind::User => DisplayName {
            company: some(&e.name),
            person: None,
        },
    }
}

/// Applies the rules to raw index hits: keeps configured objects and fields, collapses several
/// fields of one record into one match, orders by object priority, then most recently modified,
/// then Id (so that ties are stable).
pub fn rank(hits: Vec<IndexHit>, rules: &LookupRules) -> Vec<Match> {
    let mut seen = HashSet::new();
    let mut out: Vec<(usize, Match)> = Vec::with_capacity(hits.len());
    for hit in hits {
        let Some(rank) = rules.rank_of(hit.entry.kind) else {
            continue;
        };
        if !rules.fields(hit.entry.kind).contains(&hit.field) {
            continue;
        }
        if !seen.insert(hit.id.clone()) {
            continue;
        }
        let e = &hit.entry;
        out.push((
            rank,
            Match {
                kind: e.kind,
                display: display_for(e),
                person_account: e.person_account,
                account_id: e.account_id.clone(),
                person_contact_id: e.person_contact_id.clone(),
                last_modified: e.last_modified,
                field: hit.field,
                id: hit.id,
            },
        ));
    }
    out.sort_by(|(ra, a), (rb, b)| {
        ra.cmp(rb)
            .then_with(|| b.last_modified.cmp(&a.last_modified))
            .then_with(|| a.id.cmp(&b.id))
    });
    out.into_iter().map(|(_, m)| m).collect()
}

/// What a lookup needs of a record, stored denormalized in each index entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub kind: ObjectKind,
    pub person_account: bool,
    pub last_modified: i64,
    pub name: String,
    /// Contact: `Account.Name`; Lead: `Company`.
    pub company: Option<String>,
    pub account_id: Option<RecordId>,
    pub person_contact_id: Option<RecordId>,
}

impl IndexEntry {
    /// The entry a record contributes under each of its numbers.
    pub fn of_record(r: &CachedRecord) -> IndexEntry {
        let company = match r.kind {
            ObjectKind::Contact => r.account_name.clone(),
            ObjectKind::Lead => r.company.clone(),
            ObjectKind::Account | ObjectKind::User => None,
        };
        IndexEntry {
            kind: r.kind,
            person_account: r.is_person_account,
            last_modified: r.last_modified,
            name: r.name.clone(),
            company,
            account_id: r.account_id.clone(),
            person_contact_id: r.person_contact_id.clone(),
        }
    }
}

/// One index entry found under a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexHit {
    pub id: RecordId,
    pub field: String,
    pub entry: IndexEntry,
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResult {
    pub input: String,
    pub key: PhoneKey,
    pub extension: Option<String>,
    /// The record the call is attributed to.
    pub best: Option<Match>,
    /// Every other match, best first, for a picker.
    pub others: Vec<Match>,
    /// `best` is an agent's earlier choice for this number (made then, Unix ms), not the
    /// rule's winner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_at: Option<i64>,
}

impl LookupResult {
    /// Every match, the one the call goes to first.
    pub fn all(&self) -> impl Iterator<Item = &Match> {
        self.best.iter().chain(self.others.iter())
    }
}

/// An agent's choice of record for a number with several matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub id: RecordId,
    /// When it was made (Unix ms).
    pub at_ms: i64,
}

/// Why a remembered choice no longer applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    /// Older than `remember_choice_days`.
    Expired,
    /// The record no longer has the number (or left the cache, or is no longer matched).
    NotAMatch,
}

/// Applies a remembered choice to ranked matches: the chosen record goes first while it is
/// still a match and the choice is younger than the rules keep it; `Err` says why the choice
/// should be forgotten (the ranking is then the rule's). Returns the matches and when the
/// winner was chosen, if it was.
pub fn prefer(
    mut ranked: Vec<Match>,
    choice: Option<&Choice>,
    rules: &LookupRules,
    now_ms: i64,
) -> (Vec<Match>, Result<Option<i64>, Stale>) {
    let Some(c) = choice else {
        return (ranked, Ok(None));
    };
    let keep_ms = i64::from(rules.remember_choice_days) * 86_400_000;
    if now_ms.saturating_sub(c.at_ms) > keep_ms {
        return (ranked, Err(Stale::Expired));
    }
    match ranked.iter().position(|m| m.id == c.id) {
        Some(i) => {
            let m = ranked.remove(i);
            ranked.insert(0, m);
            (ranked, Ok(Some(c.at_ms)))
        }
        None => (ranked, Err(Stale::NotAMatch)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(kind: ObjectKind, id: &str, field: &str, modified: i64, person: bool) -> IndexHit {
        IndexHit {
            id: RecordId::parse(id).unwrap(),
            field: field.into(),
            entry: IndexEntry {
                kind,
                person_account: person,
                last_modified: modified,
                name: format!("name-{id}"),
                company: Some(format!("co-{id}")),
                account_id: None,
                person_contact_id: None,
            },
        }
    }

    const C1: &str = "003000000000001AAA";
    const C2: &str = "003000000000002AAA";
    const A1: &str = "001000000000001AAA";
    const P1: &str = "001000000000009AAA";
    const L1: &str = "00Q000000000001AAA";
    const L2: &str = "00Q000000000002AAA";

    fn ids(ms: &[Match]) -> Vec<&str> {
        ms.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn priority_and_recency_table() {
        use ObjectKind::*;
        let default = LookupRules::default();
        let leads_first = LookupRules {
            order: vec![Lead, Contact, Account],
            ..LookupRules::default()
        };
        let contacts_home = LookupRules {
            contact_fields: vec!["HomePhone".into()],
            ..LookupRules::default()
        };
        #[allow(clippy::type_complexity)]
        let table: Vec<(&str, &LookupRules, Vec<IndexHit>, Vec<&str>)> = vec![
            (
                "contact beats a newer account and lead",
                &default,
                vec![
                    hit(Lead, L1, "Phone", 300, false),
                    hit(Account, A1, "Phone", 200, false),
                    hit(Contact, C1, "Phone", 100, false),
                ],
                vec![C1, A1, L1],
            ),
            (
                "within one object the most recently modified wins",
                &default,
                vec![
                    hit(Contact, C1, "Phone", 100, false),
                    hit(Contact, C2, "MobilePhone", 200, false),
                ],
                vec![C2, C1],
            ),
            (
                "equal modification time falls back to Id",
                &default,
                vec![
                    hit(Lead, L2, "Phone", 100, false),
                    hit(Lead, L1, "Phone", 100, false),
                ],
                vec![L1, L2],
            ),
            (
                "account before lead, person account is an account",
                &default,
                vec![
                    hit(Lead, L1, "Phone", 900, false),
                    hit(Account, P1, "PersonMobilePhone", 100, true),
                ],
                vec![P1, L1],
            ),
            (
                "configured order",
                &leads_first,
                vec![
                    hit(Contact, C1, "Phone", 100, false),
                    hit(Lead, L1, "Phone", 100, false),
                ],
                vec![L1, C1],
            ),
            (
                "unconfigured fields do not match",
                &default,
                vec![
                    hit(Contact, C1, "HomePhone", 100, false),
                    hit(Account, A1, "Fax", 100, false),
                ],
                vec![],
            ),
            (
                "configured fields do",
                &contacts_home,
                vec![
                    hit(Contact, C1, "HomePhone", 100, false),
                    hit(Contact, C2, "Phone", 100, false),
                ],
                vec![C1],
            ),
            (
                "one record with the number in two fields is one match",
                &default,
                vec![
                    hit(Contact, C1, "Phone", 100, false),
                    hit(Contact, C1, "MobilePhone", 100, false),
                ],
                vec![C1],
            ),
            (
                "users never answer caller lookups",
                &default,
                vec![hit(User, "005000000000001AAA", "Phone", 100, false)],
                vec![],
            ),
        ];
        for (name, rules, hits, want) in table {
            assert_eq!(ids(&rank(hits, rules)), want, "{name}");
        }
    }

    #[test]
    fn a_remembered_choice_wins_while_it_is_a_match_and_young() {
        use ObjectKind::*;
        let rules = LookupRules::default();
        let day = 86_400_000;
        let now = 1_000 * day;
        let ranked = || {
            rank(
                vec![
                    hit(Contact, C1, "Phone", 100, false),
                    hit(Lead, L1, "Phone", 100, false),
                ],
                &rules,
            )
        };
        let choice = |id: &str, age_days: i64| Choice {
            id: RecordId::parse(id).unwrap(),
            at_ms: now - age_days * day,
        };
        type Case<'a> = (
            &'a str,
            Option<Choice>,
            Vec<&'a str>,
            Result<Option<i64>, Stale>,
        );
        let table: Vec<Case> = vec![
            ("no choice: the rule", None, vec![C1, L1], Ok(None)),
            (
                "the lead chosen yesterday",
                Some(choice(L1, 1)),
                vec![L1, C1],
                Ok(Some(now - day)),
            ),
            (
                "the rule's own winner chosen",
                Some(choice(C1, 1)),
                vec![C1, L1],
                Ok(Some(now - day)),
            ),
            (
                "90 days is still remembered",
                Some(choice(L1, 90)),
                vec![L1, C1],
                Ok(Some(now - 90 * day)),
            ),
            (
                "91 days is forgotten",
                Some(choice(L1, 91)),
                vec![C1, L1],
                Err(Stale::Expired),
            ),
            (
                "a record that no longer has the number",
                Some(choice(L2, 1)),
                vec![C1, L1],
                Err(Stale::NotAMatch),
            ),
        ];
        for (name, c, want, when) in table {
            let (got, w) = prefer(ranked(), c.as_ref(), &rules, now);
            assert_eq!(ids(&got), want, "{name}");
            assert_eq!(w, when, "{name}");
        }
        let never = LookupRules {
            remember_choice_days: 0,
            ..LookupRules::default()
        };
        let (got, w) = prefer(ranked(), Some(&choice(L1, 0)), &never, now + 1);
        assert_eq!((ids(&got), w), (vec![C1, L1], Err(Stale::Expired)));
    }

    #[test]
    fn display_names_follow_the_seed_table() {
        use ObjectKind::*;
        let mut contact = hit(Contact, C1, "Phone", 0, false);
        contact.entry.company = Some("Acme".into());
        contact.entry.name = "Taro".into();
        let mut account = hit(Account, A1, "Phone", 0, false);
        account.entry.name = "Acme".into();
        account.entry.company = None;
        let mut person = hit(Account, P1, "Phone", 0, true);
        person.entry.name = "Hanako".into();
        let mut lead = hit(Lead, L1, "Phone", 0, false);
        lead.entry.company = Some("Beta".into());
        lead.entry.name = "Jiro".into();
        let table = [
            (contact, Some("Acme"), Some("Taro"), "Contact"),
            (account, Some("Acme"), None, "Account"),
            (person, Some("Hanako"), Some("Hanako"), "Person Account"),
            (lead, Some("Beta"), Some("Jiro"), "Lead"),
        ];
        for (h, company, person, label) in table {
            let m = rank(vec![h], &LookupRules::default()).remove(0);
            assert_eq!(m.display.company.as_deref(), company);
            assert_eq!(m.display.person.as_deref(), person);
            assert_eq!(m.kind_label(), label);
        }
    }
}
