//! The AWS event-stream usage reader (Bedrock's stream operations): `EventStreamUsage` fed in
//! random chunks and `from_event_stream`.
//!
//! The first two bytes seed the chunking. Never panics; the usage, model and delivered text do
//! not depend on how the stream is cut; what follows a broken message is never read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::usage::{self, EventStreamUsage};

fn chunks(data: &[u8], seed: u16) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = 1 + (state as usize % 97).min(rest.len() - 1);
        let (head, tail) = rest.split_at(size);
        out.push(head);
        rest = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (seed, body) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    let whole = usage::from_event_stream(body);
    let mut once = EventStreamUsage::new();
    once.feed(body);
    let mut cut = EventStreamUsage::new();
    for chunk in chunks(body, seed) {
        cut.feed(chunk);
    }
    assert_eq!(cut.usage(), once.usage(), "usage depends on chunking");
    assert_eq!(cut.model(), once.model(), "model depends on chunking");
    assert_eq!(
        cut.delivered(),
        once.delivered(),
        "text depends on chunking"
    );
    assert_eq!(cut.broken(), once.broken());
    assert_eq!(whole.map(|(u, _)| u), once.usage());
    // Appending bytes after a break changes nothing.
    if once.broken() {
        let before = (once.usage(), once.delivered());
        once.feed(body);
        assert_eq!((once.usage(), once.delivered()), before);
    }
});
