//! The core's per-request pieces timed the same way natively and as wasm32 under V8, to see
//! what the module's own work costs inside Envoy (whose V8 runs the same code) without Envoy:
//!
//! ```sh
//! cargo run --release --example core_timing                      # native
//! cargo build --release --example core_timing --target wasm32-wasip1
//! node bench/wasm_timing.mjs target/wasm32-wasip1/release/examples/core_timing.wasm
//! ```
//!
//! Each line is the best of 7 batches (a busy machine only makes batches slower), in ns per
//! call. It reports, it never asserts. `benches/core.rs` has the same pieces under criterion.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;

use tenant_guard::policy::config::Config;
use tenant_guard::policy::decision::{self, Credential, RequestFacts};
use tenant_guard::policy::identity;
use tenant_guard::policy::namespace;
use tenant_guard::policy::quota::{self, Actual, Demand, QuotaState};
use tenant_guard::policy::record::{Record, RequestInfo};
use tenant_guard::policy::state_fields::StateFields;
use tenant_guard::policy::token_cache::TokenCache;
use tenant_guard::policy::usage::{self, SseUsage};

/// The unit tests' key material and token minting (TEST-ONLY keys).
#[path = "../src/policy/testdata/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;
use fixtures::*;

const CHAT_JSON: &[u8] = include_bytes!("../src/policy/testdata/usage/openai_chat.json");
const CHAT_SSE: &[u8] = include_bytes!("../src/policy/testdata/usage/openai_chat_stream.sse");
const CHAT_REQUEST: &[u8] = br#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant for the finance team."},{"role":"user","content":"Summarise the quarterly report in three bullet points, with the revenue numbers."}],"max_tokens":256,"temperature":0.2}"#;

fn time<T>(name: &str, iterations: u32, mut f: impl FnMut() -> T) {
    for _ in 0..iterations.div_ceil(4) {
        black_box(f());
    }
    let mut best = f64::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..iterations {
            black_box(f());
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e9 / f64::from(iterations));
    }
    println!("{name:<34} {best:>12.0} ns");
}

fn gateway_config() -> Config {
    let big = 1_000_000_000_000u64;
    let keys = vec![
        rsa_jwk(RSA_A_PEM, Some("rsa")),
        p256_jwk(Some("p256")),
        p384_jwk(Some("p384")),
        ed25519_jwk(Some("ed")),
        oct_jwk(Some("oct")),
    ];
    let doc = json!({
        "providers": {"corp": {"issuer": ISSUER, "audiences": [AUDIENCE],
                               "jwks": {"keys": keys}}},
        "identity": {
            "token_sources": [{"header": "authorization", "prefix": "Bearer "}],
            "tenant_claim": "tenant_id", "user_claim": "sub", "clock_skew_s": 60,
            "tenant_header": "x-tenant-id", "forward_claims": {"sub": "x-user-id"},
            "strip_token": true
        },
        "tenants": {
            "acme": {"status": "active", "providers": ["corp"], "plan": "pro"},
            "globex": {"status": "active", "providers": ["corp"], "plan": "pro"}
        },
        "plans": {"pro": {"requests": [{"limit": big, "window_s": 60},
                                       {"limit": big, "window_s": 1}],
                          "tokens": [{"limit": big, "window_s": 86400}],
                          "monthly_budget_usd": 1_000_000_000.0}},
        "routing": {"path_prefix": "/tenants/{namespace}",
                    "namespace_header": "x-tenant-namespace"},
        "pricing": {"models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0}},
                    "default": {"input_per_million": 1.0, "output_per_million": 3.0}}
    });
    Config::parse(doc.to_string().as_bytes()).unwrap()
}

fn facts(token: &str) -> RequestFacts<'_> {
    RequestFacts {
        method: "GET",
        path: b"/v1/models",
        credential: Credential::Present {
            source: 0,
            token: token.to_string(),
        },
        tenant_header: None,
        authority: None,
        now: NOW,
    }
}

fn main() {
    let config = gateway_config();
    let token = mint("RS256", Some("rsa"), &base_claims());
    println!("token: {} bytes", token.len());

    for (alg, kid, n) in [
        ("RS256", "rsa", 50),
        ("PS256", "rsa", 50),
        ("ES256", "p256", 10),
        ("ES384", "p384", 5),
        ("EdDSA", "ed", 50),
        ("HS256", "oct", 2000),
    ] {
        let t = mint(alg, Some(kid), &base_claims());
        time(&format!("signature {alg}"), n, || {
            identity::verify(&t, &config.providers, &config.identity, NOW).is_ok()
        });
    }

    time("digest sha2::Sha256 (token)", 20_000, || {
        use sha2::Digest as _;
        sha2::Sha256::digest(black_box(token.as_bytes()))
    });
    time("digest hmac_sha256 (token)", 20_000, || {
        hmac_sha256::Hash::hash(black_box(token.as_bytes()))
    });
    let verified = identity::verify(&token, &config.providers, &config.identity, NOW).unwrap();
    let mut cache = TokenCache::new(1024);
    cache.insert(&token, verified);
    time("digest blake2b-256 (token)", 20_000, || {
        blake2b_simd::Params::new()
            .hash_length(32)
            .hash(black_box(token.as_bytes()))
    });
    time("token_cache hit", 20_000, || {
        cache.get(black_box(&token), NOW).map(|v| v.expires_at)
    });
    time("decide (cached token)", 20_000, || {
        decision::decide(&config, &mut cache, &NoObjects, facts(black_box(&token)))
    });
    time("namespace::normalize /v1/models", 50_000, || {
        namespace::normalize(black_box(b"/v1/models"))
    });

    let limits = config.tenants.bind("acme", 0).unwrap().limits.clone();
    let first = quota::admit(&QuotaState::default(), &limits, NOW, Demand::default()).unwrap();
    let stored = first.state.encode();
    let reservation = first.reservation;
    time("quota decode+admit+encode", 50_000, || {
        quota::admit(
            &QuotaState::decode(black_box(&stored)),
            &limits,
            NOW,
            Demand::default(),
        )
        .map(|a| a.state.encode())
    });
    time("quota decode+settle+encode", 50_000, || {
        quota::settle(
            &QuotaState::decode(black_box(&stored)),
            &limits,
            NOW,
            &reservation,
            Actual::default(),
        )
        .encode()
    });
    time("quota remaining_headers", 50_000, || {
        quota::remaining_headers(black_box(&first.windows))
    });

    let decision = decision::decide(&config, &mut cache, &NoObjects, facts(&token));
    let info = || RequestInfo {
        request_id: "7f1c1b9e4a494c1e9d6c0c4f7e9a2b11".to_string(),
        client_request_id: None,
        method: b"GET",
        path: b"/v1/models",
    };
    time("record new + filter_state", 50_000, || {
        Record::new(black_box(&decision), info()).filter_state(StateFields::ALL)
    });
    let mut record = Record::new(&decision, info());
    record.status = Some(200);
    time("record to_json", 50_000, || black_box(&record).to_json());

    time("usage from_json (chat, 885 B)", 20_000, || {
        usage::from_json(black_box(CHAT_JSON))
    });
    time("usage SseUsage (chat stream, 2.3 KB)", 10_000, || {
        let mut reader = SseUsage::new();
        reader.feed(black_box(CHAT_SSE));
        reader.usage()
    });
    time("usage inspect_request (250 B)", 50_000, || {
        usage::inspect_request(black_box(CHAT_REQUEST))
    });

    let mut stored = QuotaState::default().encode();
    time("GET path core (all of the above)", 20_000, || {
        let decision = decision::decide(&config, &mut cache, &NoObjects, facts(black_box(&token)));
        let mut record = Record::new(&decision, info());
        let state = record.filter_state(StateFields::ALL);
        let admitted = quota::admit(
            &QuotaState::decode(&stored),
            &limits,
            NOW,
            Demand::default(),
        )
        .unwrap();
        stored = admitted.state.encode();
        stored = quota::settle(
            &QuotaState::decode(&stored),
            &limits,
            NOW,
            &admitted.reservation,
            Actual::default(),
        )
        .encode();
        let headers = quota::remaining_headers(&admitted.windows);
        record.status = Some(200);
        (state, headers, record.to_json())
    });
}

/// A gateway that has seen no provider-side object created (isolation is off in these configs).
struct NoObjects;

impl tenant_guard::policy::isolation::objects::Owners for NoObjects {
    fn owner_of(&self, _id: &str) -> Option<tenant_guard::policy::isolation::objects::OwnerDigest> {
        None
    }
}
