//! `identity::verify` with fixture providers. The first byte picks the input's shape:
//! - even: the rest is a token, as a client would send it;
//! - odd: the rest is `header JSON \0 payload JSON`, signed here with the fixture provider's
//!   HMAC secret, so the fuzzer reaches the claim checks behind a valid signature.
//!
//! Never panics; an admitted token names a tenant that is a non-empty claim string of at most
//! 128 bytes, expires after `now`, and is spelt canonically (each part is the base64url encoding
//! of what it decodes to: a token has one spelling).
#![no_main]

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::config::Config;
use tenant_guard::policy::identity;

/// 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;
/// Test-only HMAC secret of the fixture providers (64 bytes: long enough for HS512).
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn config() -> &'static Config {
    // Built once per thread (libFuzzer runs one) and kept: `Config` is not `Sync` (plans'
    // limits are shared through `Rc`).
    thread_local! {
        static CONFIG: &'static Config = Box::leak(Box::new({
            let doc = serde_json::json!({
              "providers": {
                "corp": {"issuer": "https://corp", "audiences": ["gw"],
                         "jwks": {"keys": [{"kty": "oct", "kid": "c1", "k": b64(SECRET)}]}},
                "strict": {"issuer": "https://strict", "audiences": "any", "require_kid": true,
                           "token_types": ["at+jwt", ""],
                           "jwks": {"keys": [{"kty": "oct", "k": b64(SECRET), "alg": "HS512"}]}},
                "ec": {"issuer": "https://corp", "audiences": ["gw", "other"],
                       "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "e1",
                         "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}}
              },
              "identity": {"user_claim": "sub", "tenant_claim": "org.tenant",
                           "forward_claims": {"email": "x-email"}}
            });
            Config::parse(doc.to_string().as_bytes()).expect("fixture configuration")
        }));
    }
    CONFIG.with(|config| *config)
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap_or_default()
}

fn signed(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let mac = hmac_sha256::HMAC::mac(input.as_bytes(), SECRET);
    format!("{input}.{}", b64(&mac))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(token) => token.to_string(),
            Err(_) => return,
        }
    } else {
        let mut parts = rest.splitn(2, |b| *b == 0);
        let header = parts.next().unwrap_or_default();
        let payload = parts.next().unwrap_or_default();
        signed(header, payload)
    };
    let config = config();
    if let Ok(verified) = identity::verify(&token, &config.providers, &config.identity, NOW) {
        assert!(!verified.tenant.is_empty() && verified.tenant.len() <= 128);
        assert!(verified.expires_at >= NOW);
        assert!(verified.provider < config.providers.len());
        for part in token.split('.') {
            let bytes = Base64UrlSafeNoPadding::decode_to_vec(part, None).expect("base64url");
            let again = Base64UrlSafeNoPadding::encode_to_string(bytes).expect("encodes");
            assert_eq!(again, part, "a second spelling was admitted");
        }
    }
});
