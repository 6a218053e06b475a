//! Usage readers through their public entry points: `from_json`, `from_sse`, `SseUsage` and
//! `JsonUsage` fed in random chunks, `inspect_request`, `with_stream_usage`.
//!
//! The first two bytes seed the chunking. Never panics; an SSE stream gives the same usage and
//! model however it is cut; `with_stream_usage` only ever hands on a JSON body that streams and
//! asks for usage.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::usage::{self, JsonUsage, SseUsage};

/// Cuts `data` into chunks whose sizes come from a small generator seeded by `seed`.
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

    let whole = usage::from_sse(body);
    let mut sse = SseUsage::new();
    for chunk in chunks(body, seed) {
        sse.feed(chunk);
    }
    assert_eq!(
        sse.usage(),
        whole.as_ref().map(|(u, _)| *u),
        "SSE usage depends on chunking"
    );
    if whole.is_some() {
        assert_eq!(
            sse.model(),
            whole.as_ref().and_then(|(_, m)| m.as_deref()),
            "SSE model depends on chunking"
        );
    }

    let strict = usage::from_json(body);
    let mut json = JsonUsage::new();
    for chunk in chunks(body, seed.rotate_left(7)) {
        json.feed(chunk);
    }
    let mut once = JsonUsage::new();
    once.feed(body);
    assert_eq!(json.usage(), once.usage(), "JSON usage depends on chunking");
    assert_eq!(json.model(), once.model(), "JSON model depends on chunking");
    if let Some((u, _)) = strict {
        assert_eq!(
            once.usage(),
            Some(u),
            "incremental JSON reader disagrees with from_json"
        );
    }

    let request = usage::inspect_request(body);
    assert!(request.choices >= 1);
    // An edited body is valid JSON: a body that is not (a stray byte in a string serde skips,
    // seed invalid-utf8-in-an-ignored-string) is never edited.
    for path in [
        "/v1/chat/completions",
        "/openai/deployments/x/completions?v=1",
        "/v1/messages",
    ] {
        if let Some(edited) = usage::with_stream_usage(path, body) {
            let after = usage::inspect_request(&edited);
            assert!(after.stream && after.include_usage, "{path}");
            assert!(serde_json::from_slice::<serde_json::Value>(&edited).is_ok());
            assert_eq!(after.model, request.model, "the edit changed the model");
        }
    }
});
