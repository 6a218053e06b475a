//! Gemini's streamed JSON array of answers (`streamGenerateContent` without `alt=sse`):
//! `JsonUsage::answers_in_array` fed in random chunks.
//!
//! The first two bytes seed the chunking. Never panics; usage, model and delivered text do not
//! depend on how the body is cut; a body that is not an array reads as the plain reader reads
//! it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::usage::JsonUsage;

fn chunks(data: &[u8], seed: u16) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = 1 + (state as usize % 64).min(rest.len() - 1);
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
    let mut once = JsonUsage::answers_in_array();
    once.feed(body);
    let mut cut = JsonUsage::answers_in_array();
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
    let first = body.iter().find(|b| !b" \t\r\n".contains(b));
    if first != Some(&b'[') {
        let mut plain = JsonUsage::new();
        plain.feed(body);
        assert_eq!(plain.usage(), once.usage(), "a non-array read otherwise");
    }
});
