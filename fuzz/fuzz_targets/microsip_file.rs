//! MicroSIP's whole microsip.ini: any bytes, no panic, and a second read of the same bytes
//! yields nothing new.
#![no_main]
use callsync_calllog::microsip::{decode, MicrosipSource};
use callsync_calllog::Poll;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = decode(data) else { return };
    let src = MicrosipSource::new("fuzz", "/nonexistent/microsip.ini");
    let first = src.read_text(&text, Poll::default());
    let again = src.read_text(
        &text,
        Poll {
            next: first.next.clone(),
            ..Poll::default()
        },
    );
    assert!(again.events.is_empty(), "a re-read repeated calls");
    assert!(again.problems.is_empty(), "a re-read repeated problems");
});
