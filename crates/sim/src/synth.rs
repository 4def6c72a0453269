//! Deterministic synthetic Salesforce data (by seed): Contacts, Accounts, person accounts, Leads
//! and Users, with phone numbers typed the way people type them (JP and US formats, full-width
//! digits, extensions, shared switchboard numbers). Used by the benchmarks, the tests, the demo
//! and the simulated org.

use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};

use callsync_core::record::format_sf_datetime;

/// How many records of each kind to make.
#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub seed: u64,
    pub total: usize,
    /// Share of records that reuse an existing number (switchboards, family phones).
    pub shared_ratio: f64,
}

impl SynthSpec {
    pub fn new(seed: u64, total: usize) -> Self {
        SynthSpec {
            seed,
            total,
            shared_ratio: 0.08,
        }
    }
}

const SURNAMES: &[&str] = &[
    "Sato",
    "Suzuki",
    "Takahashi",
    "Tanaka",
    "Watanabe",
    "Ito",
    "Yamamoto",
    "Nakamura",
    "Kobayashi",
    "Kato",
    "Smith",
    "Johnson",
    "Brown",
    "Garcia",
    "Miller",
    "山田",
    "佐藤",
    "鈴木",
];
const GIVEN: &[&str] = &[
    "Taro", "Hanako", "Ken", "Yuki", "Aoi", "Ren", "Emma", "Liam", "Olivia", "Noah", "太郎",
    "花子", "健", "結衣",
];
const COMPANIES: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "株式会社アクメ",
    "山田商事",
    "東京物産",
];

/// A number, as digits of its E.164 form, plus how a person typed it.
fn typed(rng: &mut fastrand::Rng, digits: &str) -> String {
    if let Some(national) = digits.strip_prefix("81") {
        // JP: national form with a trunk 0, grouped area-local-subscriber.
        let nat = format!("0{national}");
        let (a, b, c) = if nat.starts_with("03") || nat.starts_with("06") {
            (&nat[..2], &nat[2..6], &nat[6..])
        } else {
            (&nat[..3], &nat[3..7], &nat[7..])
        };
        match rng.u8(0..100) {
            0..=34 => format!("{a}-{b}-{c}"),
            35..=49 => nat.clone(),
            50..=59 => format!("({a}){b}-{c}"),
            60..=69 => format!("+81 {}-{b}-{c}", &a[1..]),
            70..=77 => fullwidth(&format!("{a}-{b}-{c}")),
            78..=83 => format!("{a} {b} {c}"),
            84..=89 => format!("+81 (0){} {b} {c}", &a[1..]),
            90..=94 => format!("{a}-{b}-{c} 内線{}", rng.u16(10..999)),
            _ => format!("{a}{b}-{c}"),
        }
    } else if let Some(n) = digits.strip_prefix('1') {
        let (a, b, c) = (&n[..3], &n[3..6], &n[6..]);
        match rng.u8(0..100) {
            // A JP org types foreign numbers with their country code.
            0..=39 => format!("+1 ({a}) {b}-{c}"),
            40..=69 => format!("+1 {a}-{b}-{c}"),
            70..=84 => format!("+1 {a}.{b}.{c}"),
            _ => format!("+1 ({a}) {b}-{c} ext. {}", rng.u16(10..999)),
        }
    } else {
        format!("+{digits}")
    }
}

fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            '-' => '－',
            _ => c,
        })
        .collect()
}

/// A fresh number as E.164 digits: mostly JP landlines and mobiles, some US.
pub fn fresh_number(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..100) {
        0..=44 => format!("813{}{:07}", rng.u8(1..10), rng.u32(0..10_000_000)),
        45..=54 => format!("816{}{:07}", rng.u8(1..10), rng.u32(0..10_000_000)),
        55..=89 => format!(
            "81{}0{}{:07}",
            [9, 8, 7][rng.usize(0..3)],
            rng.u8(1..10),
            rng.u32(0..10_000_000)
        ),
        _ => format!(
            "1{}{}{:04}",
            ["212", "415", "646", "617", "312"][rng.usize(0..5)],
            rng.u16(201..999),
            rng.u16(0..10_000)
        ),
    }
}

/// Ids as Salesforce shapes them: 3-character key prefix, 15 more characters.
pub fn record_id(prefix: &str, n: u64) -> String {
    format!("{prefix}{:012}{}", n, "AAA")
}

/// One generated record: the Salesforce JSON, and the E.164 digits of each number it carries.
pub struct SynthRecord {
    pub json: Value,
    pub numbers: Vec<String>,
}

/// Generates `spec.total` records (55 % Contacts, 15 % business Accounts, 5 % person accounts,
/// 23 % Leads of which some converted, 2 % Users), about 1.5 numbers each.
pub fn generate(spec: &SynthSpec) -> impl Iterator<Item = SynthRecord> {
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let shared_ratio = spec.shared_ratio;
    let base = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let mut recent: Vec<String> = Vec::with_capacity(1024);
    (0..spec.total as u64).map(move |i| {
        let mut number = |rng: &mut fastrand::Rng| {
            if !recent.is_empty() && rng.f64() < shared_ratio {
                recent[rng.usize(0..recent.len())].clone()
            } else {
                let n = fresh_number(rng);
                if recent.len() < 1024 {
                    recent.push(n.clone());
                } else {
                    let slot = rng.usize(0..1024);
                    recent[slot] = n.clone();
                }
                n
            }
        };
        let modified = base + Duration::seconds(rng.i64(0..60 * 60 * 24 * 700));
        let stamp = format_sf_datetime(modified);
        let name = format!(
            "{} {}",
            GIVEN[rng.usize(0..GIVEN.len())],
            SURNAMES[rng.usize(0..SURNAMES.len())]
        );
        let company = format!("{} {}", COMPANIES[rng.usize(0..COMPANIES.len())], i % 997);
        let mut numbers = vec![number(&mut rng)];
        if rng.u8(0..100) < 50 {
            numbers.push(number(&mut rng));
        }
        let typed_n: Vec<String> = numbers.iter().map(|d| typed(&mut rng, d)).collect();
        let second = typed_n.get(1).cloned();
        let roll = rng.u8(0..100);
        let json = match roll {
            0..=54 => {
                let acc = record_id("001", i / 3);
                json!({
                    "attributes": {"type": "Contact", "url": format!("/services/data/v62.0/sobjects/Contact/{}", record_id("003", i))},
                    "Id": record_id("003", i), "Name": name, "AccountId": acc,
                    "Account": {"attributes": {"type": "Account"}, "Name": company},
                    "Phone": typed_n[0], "MobilePhone": second, "IsPersonAccount": false,
                    "LastModifiedDate": stamp, "SystemModstamp": stamp,
                })
            }
            55..=69 => json!({
                "attributes": {"type": "Account"},
                "Id": record_id("001", 10_000_000 + i), "Name": company,
                "Phone": typed_n[0], "IsPersonAccount": false,
                "LastModifiedDate": stamp, "SystemModstamp": stamp,
            }),
            70..=74 => json!({
                "attributes": {"type": "Account"},
                "Id": record_id("001", 20_000_000 + i), "Name": name,
                "Phone": typed_n[0], "PersonMobilePhone": second, "IsPersonAccount": true,
                "PersonContactId": record_id("003", 20_000_000 + i),
                "LastModifiedDate": stamp, "SystemModstamp": stamp,
            }),
            75..=97 => json!({
                "attributes": {"type": "Lead"},
                "Id": record_id("00Q", i), "Name": name, "Company": company,
                "Phone": typed_n[0], "MobilePhone": second, "IsConverted": rng.u8(0..100) < 5,
                "LastModifiedDate": stamp, "SystemModstamp": stamp,
            }),
            _ => json!({
                "attributes": {"type": "User"},
                "Id": record_id("005", i), "Name": name,
                "Username": format!("user{i}@example.com"), "IsActive": true,
                "Phone": typed_n[0], "MobilePhone": second, "Extension": format!("{}", 1000 + i % 9000),
                "LastModifiedDate": stamp, "SystemModstamp": stamp,
            }),
        };
        SynthRecord { json, numbers }
    })
}

/// A person-typed form of an E.164 number (`+` and digits), for lookups in tests and benches.
pub fn typed_form(rng: &mut fastrand::Rng, e164: &str) -> String {
    typed(rng, e164.trim_start_matches('+'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use callsync_core::phone::Normalizer;

    #[test]
    fn deterministic_and_normalizable() {
        let a: Vec<Value> = generate(&SynthSpec::new(7, 300)).map(|r| r.json).collect();
        let b: Vec<Value> = generate(&SynthSpec::new(7, 300)).map(|r| r.json).collect();
        assert_eq!(a, b);
        let n = Normalizer::from_codes("JP", &[]).unwrap();
        let mut bad = Vec::new();
        for r in generate(&SynthSpec::new(7, 2000)) {
            let typed = r.json["Phone"].as_str().unwrap().to_owned();
            let key = n.key(&typed).unwrap().to_string();
            if key != format!("+{}", r.numbers[0]) {
                bad.push(format!("{typed} -> {key}, want +{}", r.numbers[0]));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
