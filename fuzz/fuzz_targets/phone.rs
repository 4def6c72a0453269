//! Phone normalization for any text in several regions: no panic; a key is stable (the key's
//! own text gives the same key) and E.164 keys are well-formed.
#![no_main]
use callsync_core::phone::{Normalizer, PhoneKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &str)| {
    let (r, raw) = input;
    let region = ["JP", "US", "GB", "DE", "IN"][usize::from(r) % 5];
    let Ok(n) = Normalizer::from_codes(region, &["US".to_string()]) else {
        return;
    };
    if let Ok(norm) = n.normalize(raw) {
        if let PhoneKey::E164(e) = &norm.key {
            assert!(callsync_core::phone::E164::parse(e.as_str()).is_some());
            let again = n.key(e.as_str()).expect("an E.164 key normalizes");
            assert_eq!(again, norm.key, "{raw:?} → {e} → {again}");
        }
    }
});
