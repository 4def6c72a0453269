//! Phone-number normalization: whatever a human typed into Salesforce (or a softphone shows)
//! becomes one lookup key, so `03(1234)5678`, `+81 3-1234-5678` and `０３－１２３４－５６７８`
//! all meet in the cache.
//!
//! Numbers go through libphonenumber's metadata (`rlibphonenumber`, a port of Google's C++
//! library: 1.0 µs per number here against 9.6 µs for the `phonenumber` crate, whose global
//! regex-cache lock also makes it slower, not faster, on two threads) after a clean-up done
//! here: full-width forms and the dash family are folded, invisible
//! characters dropped, `tel:`/`sip:` URIs and extensions split off, `+81 (0)3` repaired.
//! A string that is no possible number anywhere (an internal extension, a short code) still
//! gets a digits-only key so that exact matches keep working.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region, PHONE_NUMBER_UTIL};
use serde::{Deserialize, Serialize};

/// A number in E.164 form (`+` and 7–15 digits), the key every valid number is stored under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct E164(String);

impl E164 {
    /// Accepts only the canonical form; use [`Normalizer`] for anything a person typed.
    pub fn parse(s: &str) -> Option<E164> {
        let digits = s.strip_prefix('+')?;
        let ok = (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then(|| E164(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Human-readable international format (`+81 3-1234-5678`), for notifications and output.
    pub fn format_international(&self) -> String {
        match PhoneNumber::parse(&self.0, None) {
            Ok(n) => n.format_as(PhoneNumberFormat::International).into_owned(),
            Err(_) => self.0.clone(),
        }
    }

    /// The way people write it at home (`03-1234-5678` for a Japanese number) when it is in
    /// `region`, international otherwise: what a screen pop shows an agent.
    pub fn format_for(&self, region: &str) -> String {
        match PhoneNumber::parse(&self.0, None) {
            Ok(n)
                if n.get_region_code().is_some()
                    && n.get_region_code() == parse_region(region).ok() =>
            {
                n.format_as(PhoneNumberFormat::National).into_owned()
            }
            Ok(n) => n.format_as(PhoneNumberFormat::International).into_owned(),
            Err(_) => self.0.clone(),
        }
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key a number is indexed and looked up under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PhoneKey {
    /// A number libphonenumber accepts.
    E164(E164),
    /// Digits only, for what is no possible number (extensions, short codes, broken data).
    Digits(String),
}

impl PhoneKey {
    /// Bytes used in the cache index. `+` and `#` keep the two kinds apart and sort well.
    pub fn index_bytes(&self) -> Vec<u8> {
        match self {
            PhoneKey::E164(e) => e.0.as_bytes().to_vec(),
            PhoneKey::Digits(d) => {
                let mut v = Vec::with_capacity(d.len() + 1);
                v.push(b'#');
                v.extend_from_slice(d.as_bytes());
                v
            }
        }
    }

    pub fn from_index_bytes(b: &[u8]) -> Option<PhoneKey> {
        let s = std::str::from_utf8(b).ok()?;
        if let Some(d) = s.strip_prefix('#') {
            (!d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
                .then(|| PhoneKey::Digits(d.to_owned()))
        } else {
            E164::parse(s).map(PhoneKey::E164)
        }
    }

    pub fn is_e164(&self) -> bool {
        matches!(self, PhoneKey::E164(_))
    }

    /// For people: international format for E.164 keys, the digits otherwise.
    pub fn display(&self) -> String {
        match self {
            PhoneKey::E164(e) => e.format_international(),
            PhoneKey::Digits(d) => d.clone(),
        }
    }

    /// National format when the number is in `region` (see [`E164::format_for`]).
    pub fn display_for(&self, region: &str) -> String {
        match self {
            PhoneKey::E164(e) => e.format_for(region),
            PhoneKey::Digits(d) => d.clone(),
        }
    }
}

impl fmt::Display for PhoneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhoneKey::E164(e) => f.write_str(e.as_str()),
            PhoneKey::Digits(d) => f.write_str(d),
        }
    }
}

/// A normalized number: the key to match on, plus the extension, kept for display only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Normalized {
    pub key: PhoneKey,
    pub extension: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneError {
    #[error("no digits in {0:?}")]
    NoDigits(String),
    #[error("too many digits ({1}) in {0:?}: not a phone number")]
    TooLong(String, usize),
    #[error("unknown region code {0:?} (use an ISO 3166 code such as JP, US, GB)")]
    UnknownRegion(String),
}

/// Parses an ISO 3166-1 alpha-2 region code (`JP`, `us`).
pub fn parse_region(code: &str) -> Result<Region, PhoneError> {
    Region::from_str(&code.trim().to_ascii_uppercase())
        .ok()
        .filter(|r| PHONE_NUMBER_UTIL.get_country_code_for_region(*r).is_some())
        .ok_or_else(|| PhoneError::UnknownRegion(code.to_owned()))
}

/// Normalizes numbers for one default region (and optional fallback regions for national
/// numbers that are not valid in the default one).
#[derive(Clone, Debug)]
pub struct Normalizer {
    region: Region,
    fallback: Vec<Region>,
}

/// International dialling prefixes tried when a national parse fails (longest first), so that
/// `011 81 3 …` from a US agent or `00 44 …` from a European one still resolves.
const IDD_PREFIXES: [&str; 3] = ["010", "011", "00"];

impl Normalizer {
    pub fn new(region: Region, fallback: Vec<Region>) -> Self {
        Normalizer { region, fallback }
    }

    /// From region codes as written in the configuration.
    pub fn from_codes(region: &str, fallback: &[String]) -> Result<Self, PhoneError> {
        let fallback = fallback
            .iter()
            .map(|c| parse_region(c))
            .collect::<Result<_, _>>()?;
        Ok(Self::new(parse_region(region)?, fallback))
    }

    /// Loads libphonenumber's metadata and compiles its first patterns, so that the first call
    /// a user waits for is not the one that pays for it.
    pub fn warm_up() {
        let _ = PhoneNumber::parse("0312345678", parse_region("JP").ok());
    }

    pub fn normalize(&self, raw: &str) -> Result<Normalized, PhoneError> {
        let Cleaned {
            plus,
            digits,
            extension,
        } = clean(raw);
        if digits.is_empty() {
            return Err(PhoneError::NoDigits(raw.to_owned()));
        }
        if digits.len() > 17 {
            return Err(PhoneError::TooLong(raw.to_owned(), digits.len()));
        }
        let key = self.key_for(plus, &digits);
        Ok(Normalized { key, extension })
    }

    /// Just the key, for lookups.
    pub fn key(&self, raw: &str) -> Result<PhoneKey, PhoneError> {
        self.normalize(raw).map(|n| n.key)
    }

    fn key_for(&self, plus: bool, digits: &str) -> PhoneKey {
        if plus {
            let international = format!("+{digits}");
            if let Some(e) = valid_e164(None, &international) {
                return PhoneKey::E164(e);
            }
            // An explicit country code with a possible length but no known range (a new
            // range, a country the metadata knows little about) is still an international
            // number: keep it as dialled.
            if let Ok(n) = PhoneNumber::parse(&international, None) {
                if n.is_possible_with_reason().is_ok() {
                    if let Some(e) = to_e164(&n) {
                        return PhoneKey::E164(e);
                    }
                }
            }
            return PhoneKey::Digits(digits.to_owned());
        }
        if let Some(e) = valid_e164(Some(self.region), digits) {
            return PhoneKey::E164(e);
        }
        for idd in IDD_PREFIXES {
            if let Some(rest) = digits.strip_prefix(idd) {
                if rest.len() >= 7 {
                    if let Some(e) = valid_e164(None, &format!("+{rest}")) {
                        return PhoneKey::E164(e);
                    }
                }
            }
        }
        for region in &self.fallback {
            if let Some(e) = valid_e164(Some(*region), digits) {
                return PhoneKey::E164(e);
            }
        }
        PhoneKey::Digits(digits.to_owned())
    }
}

fn to_e164(n: &PhoneNumber) -> Option<E164> {
    E164::parse(&n.format_as(PhoneNumberFormat::E164))
}

fn valid_e164(region: Option<Region>, s: &str) -> Option<E164> {
    let n = PhoneNumber::parse(s, region).ok()?;
    if n.is_valid() {
        to_e164(&n)
    } else {
        None
    }
}

struct Cleaned {
    plus: bool,
    digits: String,
    extension: Option<String>,
}

/// Folds what the `phonenumber` crate rejects (full-width forms, the dash family, invisible
/// characters) and splits off URI schemes and extensions. Pure, no metadata involved.
fn clean(raw: &str) -> Cleaned {
    let folded: String = raw.chars().filter_map(fold_char).collect();
    let mut s = folded.trim();
    let lower = s.to_ascii_lowercase();
    for scheme in ["tel:", "sip:", "sips:"] {
        if lower.starts_with(scheme) {
            s = &s[scheme.len()..];
            if scheme != "tel:" {
                // sip:0312345678@pbx.example;user=phone → the user part
                if let Some(at) = s.find('@') {
                    s = &s[..at];
                }
            }
            break;
        }
    }
    let (main, extension) = split_extension(s);
    let main = main.trim_start();
    let plus = main.starts_with('+');
    let mut body = main.trim_start_matches('+').to_owned();
    if plus {
        // "+81 (0)3 1234 5678": the bracketed trunk zero must not be dialled internationally.
        body = body.replacen("(0)", "", 1);
    }
    // RFC 3966 parameters (";phone-context=…") carry no digits of the number itself.
    if let Some(semi) = body.find(';') {
        body.truncate(semi);
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    Cleaned {
        plus,
        digits,
        extension,
    }
}

/// Full-width ASCII → ASCII, every space-like character → space, invisible characters dropped,
/// the dash/minus family (incl. the katakana long-vowel mark people type for a hyphen) → `-`.
fn fold_char(c: char) -> Option<char> {
    let cp = c as u32;
    Some(match cp {
        0xFF01..=0xFF5E => char::from_u32(cp - 0xFEE0).unwrap_or(c),
        0x3000 | 0x00A0 | 0x2000..=0x200A | 0x202F | 0x205F | 0x0009 => ' ',
        0x200B..=0x200D | 0x2060 | 0xFEFF | 0x00AD | 0x200E | 0x200F => return None,
        0x2010..=0x2015 | 0x2212 | 0x30FC | 0xFF70 | 0xFE58 | 0xFE63 | 0x2E3A | 0x2E3B | 0x2043 => {
            '-'
        }
        _ => c,
    })
}

/// Splits `main` from an extension marked by `ext`, `ext.`, `extension`, `x`, `#`, `内線`,
/// `;ext=` or a dialling pause `,`. The marker must follow digits and precede digits.
fn split_extension(s: &str) -> (&str, Option<String>) {
    const MARKERS: [&str; 8] = [";ext=", "extension", "ext.", "ext", "内線", "x", "#", ","];
    let lower = s.to_lowercase();
    // Lower-casing these markers never changes byte offsets (ASCII and CJK only), but guard.
    if lower.len() != s.len() {
        return (s, None);
    }
    let mut best: Option<(usize, usize)> = None;
    for m in MARKERS {
        if let Some(pos) = lower.find(m) {
            let before_has_digits = lower[..pos].chars().any(|c| c.is_ascii_digit());
            if before_has_digits && best.is_none_or(|(p, _)| pos < p) {
                best = Some((pos, m.len()));
            }
        }
    }
    match best {
        Some((pos, len)) => {
            let ext: String = s[pos + len..]
                .chars()
                .take_while(|c| !c.is_alphabetic() || c.is_ascii_digit())
                .filter(char::is_ascii_digit)
                .collect();
            if ext.is_empty() {
                (&s[..pos], None)
            } else {
                (&s[..pos], Some(ext))
            }
        }
        None => (s, None),
    }
}

static MASK_NUMBERS: AtomicBool = AtomicBool::new(true);

/// Turns number masking in logs and diagnostics on or off (configuration `logging.mask_numbers`).
pub fn set_masking(on: bool) {
    MASK_NUMBERS.store(on, Ordering::Relaxed);
}

/// Displays a phone number with every digit but the last four replaced by `*`, unless masking
/// was turned off. Use it for every number that may reach a log.
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !MASK_NUMBERS.load(Ordering::Relaxed) {
            return f.write_str(self.0);
        }
        f.write_str(&mask(self.0))
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Masks all digits but the last four (whatever the masking switch says).
pub fn mask(s: &str) -> String {
    let total = s
        .chars()
        .filter(|c| c.is_ascii_digit() || is_wide_digit(*c))
        .count();
    let keep_from = total.saturating_sub(4);
    let mut seen = 0;
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() || is_wide_digit(c) {
                seen += 1;
                if seen <= keep_from {
                    return '*';
                }
            }
            c
        })
        .collect()
}

fn is_wide_digit(c: char) -> bool {
    ('０'..='９').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(region: &str) -> Normalizer {
        Normalizer::from_codes(region, &[]).unwrap()
    }

    /// (region, input, expected key, expected extension). Keys starting with `#` are the
    /// digits-only fallback.
    const CASES: &[(&str, &str, &str, Option<&str>)] = &[
        // --- Japan: the seed's failure modes (hyphens anywhere, spaces, parentheses) ---
        ("JP", "03-1234-5678", "+81312345678", None),
        ("JP", "0312345678", "+81312345678", None),
        ("JP", "03(1234)5678", "+81312345678", None),
        ("JP", "(03)1234-5678", "+81312345678", None),
        ("JP", "031-234-5678", "+81312345678", None),
        ("JP", "0-3-1-2-3-4-5-6-7-8", "+81312345678", None),
        ("JP", "03 1234 5678", "+81312345678", None),
        ("JP", "03.1234.5678", "+81312345678", None),
        ("JP", "03/1234/5678", "+81312345678", None),
        ("JP", " 03-1234-5678 ", "+81312345678", None),
        ("JP", "+81 3-1234-5678", "+81312345678", None),
        ("JP", "+81-3-1234-5678", "+81312345678", None),
        ("JP", "+81312345678", "+81312345678", None),
        ("JP", "+81 (0)3 1234 5678", "+81312345678", None),
        ("JP", "+81(0)312345678", "+81312345678", None),
        ("JP", "81312345678", "+81312345678", None),
        ("JP", "010-81-3-1234-5678", "+81312345678", None),
        ("JP", "tel:+81-3-1234-5678", "+81312345678", None),
        ("JP", "TEL:03-1234-5678", "+81312345678", None),
        ("JP", "sip:0312345678@192.168.0.10", "+81312345678", None),
        (
            "JP",
            "sip:+81312345678@pbx.example.com;user=phone",
            "+81312345678",
            None,
        ),
        // mobile, IP phone, toll-free, other areas
        ("JP", "090-1234-5678", "+819012345678", None),
        ("JP", "080 1234 5678", "+818012345678", None),
        ("JP", "070-1234-5678", "+817012345678", None),
        ("JP", "+81 90 1234 5678", "+819012345678", None),
        ("JP", "050-1234-5678", "+815012345678", None),
        ("JP", "0120-123-456", "+81120123456", None),
        ("JP", "0120123456", "+81120123456", None),
        ("JP", "0800-123-4567", "+818001234567", None),
        ("JP", "06-6123-4567", "+81661234567", None),
        ("JP", "011-211-2111", "+81112112111", None), // Sapporo, not the US IDD 011
        ("JP", "052-123-4567", "+81521234567", None),
        ("JP", "0467-12-3456", "+81467123456", None),
        // full-width digits and symbols, the dash family, invisible characters
        ("JP", "０３－１２３４－５６７８", "+81312345678", None),
        ("JP", "０９０ー１２３４ー５６７８", "+819012345678", None),
        ("JP", "＋８１ ９０ １２３４ ５６７８", "+819012345678", None),
        ("JP", "（０３）１２３４－５６７８", "+81312345678", None),
        ("JP", "03\u{2010}1234\u{2010}5678", "+81312345678", None),
        ("JP", "03\u{2212}1234\u{2212}5678", "+81312345678", None),
        ("JP", "03\u{2013}1234\u{2014}5678", "+81312345678", None),
        ("JP", "03\u{FF70}1234\u{FF70}5678", "+81312345678", None),
        ("JP", "03\u{00A0}1234\u{00A0}5678", "+81312345678", None),
        ("JP", "\u{200B}03-1234-5678\u{FEFF}", "+81312345678", None),
        ("JP", "03\u{3000}1234\u{3000}5678", "+81312345678", None),
        (
            "JP",
            "\u{200E}+81 3 1234 5678\u{200F}",
            "+81312345678",
            None,
        ),
        // extensions: kept, not used for matching
        ("JP", "03-1234-5678 内線12", "+81312345678", Some("12")),
        ("JP", "03-1234-5678内線１２３", "+81312345678", Some("123")),
        ("JP", "03-1234-5678 ext. 12", "+81312345678", Some("12")),
        ("JP", "03-1234-5678 x12", "+81312345678", Some("12")),
        ("JP", "03-1234-5678#12", "+81312345678", Some("12")),
        ("JP", "03-1234-5678 EXT 7", "+81312345678", Some("7")),
        (
            "JP",
            "tel:+81-3-1234-5678;ext=99",
            "+81312345678",
            Some("99"),
        ),
        // not possible anywhere: digits-only key
        ("JP", "1234", "#1234", None),
        ("JP", "内線 1234", "#1234", None),
        ("JP", "110", "#110", None),
        ("JP", "03-1234-567", "#031234567", None),
        ("JP", "(415) 555-0100", "#4155550100", None),
        // --- United States / NANP ---
        ("US", "(415) 555-0100", "+14155550100", None),
        ("US", "415-555-0100", "+14155550100", None),
        ("US", "415.555.0100", "+14155550100", None),
        ("US", "4155550100", "+14155550100", None),
        ("US", "1-415-555-0100", "+14155550100", None),
        ("US", "+1 (415) 555-0100", "+14155550100", None),
        ("US", "+1 415.555.0100 ext. 12", "+14155550100", Some("12")),
        ("US", "(415) 555-0100 x305", "+14155550100", Some("305")),
        ("US", "1-800-555-0199", "+18005550199", None),
        ("US", "011 81 3 1234 5678", "+81312345678", None),
        ("US", "011-44-20-7946-0958", "+442079460958", None),
        ("US", "+81 3-1234-5678", "+81312345678", None),
        ("US", "２１２－５５５－０１４２", "+12125550142", None),
        ("US", "911", "#911", None),
        ("US", "555-0100", "#5550100", None),
        // Canada shares +1
        ("CA", "(604) 555-0134", "+16045550134", None),
        // --- United Kingdom ---
        ("GB", "020 7946 0958", "+442079460958", None),
        ("GB", "(020) 7946 0958", "+442079460958", None),
        ("GB", "+44 (0)20 7946 0958", "+442079460958", None),
        ("GB", "+44 20 7946 0958", "+442079460958", None),
        ("GB", "0044 20 7946 0958", "+442079460958", None),
        ("GB", "07911 123456", "+447911123456", None),
        ("GB", "+44 7911 123456", "+447911123456", None),
        ("GB", "0161 496 0123", "+441614960123", None),
        ("GB", "00 1 415 555 0100", "+14155550100", None),
        // --- a few others ---
        ("DE", "030 1234567", "+49301234567", None),
        ("DE", "+49 (0)30 1234567", "+49301234567", None),
        ("DE", "0151 23456789", "+4915123456789", None),
        ("FR", "01 23 45 67 89", "+33123456789", None),
        ("FR", "+33 1 23 45 67 89", "+33123456789", None),
        ("FR", "06.12.34.56.78", "+33612345678", None),
        ("AU", "(02) 9876 5432", "+61298765432", None),
        ("AU", "0412 345 678", "+61412345678", None),
        ("SG", "6123 4567", "+6561234567", None),
        ("KR", "02-312-3456", "+8223123456", None),
        ("KR", "010-1234-5678", "+821012345678", None),
        ("IN", "098765 43210", "+919876543210", None),
        ("JP", "+44 20 7946 0958", "+442079460958", None),
        ("JP", "+1 415 555 0100", "+14155550100", None),
        ("JP", "+65 6123 4567", "+6561234567", None),
    ];

    #[test]
    fn table() {
        let mut failures = Vec::new();
        for (region, input, want, want_ext) in CASES {
            match n(region).normalize(input) {
                Ok(got) => {
                    let key = match &got.key {
                        PhoneKey::E164(e) => e.to_string(),
                        PhoneKey::Digits(d) => format!("#{d}"),
                    };
                    if key != *want || got.extension.as_deref() != *want_ext {
                        failures.push(format!(
                            "{region} {input:?}: got {key} ext {:?}, want {want} ext {want_ext:?}",
                            got.extension
                        ));
                    }
                }
                Err(e) => failures.push(format!("{region} {input:?}: error {e}")),
            }
        }
        assert!(CASES.len() >= 80, "only {} cases", CASES.len());
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn fallback_regions_rescue_foreign_national_numbers() {
        let jp_us = Normalizer::from_codes("JP", &["US".into()]).unwrap();
        assert_eq!(
            jp_us.key("(415) 555-0100").unwrap().to_string(),
            "+14155550100"
        );
        // A valid JP number is never reinterpreted.
        assert_eq!(
            jp_us.key("03-1234-5678").unwrap().to_string(),
            "+81312345678"
        );
    }

    #[test]
    fn rejects_what_is_no_number() {
        for bad in ["", "   ", "abc", "-", "()", "内線", "\u{200B}"] {
            assert!(
                matches!(n("JP").normalize(bad), Err(PhoneError::NoDigits(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            n("JP").normalize("123456789012345678901"),
            Err(PhoneError::TooLong(_, 21))
        ));
        assert!(Normalizer::from_codes("XX", &[]).is_err());
        assert!(Normalizer::from_codes("jp", &[]).is_ok());
    }

    #[test]
    fn index_bytes_round_trip() {
        for raw in ["03-1234-5678", "1234"] {
            let k = n("JP").key(raw).unwrap();
            assert_eq!(PhoneKey::from_index_bytes(&k.index_bytes()), Some(k));
        }
        assert_eq!(PhoneKey::from_index_bytes(b"#"), None);
        assert_eq!(PhoneKey::from_index_bytes(b"+0123"), None);
    }

    #[test]
    fn masking_keeps_last_four_digits() {
        assert_eq!(mask("+81 3-1234-5678"), "+** *-****-5678");
        assert_eq!(mask("1234"), "1234");
        assert_eq!(mask("０３－１２３４－５６７８"), "**－****－５６７８");
        assert_eq!(mask("no digits"), "no digits");
    }

    #[test]
    fn international_display() {
        let k = n("JP").key("0312345678").unwrap();
        assert_eq!(k.display(), "+81 3-1234-5678");
        assert_eq!(n("JP").key("1234").unwrap().display(), "1234");
    }
}
