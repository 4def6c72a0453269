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
        "JP", "US", "GB", "DE", "FR", "AU", "SG", "KR", "IN", "CA", "BR", "CN", "IT", "ES", "NL",
        "MX",
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
                '0'..='9' | '-' | '+' | '(' | ')' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
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
