//! The native call-event log's line parser: any bytes, no panic; what it accepts is a valid
//! event (a time Salesforce takes, a duration in range).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(ev)) = callsync_calllog::native::parse_line("fuzz", line) {
        assert!(!ev.call_id.is_empty());
        callsync_calllog::check_time("at", &ev.at).expect("an accepted time is valid");
        if let callsync_calllog::EventKind::Ended {
            duration_s: Some(d),
            ..
        } = ev.kind
        {
            assert!(d <= callsync_calllog::MAX_DURATION_S);
        }
    }
});
