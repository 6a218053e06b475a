//! JWK Sets from a remote endpoint (`KeySet::from_remote`, lenient) and from configuration
//! (`KeySet::from_value`, strict): never panic; every key the strict parser takes, the lenient
//! one takes too, except `oct` keys, which a remote set never hands out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::jwks::KeySet;

fuzz_target!(|data: &[u8]| {
    let remote = KeySet::from_remote(data);
    if let Ok((keys, _skipped)) = &remote {
        assert!(!keys.is_empty());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(strict) = KeySet::from_value(&value) {
        let has_oct = value["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k["kty"] == "oct"));
        if !has_oct {
            let (lenient, skipped) = remote.expect("strict set refused remotely");
            assert_eq!(lenient.len(), strict.len());
            assert!(skipped.is_empty());
        }
    }
});
