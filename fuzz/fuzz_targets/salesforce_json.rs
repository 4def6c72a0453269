//! Salesforce's answers as the client reads them: a query page, a Collections result, an error
//! body of any status, a token response, Bulk API CSV, a describe, `Sforce-Limit-Info`. No
//! panic whatever the bytes.
#![no_main]
use callsync_core::wire::{api_error, csv_records, error_entry, parse_limit_info, QueryPage};
use callsync_core::wire::{TokenResponse, WriteRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (status, data) = input;
    let text = String::from_utf8_lossy(data);
    let _ = api_error(status, &text);
    let _ = parse_limit_info(&text);
    let _ = csv_records(&text, "Contact");
    let _ = serde_json::from_slice::<TokenResponse>(data).map(|t| t.org_and_user());
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = QueryPage::from_value(v.clone());
        if let Some(results) = v.as_array() {
            for r in results {
                let _ = error_entry(400, &r["errors"][0]);
            }
        }
        let rules = WriteRules::from_describe(&v);
        let _ = rules.named_in(&text);
    }
});
