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
            if let Some(e) = possible_e164(None, &international) {
                return PhoneKey::E164(e);
            }
            return PhoneKey::Digits(digits.to_owned());
        }
        if let Some(e) = valid_e164(Some(self.region), digits) {
            return PhoneKey::E164(e);
        }
        let after_idd = || {
            IDD_PREFIXES.iter().filter_map(|idd| {
                digits
                    .strip_prefix(idd)
                    .filter(|rest| rest.len() >= 7)
                    .map(|rest| format!("+{rest}"))
            })
        };
        if let Some(e) = after_idd().find_map(|i| valid_e164(None, &i)) {
            return PhoneKey::E164(e);
        }
        for region in &self.fallback {
            if let Some(e) = valid_e164(Some(*region), digits) {
                return PhoneKey::E164(e);
            }
        }
        // Not valid anywhere, but a possible number of the default region (a range the
        // metadata does not list, a number allocated after it): the same key as its
        // international notation `+81 …`, which takes the possible path above. Only what no
        // region can parse as a number at all gets the digits-only key, so that every notation
        // of one number meets.
        if let Some(e) = possible_e164(Some(self.region), digits) {
            return PhoneKey::E164(e);
        }
        if let Some(e) = after_idd().find_map(|i| possible_e164(None, &i)) {
            return PhoneKey::E164(e);
        }
        PhoneKey::Digits(digits.to_owned())
    }

    /// What cached keys depend on: the rules' version and the regions. A cache whose keys were
    /// made with another fingerprint has them made again from the numbers as typed.
    pub fn fingerprint(&self) -> String {
        let mut f = format!("{KEY_RULES}|{:?}", self.region);
        for r in &self.fallback {
            f.push_str(&format!(",{r:?}"));
        }
        f
    }
}

/// The version of the key rules: bump it when a number's key can change (the cache then keys
/// its records again). 2: possible numbers keyed as E.164; vanity letters.
const KEY_RULES: u32 = 2;

/// A number libphonenumber can parse for `region` and of a possible length there, whose E.164
/// form gives itself again (junk such as `0 000 0000` does not: its zeros move between the
/// national prefix and the number, and two notations would get two keys).
fn possible_e164(region: Option<Region>, s: &str) -> Option<E164> {
    let n = PhoneNumber::parse(s, region).ok()?;
    let possible = matches!(
        n.is_possible_with_reason(),
        Ok(rlibphonenumber::NumberLengthType::IsPossible)
    );
    let e = to_e164(&n).filter(|_| possible)?;
    let again = PhoneNumber::parse(e.as_str(), None).ok()?;
    (to_e164(&again).as_ref() == Some(&e)).then_some(e)
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
    let body = keypad(&body);
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    Cleaned {
        plus,
        digits,
        extension,
    }
}

/// A vanity number's letters as the keypad's digits (`1-800-FLOWERS` → `1-800-3569377`), as
/// libphonenumber does: only when the text has at least three letters (its
/// `VALID_ALPHA_PHONE_PATTERN`) and three digits, and nothing but letters, digits and the
/// separators people type, so that a name is never read as a number.
fn keypad(s: &str) -> std::borrow::Cow<'_, str> {
    let letters = s.chars().filter(char::is_ascii_alphabetic).count();
    let digits = s.chars().filter(char::is_ascii_digit).count();
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " -.()/+".contains(c));
    if letters < 3 || digits < 3 || !plain {
        return std::borrow::Cow::Borrowed(s);
    }
    s.chars()
        .map(|c| match c.to_ascii_uppercase() {
            'A'..='C' => '2',
            'D'..='F' => '3',
            'G'..='I' => '4',
            'J'..='L' => '5',
            'M'..='O' => '6',
            'P'..='S' => '7',
            'T'..='V' => '8',
            'W'..='Z' => '9',
            _ => c,
        })
        .collect()
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
        // possible (not valid) numbers of the region: E.164, as their +81 notation is
        ("JP", "03-1234-567", "+8131234567", None),
        ("JP", "(415) 555-0100", "+814155550100", None),
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

    /// Every notation of one number gives one key: national, international, `(0)`, IDD
    /// prefixes as dialled from the region, full-width, other separators, an extension, `tel:`
    /// and `sip:` URIs. Fixed-line and mobile example numbers of 16 regions (libphonenumber's
    /// own, so valid by its metadata), plus the defects: possible-but-not-valid Japanese numbers
    /// and vanity numbers.
    #[test]
    fn every_notation_of_a_number_meets_itself() {
        use rlibphonenumber::PhoneNumberType;
        let regions = [
            "JP", "US", "GB", "DE", "FR", "AU", "SG", "KR", "IN", "CA", "BR", "CN", "IT", "ES",
            "NL", "MX",
        ];
        let mut numbers: Vec<(&str, String)> = Vec::new();
        for r in regions {
            for t in [PhoneNumberType::FixedLine, PhoneNumberType::Mobile] {
                if let Ok(n) = PHONE_NUMBER_UTIL
                    .get_example_number_for_type_and_region(parse_region(r).unwrap(), t)
                {
                    numbers.push((r, n.format_as(PhoneNumberFormat::E164).into_owned()));
                }
            }
        }
        // Possible, not valid in the metadata (issue: they met only in their +81 notation).
        numbers.push(("JP", "+81119689173".into()));
        numbers.push(("JP", "+81301234567".into()));
        let fullwidth = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '0'..='9' | '-' | '+' | '(' | ')' => {
                        char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)
                    }
                    ' ' => '\u{3000}',
                    c => c,
                })
                .collect()
        };
        let mut cases = 0;
        let mut failures = Vec::new();
        for (region, e164) in &numbers {
            let num = PhoneNumber::parse(e164, None).unwrap();
            let national = num.format_as(PhoneNumberFormat::National).into_owned();
            let intl = num.format_as(PhoneNumberFormat::International).into_owned();
            let from_home = num
                .format_out_of_country_calling_number(parse_region(region).unwrap())
                .into_owned();
            let idd = match *region {
                "JP" => "010",
                "US" | "CA" => "011",
                _ => "00",
            };
            let mut notations = vec![
                e164.clone(),
                intl.clone(),
                national.clone(),
                num.format_as(PhoneNumberFormat::RFC3966).into_owned(),
                national.chars().filter(char::is_ascii_digit).collect(),
                national.replace([' ', '-'], "."),
                fullwidth(&national),
                fullwidth(&intl),
                format!("{national} ext. 12"),
                format!("{idd} {}", intl.trim_start_matches('+')),
                format!("sip:{e164}@pbx.example;user=phone"),
                from_home,
            ];
            // `+cc (0)…` where the national prefix is a 0 that international dialling drops
            // (not Italy's, which is part of the number).
            let after_cc = intl.split_once(' ').map(|(_, r)| r).unwrap_or("");
            if national.starts_with('0') && !after_cc.starts_with('0') {
                let cc = intl.trim_start_matches('+').split(' ').next().unwrap_or("");
                notations.push(format!("+{cc} (0){}", national.trim_start_matches('0')));
            }
            for raw in notations {
                cases += 1;
                match n(region).key(&raw) {
                    Ok(k) if k.to_string() == *e164 => {}
                    other => failures.push(format!("{region} {raw:?}: {other:?}, want {e164}")),
                }
            }
        }
        // Vanity numbers (US): the keypad's digits.
        for raw in [
            "1-800-FLOWERS",
            "1-800-flowers",
            "+1 800 FLOWERS",
            "800-FLOWERS",
            "1 (800) FLO-WERS",
            "1-800-356-9377",
        ] {
            cases += 1;
            match n("US").key(raw) {
                Ok(k) if k.to_string() == "+18003569377" => {}
                other => failures.push(format!("US {raw:?}: {other:?}")),
            }
        }
        // A name is no number.
        assert!(n("US").key("Flowers").is_err());
        assert!(n("JP").key("sip:alice@pbx").is_err());
        assert!(cases >= 200, "only {cases} cases");
        assert!(
            failures.is_empty(),
            "{} of {cases}:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    /// A key's own text gives the key again (a record storing the E.164 form meets one typed
    /// nationally). The first input is what the phone fuzz target found: junk whose zeros moved
    /// between the national prefix and the number.
    #[test]
    fn keys_are_fixed_points() {
        for (region, raw) in [
            ("DE", "0\u{4}000\u{4}0000"),
            ("DE", "0 000 0000"),
            ("JP", "011-968-9173"),
            ("JP", "00000000"),
            ("GB", "0000 000000"),
            ("US", "1-800-FLOWERS"),
        ] {
            let n = n(region);
            if let Ok(PhoneKey::E164(e)) = n.key(raw) {
                assert_eq!(
                    n.key(e.as_str()).unwrap(),
                    PhoneKey::E164(e.clone()),
                    "{region} {raw:?}"
                );
            }
        }
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
