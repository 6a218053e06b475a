//! `ratelimit::answer` on arbitrary bytes (a rate-limit service's gRPC answer): never panics,
//! and the header list it returns is bounded by the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::ratelimit;

fuzz_target!(|data: &[u8]| {
    if let Some(answer) = ratelimit::answer(data) {
        let header_bytes: usize = answer
            .response_headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        assert!(header_bytes <= data.len());
    }
});
