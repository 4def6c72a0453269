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
    pub(crate) fn format_international(&self) -> String {
        match PhoneNumber::parse(&self.0, None) {
            Ok(n) => n.format_as(PhoneNumberFormat::International).into_owned(),
            Err(_) => self.0.clone(),
        }
    }

    /// The way people write it at home (`03-1234-5678` for a Japanese number) when it is in
    /// `region`, international otherwise: what a screen pop shows an agent.
    pub(crate) fn format_for(&self, region: &str) -> String {
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

    #[cfg(test)]
    pub(crate) fn from_index_bytes(b: &[u8]) -> Option<PhoneKey> {
        let s = std::str::from_utf8(b).ok()?;
        if let Some(d) = s.strip_prefix('#') {
            (!d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
                .then(|| PhoneKey::Digits(d.to_owned()))
        } else {
            E164::parse(s).map(PhoneKey::E164)
        }
    }

    /// The full number, if it is one (extensions and short codes are not).
    pub fn e164(&self) -> Option<&E164> {
        match self {
            PhoneKey::E164(e) => Some(e),
            PhoneKey::Digits(_) => None,
        }
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
mod tests;
