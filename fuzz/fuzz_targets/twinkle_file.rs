//! twinkle's whole history file: any bytes, no panic, and a second read of the same bytes
//! yields nothing new.
#![no_main]
use callsync_calllog::twinkle::TwinkleSource;
use callsync_calllog::Poll;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = TwinkleSource::new("fuzz", "/nonexistent/twinkle.ch");
    let first = src.read_bytes(data, Poll::default());
    let again = src.read_bytes(
        data,
        Poll {
            next: first.next.clone(),
            ..Poll::default()
        },
    );
    assert!(again.events.is_empty(), "a re-read repeated calls");
    assert!(again.problems.is_empty(), "a re-read repeated problems");
});
