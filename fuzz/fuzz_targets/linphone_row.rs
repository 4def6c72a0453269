//! A linphone `call_history` row's values, of any SQLite type: no panic; an accepted row makes
//! events with times in order.
#![no_main]
use arbitrary::Arbitrary;
use callsync_calllog::linphone::{row_from, LinphoneSource};
use libfuzzer_sys::fuzz_target;
use rusqlite::types::ValueRef;

#[derive(Arbitrary, Debug)]
enum V {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl V {
    fn get(&self) -> ValueRef<'_> {
        match self {
            V::Null => ValueRef::Null,
            V::Int(n) => ValueRef::Integer(*n),
            V::Real(f) => ValueRef::Real(*f),
            V::Text(t) => ValueRef::Text(t.as_bytes()),
            V::Blob(b) => ValueRef::Blob(b),
        }
    }
}

fuzz_target!(|input: (i64, [V; 8])| {
    let (id, values) = input;
    let refs = [
        values[0].get(),
        values[1].get(),
        values[2].get(),
        values[3].get(),
        values[4].get(),
        values[5].get(),
        values[6].get(),
        values[7].get(),
    ];
    if let Ok(row) = row_from(id, &refs) {
        let events = LinphoneSource::new("fuzz", "/nonexistent").events_of(&row);
        for w in events.windows(2) {
            assert!(w[0].at <= w[1].at, "events out of order: {row:?}");
        }
    }
});
