//! `Config::parse` on arbitrary bytes: never panics; an accepted document is accepted again
//! (parsing is a function of the bytes), and a refusal names a field path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::config::Config;

fuzz_target!(|data: &[u8]| {
    match Config::parse(data) {
        Ok(_) => assert!(Config::parse(data).is_ok()),
        Err(e) => assert!(!e.path.is_empty(), "error without a path: {e}"),
    }
});
