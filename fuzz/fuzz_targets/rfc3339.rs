//! `rfc3339::parse` (API keys' `expires`): never panics, and what it accepts is a second the
//! filter's own RFC 3339 writer gives back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::{audit, rfc3339};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(seconds) = rfc3339::parse(text) else {
        return;
    };
    // Years up to 9999 and offsets up to a day: within the writer's range.
    assert!(seconds < 253_402_387_200, "{text} read as {seconds}");
    let written = audit::rfc3339_millis(seconds * 1000);
    assert_eq!(
        rfc3339::parse(&written),
        Some(seconds),
        "{text} -> {written}"
    );
});
