//! A CSV call log's header and row under a mapping (default, or a Japanese PBX's with a
//! strftime time format): no panic; an accepted row's events are in time order.
#![no_main]
use callsync_calllog::csvlog::{Csv, CsvMapping};
use callsync_calllog::native::LineFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &str, &str)| {
    let (japanese, header, row) = input;
    let mapping = if japanese {
        CsvMapping {
            call_id: String::new(),
            direction: "発着信".into(),
            remote: "相手番号".into(),
            start: "開始日時".into(),
            time_format: "%Y/%m/%d %H:%M:%S".into(),
            timezone: "+09:00".into(),
            ..CsvMapping::default()
        }
    } else {
        CsvMapping::default()
    };
    let mut csv = Csv::new(mapping);
    if csv.prepare(header).is_err() {
        return;
    }
    if let Ok(events) = csv.parse("fuzz", row) {
        for w in events.windows(2) {
            assert!(w[0].at <= w[1].at, "events out of order");
        }
    }
});
