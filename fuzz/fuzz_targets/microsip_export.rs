//! A MicroSIP CSV export's header and row: no panic; an accepted row's events are in time
//! order and end the call.
#![no_main]
use callsync_calllog::microsip::export::ExportCsv;
use callsync_calllog::native::LineFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (header, row) = input;
    let mut csv = ExportCsv::default();
    if csv.prepare(header).is_err() {
        return;
    }
    if let Ok(events) = csv.parse("fuzz", row) {
        for w in events.windows(2) {
            assert!(w[0].at <= w[1].at, "events out of order");
        }
        assert!(!events.is_empty(), "an accepted row made no call");
    }
});
