//! The words the tray and the notifications show, in English and Japanese (the seed's users are
//! Japanese). One `match` per message keeps both languages side by side, so a missing
//! translation is a compile error, not a blank menu item.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    /// `auto` follows the OS locale `os` (`ja*` → Japanese, anything else → English).
    pub fn pick(setting: &str, os: Option<&str>) -> Lang {
        match setting.trim().to_ascii_lowercase().as_str() {
            "ja" | "japanese" | "日本語" => Lang::Ja,
            "en" | "english" => Lang::En,
            _ => Lang::from_locale(os),
        }
    }

    pub(crate) fn from_locale(locale: Option<&str>) -> Lang {
        match locale {
            Some(l) if l.to_ascii_lowercase().starts_with("ja") => Lang::Ja,
            _ => Lang::En,
        }
    }
}

/// Every text with a parameter is a variant carrying it.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg<'a> {
    Starting,
    SignInNeeded,
    NotSignedIn,
    Syncing(u8),
    Offline {
        queued: u64,
    },
    Paused {
        queued: u64,
    },
    /// A sync cycle failed for a reason someone must fix (see the Errors submenu).
    SyncFailing {
        synced: Ago,
    },
    Connected {
        user: &'a str,
        synced: Ago,
    },
    Records {
        contacts: u64,
        accounts: u64,
        leads: u64,
    },
    Pending {
        pending: u64,
        parked: u64,
    },
    Errors(u64),
    NoErrors,
    SyncNow,
    PauseSending,
    ResumeSending,
    SignInAgain,
    SignOut,
    OpenLogs,
    OpenSettings,
    Quit,
    UnknownCaller,
    /// The pop of a number the cache does not know, while Salesforce is asked.
    LookingUp,
    MoreMatches(usize),
    /// The winner is the agent's own earlier choice for this number.
    ChosenBefore,
    /// Marks the lookup rule's winner in the "Current call" menu.
    BestMatch,
    /// The tray's submenu of the last call's matches.
    CurrentCall(&'a str),
    /// A pop button choosing another match: "It's {name}".
    ItIs(&'a str),
    IncomingCall,
    OpenRecord,
    AlreadyRunning,
}

/// How long ago something happened, coarse enough for a menu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ago {
    Never,
    JustNow,
    Minutes(i64),
    Hours(i64),
    Days(i64),
}

impl Ago {
    pub fn between(then_ms: Option<i64>, now_ms: i64) -> Ago {
        let Some(then) = then_ms else {
            return Ago::Never;
        };
        let s = (now_ms - then).max(0) / 1000;
        match s {
            0..60 => Ago::JustNow,
            60..3600 => Ago::Minutes(s / 60),
            3600..86_400 => Ago::Hours(s / 3600),
            _ => Ago::Days(s / 86_400),
        }
    }
}

fn ago(lang: Lang, a: Ago) -> String {
    match (lang, a) {
        (Lang::En, Ago::Never) => "not synced yet".into(),
        (Lang::En, Ago::JustNow) => "synced just now".into(),
        (Lang::En, Ago::Minutes(n)) => format!("synced {n} min ago"),
        (Lang::En, Ago::Hours(n)) => format!("synced {n} h ago"),
        (Lang::En, Ago::Days(n)) => format!("synced {n} d ago"),
        (Lang::Ja, Ago::Never) => "未同期".into(),
        (Lang::Ja, Ago::JustNow) => "たった今同期".into(),
        (Lang::Ja, Ago::Minutes(n)) => format!("{n} 分前に同期"),
        (Lang::Ja, Ago::Hours(n)) => format!("{n} 時間前に同期"),
        (Lang::Ja, Ago::Days(n)) => format!("{n} 日前に同期"),
    }
}

/// Thousands separators, as both languages write them.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn text(lang: Lang, m: &Msg) -> String {
    use Lang::{En, Ja};
    match (lang, m) {
        (En, Msg::Starting) => "Starting…".into(),
        (Ja, Msg::Starting) => "起動中…".into(),
        (En, Msg::SignInNeeded) => "Sign-in needed".into(),
        (Ja, Msg::SignInNeeded) => "サインインが必要です".into(),
        (En, Msg::NotSignedIn) => "Not signed in".into(),
        (Ja, Msg::NotSignedIn) => "未サインイン".into(),
        (En, Msg::Syncing(p)) => format!("Syncing {p} %"),
        (Ja, Msg::Syncing(p)) => format!("同期中 {p} %"),
        (En, Msg::Offline { queued }) => format!(
            "Offline — {queued} call{} queued",
            if *queued == 1 { "" } else { "s" }
        ),
        (Ja, Msg::Offline { queued }) => format!("オフライン — 送信待ち {queued} 件"),
        (En, Msg::Paused { queued }) => format!("Sending paused — {queued} queued"),
        (Ja, Msg::Paused { queued }) => format!("送信を一時停止中 — 送信待ち {queued} 件"),
        (En, Msg::SyncFailing { synced }) => {
            format!("Sync failing — last {}", ago(En, *synced))
        }
        (Ja, Msg::SyncFailing { synced }) => {
            format!("同期に失敗しています — 最終: {}", ago(Ja, *synced))
        }
        (En, Msg::Connected { user, synced }) => {
            format!("Connected as {user} — {}", ago(En, *synced))
        }
        (Ja, Msg::Connected { user, synced }) => {
            format!("{user} で接続中 — {}", ago(Ja, *synced))
        }
        (
            En,
            Msg::Records {
                contacts,
                accounts,
                leads,
            },
        ) => format!(
            "Cached: {} contacts · {} accounts · {} leads",
            count(*contacts),
            count(*accounts),
            count(*leads)
        ),
        (
            Ja,
            Msg::Records {
                contacts,
                accounts,
                leads,
            },
        ) => format!(
            "キャッシュ: 取引先責任者 {} · 取引先 {} · リード {}",
            count(*contacts),
            count(*accounts),
            count(*leads)
        ),
        (En, Msg::Pending { pending, parked: 0 }) => format!("Pending Tasks: {pending}"),
        (En, Msg::Pending { pending, parked }) => {
            format!("Pending Tasks: {pending} ({parked} need attention)")
        }
        (Ja, Msg::Pending { pending, parked: 0 }) => format!("送信待ちの活動: {pending} 件"),
        (Ja, Msg::Pending { pending, parked }) => {
            format!("送信待ちの活動: {pending} 件 (要対応 {parked} 件)")
        }
        (En, Msg::Errors(n)) => format!("Errors ({n})"),
        (Ja, Msg::Errors(n)) => format!("エラー ({n})"),
        (En, Msg::NoErrors) => "No errors".into(),
        (Ja, Msg::NoErrors) => "エラーはありません".into(),
        (En, Msg::SyncNow) => "Sync now".into(),
        (Ja, Msg::SyncNow) => "今すぐ同期".into(),
        (En, Msg::PauseSending) => "Pause sending".into(),
        (Ja, Msg::PauseSending) => "送信を一時停止".into(),
        (En, Msg::ResumeSending) => "Resume sending".into(),
        (Ja, Msg::ResumeSending) => "送信を再開".into(),
        (En, Msg::SignInAgain) => "Sign in again".into(),
        (Ja, Msg::SignInAgain) => "再サインイン".into(),
        (En, Msg::SignOut) => "Sign out".into(),
        (Ja, Msg::SignOut) => "サインアウト".into(),
        (En, Msg::OpenLogs) => "Open log folder".into(),
        (Ja, Msg::OpenLogs) => "ログフォルダを開く".into(),
        (En, Msg::OpenSettings) => "Open settings file".into(),
        (Ja, Msg::OpenSettings) => "設定ファイルを開く".into(),
        (En, Msg::Quit) => "Quit".into(),
        (Ja, Msg::Quit) => "終了".into(),
        (En, Msg::UnknownCaller) => "Unknown caller".into(),
        (Ja, Msg::UnknownCaller) => "不明な発信者".into(),
        (En, Msg::LookingUp) => "Looking up…".into(),
        (Ja, Msg::LookingUp) => "検索中…".into(),
        (En, Msg::BestMatch) => "best match".into(),
        (Ja, Msg::BestMatch) => "最適な一致".into(),
        (En, Msg::ChosenBefore) => "your choice".into(),
        (Ja, Msg::ChosenBefore) => "選択済み".into(),
        (En, Msg::CurrentCall(n)) => format!("Current call: {n}"),
        (Ja, Msg::CurrentCall(n)) => format!("現在の通話: {n}"),
        (En, Msg::ItIs(n)) => format!("It's {n}"),
        (Ja, Msg::ItIs(n)) => format!("{n} に変更"),
        (En, Msg::MoreMatches(n)) => format!("{n} more"),
        (Ja, Msg::MoreMatches(n)) => format!("他 {n} 件"),
        (En, Msg::IncomingCall) => "Incoming call".into(),
        (Ja, Msg::IncomingCall) => "着信".into(),
        (En, Msg::OpenRecord) => "Open in Salesforce".into(),
        (Ja, Msg::OpenRecord) => "Salesforce で開く".into(),
        (En, Msg::AlreadyRunning) => "callsync is already running".into(),
        (Ja, Msg::AlreadyRunning) => "callsync は既に起動しています".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_and_override() {
        for (locale, want) in [
            (Some("ja-JP"), Lang::Ja),
            (Some("ja_JP.UTF-8"), Lang::Ja),
            (Some("en-US"), Lang::En),
            (Some("fr-FR"), Lang::En),
            (None, Lang::En),
        ] {
            assert_eq!(Lang::from_locale(locale), want, "{locale:?}");
        }
        assert_eq!(Lang::pick("ja", None), Lang::Ja);
        assert_eq!(Lang::pick("EN", Some("ja_JP")), Lang::En);
        assert_eq!(Lang::pick("auto", Some("ja_JP.UTF-8")), Lang::Ja);
    }

    #[test]
    fn ago_buckets() {
        let now = 10_000_000_000;
        for (then, want) in [
            (None, Ago::Never),
            (Some(now - 5_000), Ago::JustNow),
            (Some(now + 5_000), Ago::JustNow),
            (Some(now - 120_000), Ago::Minutes(2)),
            (Some(now - 3 * 3_600_000), Ago::Hours(3)),
            (Some(now - 2 * 86_400_000), Ago::Days(2)),
        ] {
            assert_eq!(Ago::between(then, now), want, "{then:?}");
        }
    }

    #[test]
    fn both_languages() {
        let m = Msg::Connected {
            user: "taro@acme",
            synced: Ago::Minutes(2),
        };
        assert_eq!(
            text(Lang::En, &m),
            "Connected as taro@acme — synced 2 min ago"
        );
        assert_eq!(text(Lang::Ja, &m), "taro@acme で接続中 — 2 分前に同期");
        assert_eq!(
            text(Lang::En, &Msg::Offline { queued: 1 }),
            "Offline — 1 call queued"
        );
        assert_eq!(
            text(Lang::En, &Msg::Offline { queued: 3 }),
            "Offline — 3 calls queued"
        );
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(count(0), "0");
    }
}
